//! The three RADIUS accounting checksums: the Request Authenticator (RFC 2866 section 3),
//! the Response Authenticator (RFC 2866 section 3, as RFC 2865 defines it) and the
//! Message-Authenticator attribute (RFC 3579 section 3.2, HMAC-MD5; for accounting requests
//! and responses computed over the packet with a zero authenticator field, as FreeRADIUS
//! does: checked against its radclient in tests/radius.rs).

use hmac::{KeyInit as _, Mac as _};
use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq as _;

use super::packet::{HEADER_LEN, Packet};

/// Attribute 80, Message-Authenticator: 16 octets of HMAC-MD5.
pub const MESSAGE_AUTHENTICATOR: u8 = 80;

type HmacMd5 = hmac::Hmac<Md5>;

/// MD5(Code + Identifier + Length + `authenticator` + Attributes + Secret) of `bytes`.
fn md5_with(bytes: &[u8], authenticator: &[u8; 16], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(&bytes[..4]);
    h.update(authenticator);
    h.update(&bytes[HEADER_LEN..]);
    h.update(secret);
    h.finalize().into()
}

/// HMAC-MD5 keyed by `secret` over `bytes` with the authenticator field replaced by
/// `authenticator` and the Message-Authenticator value at `ma_offset` taken as zeros.
fn hmac_with(bytes: &[u8], authenticator: &[u8; 16], ma_offset: usize, secret: &[u8]) -> [u8; 16] {
    // HMAC takes a key of any length; an error here is impossible, and a zero result would
    // simply not match.
    let Ok(mut mac) = HmacMd5::new_from_slice(secret) else {
        return [0; 16];
    };
    mac.update(&bytes[..4]);
    mac.update(authenticator);
    let value = ma_offset + 2;
    mac.update(&bytes[HEADER_LEN..value]);
    mac.update(&[0; 16]);
    mac.update(&bytes[value + 16..]);
    mac.finalize().into_bytes().into()
}

/// The Request Authenticator an Accounting-Request with these bytes must carry.
pub fn request_authenticator(bytes: &[u8], secret: &[u8]) -> [u8; 16] {
    md5_with(bytes, &[0; 16], secret)
}

