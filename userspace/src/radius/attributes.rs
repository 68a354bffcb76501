//! The attributes of an Accounting-Request quid reads (RFC 2865, 2866, 2869, 3162, 4818),
//! each checked for its exact length and range: a value that lies about its form refuses the
//! whole request.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::packet::Packet;

/// Attribute type numbers.
pub mod kind {
    pub const USER_NAME: u8 = 1;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const CLASS: u8 = 25;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_DELAY_TIME: u8 = 41;
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_INPUT_PACKETS: u8 = 47;
    pub const ACCT_OUTPUT_PACKETS: u8 = 48;
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    pub const EVENT_TIMESTAMP: u8 = 55;
    pub const NAS_PORT_ID: u8 = 87;
    pub const NAS_IPV6_ADDRESS: u8 = 95;
    pub const FRAMED_IPV6_PREFIX: u8 = 97;
    pub const DELEGATED_IPV6_PREFIX: u8 = 123;
}

/// Acct-Status-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusType {
    /// 1: a session began.
    Start,
    /// 2: a session ended.
    Stop,
    /// 3: a session goes on (its addresses may have changed).
    InterimUpdate,
    /// 7: the NAS (re)started: none of its earlier sessions exists any more.
    AccountingOn,
    /// 8: the NAS is stopping: all its sessions end.
    AccountingOff,
}

impl StatusType {
    /// The value on the wire.
    pub fn value(self) -> u32 {
        match self {
            StatusType::Start => 1,
            StatusType::Stop => 2,
            StatusType::InterimUpdate => 3,
            StatusType::AccountingOn => 7,
            StatusType::AccountingOff => 8,
        }
    }

    fn from_value(v: u32) -> Option<StatusType> {
        Some(match v {
            1 => StatusType::Start,
            2 => StatusType::Stop,
            3 => StatusType::InterimUpdate,
            7 => StatusType::AccountingOn,
            8 => StatusType::AccountingOff,
            _ => return None,
        })
    }
}

/// Which attribute names the subscriber (`[radius] subscriber_attribute`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubscriberAttribute {
    /// User-Name (1), the default.
    #[default]
    UserName,
    /// Calling-Station-Id (31), often the CPE's MAC address.
    CallingStationId,
    /// NAS-Port-Id (87), e.g. the access line or VLAN.
    NasPortId,
    /// Class (25), as the authentication server handed it out.
    Class,
}

impl SubscriberAttribute {
    /// The attribute's type number.
    pub fn kind(self) -> u8 {
        match self {
            SubscriberAttribute::UserName => kind::USER_NAME,
            SubscriberAttribute::CallingStationId => kind::CALLING_STATION_ID,
            SubscriberAttribute::NasPortId => kind::NAS_PORT_ID,
            SubscriberAttribute::Class => kind::CLASS,
        }
    }

    /// The attribute's name as RFCs spell it.
    pub fn name(self) -> &'static str {
        match self {
            SubscriberAttribute::UserName => "User-Name",
            SubscriberAttribute::CallingStationId => "Calling-Station-Id",
            SubscriberAttribute::NasPortId => "NAS-Port-Id",
            SubscriberAttribute::Class => "Class",
        }
    }
}

