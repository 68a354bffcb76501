//! Writing an Accounting-Request: for the accounting client (quid's counts to the ISP's
//! server) and for tests and benchmarks that play a NAS.

use ipnet::IpNet;

use super::{
    attributes::{StatusType, kind},
    authenticator::{MESSAGE_AUTHENTICATOR, sign_request},
    packet::{BuildError, Builder, Code},
};

/// The attributes of one Accounting-Request.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// Start, Stop, Interim-Update, Accounting-On/Off (`None`: Start).
    pub status: Option<StatusType>,
    /// Acct-Session-Id.
    pub session_id: &'a [u8],
    /// User-Name.
    pub user_name: &'a [u8],
    /// NAS-Identifier (none: left out).
    pub nas_identifier: &'a [u8],
    /// Framed-IP-Address for an IPv4 /32, Framed-IPv6-Prefix for IPv6.
    pub prefixes: &'a [IpNet],
    /// Event-Timestamp.
    pub event_timestamp: Option<u32>,
    /// Acct-Session-Time.
    pub session_time: Option<u32>,
    /// Acct-Input-Octets and -Gigawords (none: left out).
    pub input_octets: Option<u64>,
    /// Acct-Output-Octets and -Gigawords (none: left out).
    pub output_octets: Option<u64>,
    /// Add a Message-Authenticator.
    pub message_authenticator: bool,
}

/// The low 32 bits and the gigawords of an octet count.
fn split(octets: u64) -> ([u8; 4], [u8; 4]) {
    let low = u32::try_from(octets & 0xffff_ffff).unwrap_or(u32::MAX);
    let high = u32::try_from(octets >> 32).unwrap_or(u32::MAX);
    (low.to_be_bytes(), high.to_be_bytes())
}

impl Request<'_> {
    /// The signed packet.
    pub fn encode(&self, identifier: u8, secret: &[u8]) -> Result<Vec<u8>, BuildError> {
        let mut b = Builder::new(Code::AccountingRequest, identifier, [0; 16]);
        let status = self.status.unwrap_or(StatusType::Start);
        b.attribute(kind::ACCT_STATUS_TYPE, &status.value().to_be_bytes())?;
        if !self.session_id.is_empty() {
            b.attribute(kind::ACCT_SESSION_ID, self.session_id)?;
        }
        if !self.user_name.is_empty() {
            b.attribute(kind::USER_NAME, self.user_name)?;
        }
        if !self.nas_identifier.is_empty() {
            b.attribute(kind::NAS_IDENTIFIER, self.nas_identifier)?;
        }
        for p in self.prefixes {
            match p {
                IpNet::V4(v4) => b.attribute(kind::FRAMED_IP_ADDRESS, &v4.addr().octets())?,
                IpNet::V6(v6) => {
                    let mut v = vec![0, v6.prefix_len()];
                    let octets = v6.addr().octets();
                    v.extend_from_slice(&octets[..usize::from(v6.prefix_len()).div_ceil(8)]);
                    b.attribute(kind::FRAMED_IPV6_PREFIX, &v)?
                }
            };
        }
        if let Some(t) = self.event_timestamp {
            b.attribute(kind::EVENT_TIMESTAMP, &t.to_be_bytes())?;
        }
        if let Some(t) = self.session_time {
            b.attribute(kind::ACCT_SESSION_TIME, &t.to_be_bytes())?;
        }
        if let Some(o) = self.input_octets {
            let (low, high) = split(o);
            b.attribute(kind::ACCT_INPUT_OCTETS, &low)?;
            b.attribute(kind::ACCT_INPUT_GIGAWORDS, &high)?;
        }
        if let Some(o) = self.output_octets {
            let (low, high) = split(o);
            b.attribute(kind::ACCT_OUTPUT_OCTETS, &low)?;
            b.attribute(kind::ACCT_OUTPUT_GIGAWORDS, &high)?;
        }
        if self.message_authenticator {
            b.attribute(MESSAGE_AUTHENTICATOR, &[0; 16])?;
        }
        let mut bytes = b.finish();
        sign_request(&mut bytes, secret);
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::{
        attributes::{Accounting, SubscriberAttribute},
        authenticator::{Verdict, verify_request},
        packet::Packet,
    };

    #[test]
    fn a_written_request_reads_back_the_same() {
        let prefixes: Vec<IpNet> = ["100.64.0.9/32", "2001:db8:1::/56"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let r = Request {
            status: Some(StatusType::InterimUpdate),
            session_id: b"s-1",
            user_name: b"alice",
            nas_identifier: b"bng-1",
            prefixes: &prefixes,
            event_timestamp: Some(1_800_000_000),
            session_time: Some(60),
            input_octets: Some(5 << 32 | 7),
            output_octets: Some(9),
            message_authenticator: true,
        };
        let bytes = r.encode(200, b"k").unwrap();
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(
            verify_request(&p, b"k"),
            Verdict::Authentic {
                message_authenticator: true
            }
        );
        let a = Accounting::read(&p, SubscriberAttribute::UserName).unwrap();
        assert_eq!(a.status, StatusType::InterimUpdate);
        assert_eq!(a.prefixes, prefixes);
        assert_eq!(a.input_octets, 5 << 32 | 7);
        assert_eq!(a.output_octets, 9);
        assert_eq!(a.session_time, Some(60));
    }
}