/// The Response Authenticator of a response, given its request's authenticator.
pub fn response_authenticator(
    bytes: &[u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> [u8; 16] {
    md5_with(bytes, request_authenticator, secret)
}

/// What the authenticators of a received Accounting-Request say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The Request Authenticator (and the Message-Authenticator, when present) match.
    Authentic {
        /// Whether a Message-Authenticator was present (and matched).
        message_authenticator: bool,
    },
    /// The Request Authenticator does not match: a wrong secret or a forgery.
    BadRequestAuthenticator,
    /// The Message-Authenticator is not 16 octets, appears twice, or does not match.
    BadMessageAuthenticator,
}

/// Checks an Accounting-Request against the client's secret, in constant time.
pub fn verify_request(packet: &Packet<'_>, secret: &[u8]) -> Verdict {
    let bytes = packet.bytes();
    let expected = request_authenticator(bytes, secret);
    if !bool::from(expected.ct_eq(&packet.authenticator())) {
        return Verdict::BadRequestAuthenticator;
    }
    let mut found = None;
    for attr in packet
        .attributes()
        .filter(|a| a.kind == MESSAGE_AUTHENTICATOR)
    {
        if found.is_some() || attr.value.len() != 16 {
            return Verdict::BadMessageAuthenticator;
        }
        found = Some(attr);
    }
    let Some(attr) = found else {
        return Verdict::Authentic {
            message_authenticator: false,
        };
    };
    let mac = hmac_with(bytes, &[0; 16], attr.offset, secret);
    if bool::from(mac.ct_eq(attr.value)) {
        Verdict::Authentic {
            message_authenticator: true,
        }
    } else {
        Verdict::BadMessageAuthenticator
    }
}

/// Signs a packet built with a zero authenticator: fills in the Message-Authenticator (when
/// the packet has one, at any place, 16 octets) over `hmac_authenticator`, then writes the
/// MD5 authenticator over `md5_authenticator` into the header.
fn sign(
    bytes: &mut [u8],
    hmac_authenticator: &[u8; 16],
    md5_authenticator: &[u8; 16],
    secret: &[u8],
) {
    let ma_offset = Packet::parse(bytes).ok().and_then(|p| {
        p.attributes()
            .find(|a| a.kind == MESSAGE_AUTHENTICATOR && a.value.len() == 16)
            .map(|a| a.offset)
    });
    if let Some(offset) = ma_offset {
        let mac = hmac_with(bytes, hmac_authenticator, offset, secret);
        bytes[offset + 2..offset + 18].copy_from_slice(&mac);
    }
    let auth = md5_with(bytes, md5_authenticator, secret);
    bytes[4..HEADER_LEN].copy_from_slice(&auth);
}

/// Signs an Accounting-Request built by [`super::packet::Builder`].
pub fn sign_request(bytes: &mut [u8], secret: &[u8]) {
    sign(bytes, &[0; 16], &[0; 16], secret);
}

/// Signs an Accounting-Response to a request that carried `request_authenticator`. Its
/// Message-Authenticator is computed over a zero authenticator field, as for the request: so
/// FreeRADIUS computes and checks it (a response's Message-Authenticator over the request's
/// authenticator is refused by radclient).
pub fn sign_response(bytes: &mut [u8], request_authenticator: &[u8; 16], secret: &[u8]) {
    sign(bytes, &[0; 16], request_authenticator, secret);
}

/// Checks an Accounting-Response against the request it answers (accounting out).
pub fn verify_response(
    packet: &Packet<'_>,
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> bool {
    let expected = response_authenticator(packet.bytes(), request_authenticator, secret);
    if !bool::from(expected.ct_eq(&packet.authenticator())) {
        return false;
    }
    packet
        .attributes()
        .filter(|a| a.kind == MESSAGE_AUTHENTICATOR)
        .all(|a| {
            a.value.len() == 16
                && bool::from(hmac_with(packet.bytes(), &[0; 16], a.offset, secret).ct_eq(a.value))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::packet::{Builder, Code};

    /// An Accounting-Request (Start for bob), optionally with a Message-Authenticator.
    fn signed(secret: &[u8], with_ma: bool) -> Vec<u8> {
        let mut b = Builder::new(Code::AccountingRequest, 3, [0; 16]);
        b.attribute(40, &[0, 0, 0, 1]).unwrap();
        b.attribute(1, b"bob").unwrap();
        if with_ma {
            b.attribute(MESSAGE_AUTHENTICATOR, &[0; 16]).unwrap();
        }
        b.attribute(44, b"1").unwrap();
        let mut bytes = b.finish();
        sign_request(&mut bytes, secret);
        bytes
    }

    #[test]
    fn rfc_2866_request_authenticator_is_md5_over_zeroed_header() {
        let bytes = signed(b"s3cret", false);
        // Computed independently: MD5 of the packet with 16 zero octets, then the secret.
        let mut copy = bytes.clone();
        copy[4..20].fill(0);
        copy.extend_from_slice(b"s3cret");
        let want: [u8; 16] = Md5::digest(&copy).into();
        assert_eq!(&bytes[4..20], &want);
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(
            verify_request(&p, b"s3cret"),
            Verdict::Authentic {
                message_authenticator: false
            }
        );
        assert_eq!(
            verify_request(&p, b"wrong"),
            Verdict::BadRequestAuthenticator
        );
    }

    #[test]
    fn message_authenticator_is_checked_and_a_flipped_bit_is_refused() {
        let bytes = signed(b"s3cret", true);
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(
            verify_request(&p, b"s3cret"),
            Verdict::Authentic {
                message_authenticator: true
            }
        );
        // The HMAC, computed independently over the packet with zero authenticator and MA.
        let ma = p
            .attributes()
            .find(|a| a.kind == MESSAGE_AUTHENTICATOR)
            .unwrap();
        let mut zeroed = bytes.clone();
        zeroed[4..20].fill(0);
        zeroed[ma.offset + 2..ma.offset + 18].fill(0);
        let mut mac = HmacMd5::new_from_slice(b"s3cret").unwrap();
        mac.update(&zeroed);
        assert_eq!(ma.value, &mac.finalize().into_bytes()[..]);
        // A wrong MA is refused even when the request authenticator over it is right.
        let mut forged = bytes.clone();
        forged[ma.offset + 2] ^= 1;
        sign_request_md5_only(&mut forged, b"s3cret");
        let p = Packet::parse(&forged).unwrap();
        assert_eq!(
            verify_request(&p, b"s3cret"),
            Verdict::BadMessageAuthenticator
        );
    }

    /// Recomputes only the MD5 authenticator (leaves the MA as it is).
    fn sign_request_md5_only(bytes: &mut [u8], secret: &[u8]) {
        let a = request_authenticator(bytes, secret);
        bytes[4..20].copy_from_slice(&a);
    }

    #[test]
    fn a_response_verifies_against_its_request_only() {
        let req = signed(b"k", true);
        let req_auth: [u8; 16] = req[4..20].try_into().unwrap();
        let mut b = Builder::new(Code::AccountingResponse, 3, [0; 16]);
        b.attribute(MESSAGE_AUTHENTICATOR, &[0; 16]).unwrap();
        let mut resp = b.finish();
        sign_response(&mut resp, &req_auth, b"k");
        let p = Packet::parse(&resp).unwrap();
        assert!(verify_response(&p, &req_auth, b"k"));
        assert!(!verify_response(&p, &[0; 16], b"k"));
        assert!(!verify_response(&p, &req_auth, b"other"));
    }
}
