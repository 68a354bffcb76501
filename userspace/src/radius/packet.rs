//! The RADIUS wire format (RFC 2865 section 3): a 20-byte header and a run of
//! type-length-value attributes, read without copying and never trusted: every length is
//! checked before it is used.

use std::fmt;

/// Header: code, identifier, length (2), authenticator (16).
pub const HEADER_LEN: usize = 20;
/// Largest packet RFC 2865 allows (and the most a peer may make us read).
pub const MAX_PACKET_LEN: usize = 4096;

/// The packet codes quid reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 4: a NAS reports a session event.
    AccountingRequest,
    /// 5: the server has recorded it.
    AccountingResponse,
    /// Any other code (Access-Request, CoA, ...): not accounting, refused.
    Other(u8),
}

impl Code {
    /// The code from its octet.
    pub fn from_octet(b: u8) -> Code {
        match b {
            4 => Code::AccountingRequest,
            5 => Code::AccountingResponse,
            other => Code::Other(other),
        }
    }

    /// The octet of this code.
    pub fn octet(self) -> u8 {
        match self {
            Code::AccountingRequest => 4,
            Code::AccountingResponse => 5,
            Code::Other(b) => b,
        }
    }
}

/// Why bytes are not a RADIUS packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("{0} bytes is shorter than the 20-byte RADIUS header")]
    Short(usize),
    #[error("the header's length {length} is outside 20..=4096")]
    BadLength { length: usize },
    #[error("the header says {length} bytes but the datagram holds only {got}")]
    Truncated { length: usize, got: usize },
    #[error(
        "attribute at offset {offset} has length {length}: less than 2 or past the packet's end"
    )]
    BadAttribute { offset: usize, length: usize },
}

/// One parsed packet, borrowing the datagram. The attributes are known to be well formed.
#[derive(Clone, Copy)]
pub struct Packet<'a> {
    /// The packet's bytes, exactly `length` of them (octets past it are padding, ignored).
    bytes: &'a [u8],
}

impl fmt::Debug for Packet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("code", &self.code())
            .field("identifier", &self.identifier())
            .field("length", &self.bytes.len())
            .finish()
    }
}

impl<'a> Packet<'a> {
    /// Reads a datagram: the header's length must fit in it, and every attribute in the length.
    pub fn parse(datagram: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        let header = datagram
            .get(..HEADER_LEN)
            .ok_or(PacketError::Short(datagram.len()))?;
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if !(HEADER_LEN..=MAX_PACKET_LEN).contains(&length) {
            return Err(PacketError::BadLength { length });
        }
        let bytes = datagram.get(..length).ok_or(PacketError::Truncated {
            length,
            got: datagram.len(),
        })?;
        let mut offset = HEADER_LEN;
        while offset < length {
            let attr_len = bytes.get(offset + 1).map_or(0, |&l| usize::from(l));
            if attr_len < 2 || offset + attr_len > length {
                return Err(PacketError::BadAttribute {
                    offset,
                    length: attr_len,
                });
            }
            offset += attr_len;
        }
        Ok(Packet { bytes })
    }

    /// The packet's code.
    pub fn code(&self) -> Code {
        Code::from_octet(self.bytes[0])
    }

    /// The identifier a NAS matches answers by.
    pub fn identifier(&self) -> u8 {
        self.bytes[1]
    }

    /// The 16-octet authenticator.
    pub fn authenticator(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.bytes[4..HEADER_LEN]);
        a
    }

    /// The packet's bytes (without padding past its length).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Each attribute as (offset of its type octet, type, value).
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            bytes: self.bytes,
            offset: HEADER_LEN,
        }
    }
}

/// Iterator over a parsed packet's attributes.
pub struct Attributes<'a> {
    bytes: &'a [u8],
    offset: usize,
}

/// One attribute as found in the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// Where its type octet is in the packet.
    pub offset: usize,
    /// The attribute type.
    pub kind: u8,
    /// The value (0 to 253 octets).
    pub value: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        // `parse` checked every length; `get` keeps this safe on its own all the same.
        let kind = *self.bytes.get(self.offset)?;
        let len = usize::from(*self.bytes.get(self.offset + 1)?);
        let value = self.bytes.get(self.offset + 2..self.offset + len)?;
        let attr = RawAttribute {
            offset: self.offset,
            kind,
            value,
        };
        self.offset += len.max(2);
        Some(attr)
    }
}