/// Why an Accounting-Request's attributes are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    #[error("not an Accounting-Request (code {0})")]
    NotAccountingRequest(u8),
    #[error("no Acct-Status-Type")]
    NoStatusType,
    #[error("Acct-Status-Type {0} is not Start, Stop, Interim-Update, Accounting-On or -Off")]
    UnknownStatusType(u32),
    #[error("attribute {name} is {len} octets; it must be {want}")]
    BadLength {
        name: &'static str,
        len: usize,
        want: &'static str,
    },
    #[error("attribute {0} appears more than once")]
    Repeated(&'static str),
    #[error("{name} {prefix} has host bits set (a prefix must end at its length)")]
    HostBits { name: &'static str, prefix: String },
    #[error("{name} prefix length {length} is over 128")]
    PrefixLength { name: &'static str, length: u8 },
    #[error("no Acct-Session-Id in a {0:?}")]
    NoSessionId(StatusType),
    #[error("no {0} to name the subscriber by")]
    NoSubscriber(&'static str),
}

/// What a NAS said in one Accounting-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounting<'a> {
    /// Start, Stop, Interim-Update, Accounting-On/Off.
    pub status: StatusType,
    /// Acct-Session-Id (empty only for Accounting-On/Off).
    pub session_id: &'a [u8],
    /// The subscriber attribute's value (for Start, Stop and Interim-Update).
    pub subscriber: &'a [u8],
    /// NAS-IP-Address, NAS-IPv6-Address or NAS-Identifier, whichever comes first.
    pub nas: Option<Nas<'a>>,
    /// Framed-IP-Address, Framed-IPv6-Prefix and Delegated-IPv6-Prefix (host bits clear).
    pub prefixes: Vec<IpNet>,
    /// Event-Timestamp (seconds since 1970).
    pub event_timestamp: Option<u32>,
    /// Acct-Session-Time (seconds since the session's start).
    pub session_time: Option<u32>,
    /// Acct-Input-Octets with Acct-Input-Gigawords (from the subscriber).
    pub input_octets: u64,
    /// Acct-Output-Octets with Acct-Output-Gigawords (to the subscriber).
    pub output_octets: u64,
}

/// How the NAS names itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nas<'a> {
    /// NAS-IP-Address or NAS-IPv6-Address.
    Address(std::net::IpAddr),
    /// NAS-Identifier.
    Identifier(&'a [u8]),
}

/// A value of exactly `N` octets.
fn fixed<const N: usize>(
    name: &'static str,
    v: &[u8],
    want: &'static str,
) -> Result<[u8; N], AttributeError> {
    <[u8; N]>::try_from(v).map_err(|_| AttributeError::BadLength {
        name,
        len: v.len(),
        want,
    })
}

fn int(name: &'static str, v: &[u8]) -> Result<u32, AttributeError> {
    fixed::<4>(name, v, "4 octets").map(u32::from_be_bytes)
}

fn text<'a>(name: &'static str, v: &'a [u8]) -> Result<&'a [u8], AttributeError> {
    if v.is_empty() {
        return Err(AttributeError::BadLength {
            name,
            len: 0,
            want: "at least 1 octet",
        });
    }
    Ok(v)
}

/// An IPv6 prefix attribute (RFC 3162 section 2.3): reserved, length, then the prefix's
/// significant octets (at least enough for its length, at most 16).
fn ipv6_prefix(name: &'static str, v: &[u8]) -> Result<Ipv6Net, AttributeError> {
    let bad = || AttributeError::BadLength {
        name,
        len: v.len(),
        want: "2 to 18 octets holding the prefix length's octets",
    };
    let (&length, octets) = v.get(1..).and_then(|r| r.split_first()).ok_or_else(bad)?;
    if length > 128 {
        return Err(AttributeError::PrefixLength { name, length });
    }
    if octets.len() > 16 || octets.len() < usize::from(length).div_ceil(8) {
        return Err(bad());
    }
    let mut addr = [0u8; 16];
    addr[..octets.len()].copy_from_slice(octets);
    let net = Ipv6Net::new(Ipv6Addr::from(addr), length).map_err(|_| bad())?;
    if net.trunc() != net {
        return Err(AttributeError::HostBits {
            name,
            prefix: net.to_string(),
        });
    }
    Ok(net)
}

impl<'a> Accounting<'a> {
    /// Reads the accounting attributes of an authenticated request; the subscriber is named by
    /// `by`.
    pub fn read(
        packet: &Packet<'a>,
        by: SubscriberAttribute,
    ) -> Result<Accounting<'a>, AttributeError> {
        use kind::*;
        if packet.code() != super::packet::Code::AccountingRequest {
            return Err(AttributeError::NotAccountingRequest(packet.code().octet()));
        }
        let mut status = None;
        let mut session_id: Option<&[u8]> = None;
        let mut subscriber: Option<&[u8]> = None;
        let mut nas = None;
        let mut prefixes = Vec::new();
        let mut event_timestamp = None;
        let mut session_time = None;
        let (mut in_lo, mut in_hi, mut out_lo, mut out_hi) = (0u32, 0u32, 0u32, 0u32);
        for a in packet.attributes() {
            let v = a.value;
            match a.kind {
                ACCT_STATUS_TYPE => {
                    let s = int("Acct-Status-Type", v)?;
                    if status.is_some() {
                        return Err(AttributeError::Repeated("Acct-Status-Type"));
                    }
                    status = Some(
                        StatusType::from_value(s).ok_or(AttributeError::UnknownStatusType(s))?,
                    );
                }
                ACCT_SESSION_ID => {
                    let id = text("Acct-Session-Id", v)?;
                    if session_id.replace(id).is_some() {
                        return Err(AttributeError::Repeated("Acct-Session-Id"));
                    }
                }
                NAS_IP_ADDRESS => {
                    let ip = fixed::<4>("NAS-IP-Address", v, "4 octets")?;
                    nas.get_or_insert(Nas::Address(Ipv4Addr::from(ip).into()));
                }
                NAS_IPV6_ADDRESS => {
                    let ip = fixed::<16>("NAS-IPv6-Address", v, "16 octets")?;
                    nas.get_or_insert(Nas::Address(Ipv6Addr::from(ip).into()));
                }
                NAS_IDENTIFIER => {
                    nas.get_or_insert(Nas::Identifier(text("NAS-Identifier", v)?));
                }
                FRAMED_IP_ADDRESS => {
                    let ip = Ipv4Addr::from(fixed::<4>("Framed-IP-Address", v, "4 octets")?);
                    // 255.255.255.254 ("the NAS picks") and 255.255.255.255 ("the user picks")
                    // are instructions of Access-Accept, not addresses; 0.0.0.0 is none.
                    if !(ip.is_broadcast()
                        || ip == Ipv4Addr::new(255, 255, 255, 254)
                        || ip.is_unspecified())
                    {
                        prefixes.push(IpNet::V4(Ipv4Net::from(ip)));
                    }
                }
                FRAMED_IPV6_PREFIX => {
                    prefixes.push(IpNet::V6(ipv6_prefix("Framed-IPv6-Prefix", v)?))
                }
                DELEGATED_IPV6_PREFIX => {
                    prefixes.push(IpNet::V6(ipv6_prefix("Delegated-IPv6-Prefix", v)?));
                }
                EVENT_TIMESTAMP => event_timestamp = Some(int("Event-Timestamp", v)?),
                ACCT_SESSION_TIME => session_time = Some(int("Acct-Session-Time", v)?),
                ACCT_INPUT_OCTETS => in_lo = int("Acct-Input-Octets", v)?,
                ACCT_OUTPUT_OCTETS => out_lo = int("Acct-Output-Octets", v)?,
                ACCT_INPUT_GIGAWORDS => in_hi = int("Acct-Input-Gigawords", v)?,
                ACCT_OUTPUT_GIGAWORDS => out_hi = int("Acct-Output-Gigawords", v)?,
                _ => {}
            }
            if a.kind == by.kind() && subscriber.is_none() {
                subscriber = Some(text(by.name(), v)?);
            }
        }
        let status = status.ok_or(AttributeError::NoStatusType)?;
        let per_session = !matches!(status, StatusType::AccountingOn | StatusType::AccountingOff);
        let session_id = match session_id {
            Some(s) => s,
            None if per_session => return Err(AttributeError::NoSessionId(status)),
            None => &[],
        };
        let subscriber = match subscriber {
            Some(s) => s,
            None if per_session => return Err(AttributeError::NoSubscriber(by.name())),
            None => &[],
        };
        prefixes.sort_unstable();
        prefixes.dedup();
        Ok(Accounting {
            status,
            session_id,
            subscriber,
            nas,
            prefixes,
            event_timestamp,
            session_time,
            input_octets: u64::from(in_hi) << 32 | u64::from(in_lo),
            output_octets: u64::from(out_hi) << 32 | u64::from(out_lo),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::packet::{Builder, Code};

    fn read(attrs: &[(u8, &[u8])]) -> Result<Vec<IpNet>, AttributeError> {
        let mut b = Builder::new(Code::AccountingRequest, 1, [0; 16]);
        for (k, v) in attrs {
            b.attribute(*k, v).unwrap();
        }
        let bytes = b.finish();
        let p = Packet::parse(&bytes).unwrap();
        Accounting::read(&p, SubscriberAttribute::UserName).map(|a| a.prefixes)
    }

    const START: (u8, &[u8]) = (kind::ACCT_STATUS_TYPE, &[0, 0, 0, 1]);
    const SESSION: (u8, &[u8]) = (kind::ACCT_SESSION_ID, b"s1");
    const USER: (u8, &[u8]) = (kind::USER_NAME, b"alice");

    #[test]
    fn addresses_of_both_families_are_read() {
        let got = read(&[
            START,
            SESSION,
            USER,
            (kind::FRAMED_IP_ADDRESS, &[100, 64, 0, 9]),
            (
                kind::FRAMED_IPV6_PREFIX,
                &[0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0],
            ),
            (
                kind::DELEGATED_IPV6_PREFIX,
                &[0, 56, 0x20, 0x01, 0x0d, 0xb8, 0, 2, 0],
            ),
        ])
        .unwrap();
        let want: Vec<IpNet> = ["100.64.0.9/32", "2001:db8:1::/64", "2001:db8:2::/56"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn octets_combine_with_gigawords() {
        let mut b = Builder::new(Code::AccountingRequest, 1, [0; 16]);
        for (k, v) in [
            START,
            SESSION,
            USER,
            (kind::ACCT_INPUT_OCTETS, &[0, 0, 0, 5][..]),
            (kind::ACCT_INPUT_GIGAWORDS, &[0, 0, 0, 2]),
            (kind::ACCT_OUTPUT_OCTETS, &[0xff, 0xff, 0xff, 0xff]),
        ] {
            b.attribute(k, v).unwrap();
        }
        let bytes = b.finish();
        let a = Accounting::read(
            &Packet::parse(&bytes).unwrap(),
            SubscriberAttribute::UserName,
        )
        .unwrap();
        assert_eq!(a.input_octets, (2 << 32) + 5);
        assert_eq!(a.output_octets, 0xffff_ffff);
    }

    #[test]
    fn malformed_values_refuse_the_request() {
        type Case<'a> = (Vec<(u8, &'a [u8])>, &'a str);
        let cases: Vec<Case> = vec![
            (vec![SESSION, USER], "no Acct-Status-Type"),
            (
                vec![(40, &[0, 0, 0, 9]), SESSION, USER],
                "Acct-Status-Type 9",
            ),
            (
                vec![(40, &[0, 0, 1]), SESSION, USER],
                "Acct-Status-Type is 3 octets",
            ),
            (vec![START, START, SESSION, USER], "more than once"),
            (vec![START, USER], "no Acct-Session-Id"),
            (vec![START, SESSION], "no User-Name"),
            (
                vec![START, SESSION, USER, (8, &[1, 2, 3])],
                "Framed-IP-Address is 3 octets",
            ),
            (
                vec![START, SESSION, USER, (97, &[0, 129, 0x20])],
                "length 129",
            ),
            (
                vec![START, SESSION, USER, (97, &[0, 64, 0x20, 1])],
                "Framed-IPv6-Prefix is 4 octets",
            ),
            (
                vec![START, SESSION, USER, (97, &[0, 16, 0x20, 1, 5])],
                "host bits",
            ),
            (
                vec![START, SESSION, USER, (123, &[0])],
                "Delegated-IPv6-Prefix is 1 octets",
            ),
            (
                vec![
                    START,
                    SESSION,
                    USER,
                    (
                        97,
                        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    ),
                ],
                "19 octets",
            ),
        ];
        for (attrs, want) in cases {
            let e = read(&attrs).unwrap_err().to_string();
            assert!(e.contains(want), "{attrs:?}: {e}");
        }
    }

    #[test]
    fn accounting_on_needs_no_session() {
        assert_eq!(read(&[(40, &[0, 0, 0, 7])]).unwrap(), vec![]);
    }

    #[test]
    fn placeholder_addresses_bind_nothing() {
        for ip in [[255, 255, 255, 254], [255, 255, 255, 255], [0, 0, 0, 0]] {
            assert_eq!(read(&[START, SESSION, USER, (8, &ip)]).unwrap(), vec![]);
        }
    }
}