/// Why a packet cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("attribute {kind} is {len} octets; a RADIUS attribute holds at most 253")]
    AttributeTooLong { kind: u8, len: usize },
    #[error("the packet would be {0} bytes; RADIUS allows at most 4096")]
    TooLong(usize),
}

/// Writes a packet: header first (authenticator zero until signed), then attributes.
#[derive(Debug, Clone)]
pub struct Builder {
    bytes: Vec<u8>,
}

impl Builder {
    /// A packet with `code` and `identifier`, its authenticator set to `authenticator`.
    pub fn new(code: Code, identifier: u8, authenticator: [u8; 16]) -> Builder {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&[code.octet(), identifier, 0, 0]);
        bytes.extend_from_slice(&authenticator);
        Builder { bytes }
    }

    /// Appends one attribute.
    pub fn attribute(&mut self, kind: u8, value: &[u8]) -> Result<&mut Builder, BuildError> {
        let len = u8::try_from(value.len() + 2).map_err(|_| BuildError::AttributeTooLong {
            kind,
            len: value.len(),
        })?;
        if self.bytes.len() + usize::from(len) > MAX_PACKET_LEN {
            return Err(BuildError::TooLong(self.bytes.len() + usize::from(len)));
        }
        self.bytes.push(kind);
        self.bytes.push(len);
        self.bytes.extend_from_slice(value);
        Ok(self)
    }

    /// The bytes with the length field filled in (the authenticator as given).
    pub fn finish(mut self) -> Vec<u8> {
        // At most MAX_PACKET_LEN (checked per attribute), so it fits in 16 bits.
        let len = u16::try_from(self.bytes.len()).unwrap_or(u16::MAX);
        self.bytes[2..4].copy_from_slice(&len.to_be_bytes());
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(attrs: &[u8]) -> Vec<u8> {
        let mut p = vec![4, 7, 0, 0];
        p.extend_from_slice(&[0xaa; 16]);
        p.extend_from_slice(attrs);
        let len = u16::try_from(p.len()).unwrap();
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    #[test]
    fn attributes_are_read_in_order() {
        let p = packet(&[1, 7, b'a', b'l', b'i', b'c', b'e', 40, 6, 0, 0, 0, 1]);
        let p = Packet::parse(&p).unwrap();
        assert_eq!(p.code(), Code::AccountingRequest);
        assert_eq!(p.identifier(), 7);
        assert_eq!(p.authenticator(), [0xaa; 16]);
        let attrs: Vec<_> = p.attributes().map(|a| (a.kind, a.value.to_vec())).collect();
        assert_eq!(attrs, vec![(1, b"alice".to_vec()), (40, vec![0, 0, 0, 1])]);
    }

    #[test]
    fn padding_past_the_length_is_ignored() {
        let mut p = packet(&[1, 3, b'x']);
        p.extend_from_slice(&[0xff; 9]);
        let p = Packet::parse(&p).unwrap();
        assert_eq!(p.bytes().len(), 23);
        assert_eq!(p.attributes().count(), 1);
    }

    #[test]
    fn every_lie_about_a_length_is_refused() {
        assert_eq!(Packet::parse(&[4; 19]).unwrap_err(), PacketError::Short(19));
        let mut p = packet(&[]);
        p[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Packet::parse(&p).unwrap_err(),
            PacketError::BadLength { length: 19 }
        );
        p[2..4].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(
            Packet::parse(&p).unwrap_err(),
            PacketError::BadLength { length: 4097 }
        );
        p[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(
            Packet::parse(&p).unwrap_err(),
            PacketError::Truncated {
                length: 30,
                got: 20
            }
        );
        // An attribute longer than what is left, one of length 0 and one of length 1.
        for attrs in [&[1u8, 9, b'x'][..], &[1, 0], &[1, 1], &[1]] {
            assert!(
                matches!(
                    Packet::parse(&packet(attrs)),
                    Err(PacketError::BadAttribute { .. })
                ),
                "{attrs:?}"
            );
        }
    }

    #[test]
    fn a_built_packet_parses_back() {
        let mut b = Builder::new(Code::AccountingResponse, 9, [1; 16]);
        b.attribute(44, b"session-1").unwrap();
        assert!(matches!(
            b.attribute(1, &[0; 254]),
            Err(BuildError::AttributeTooLong { kind: 1, len: 254 })
        ));
        let bytes = b.finish();
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.code(), Code::AccountingResponse);
        assert_eq!(p.attributes().next().unwrap().value, b"session-1");
    }
}
