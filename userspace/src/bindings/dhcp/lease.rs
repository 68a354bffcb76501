//! One line of Kea's memfile lease file (`kea-leases4.csv`, `kea-leases6.csv`), read by the
//! column names of the file's header, so every schema version Kea writes reads alike (v4:
//! `address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,
//! user_context[,pool_id]`; v6: `address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,
//! lease_type,iaid,prefix_len,...,hwaddr,state,user_context,...`). Kea never quotes: it writes a
//! ',' or '&' inside a cell as `&#x2c` / `&#x26`.

use std::net::IpAddr;

use ipnet::IpNet;

/// Which lease file a header belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// A lease's state as Kea writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// 0: assigned.
    Assigned,
    /// 1: the client declined the address (in use by someone else).
    Declined,
    /// 2: expired and reclaimed by the server.
    ExpiredReclaimed,
    /// Any later state (3 and up: registered, ...): not an assignment quid binds.
    Other(u8),
}

/// One lease as a line of the file states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address (/32, /128) or the delegated prefix (IA_PD).
    pub prefix: IpNet,
    /// Seconds; 0 means the lease was released or deleted.
    pub valid_lifetime: u32,
    /// Unix seconds when it ends.
    pub expire: u64,
    pub state: LeaseState,
    /// Hardware address bytes (may be empty).
    pub hwaddr: Vec<u8>,
    /// v4: the client identifier (option 61); v6: the DUID. May be empty.
    pub client_id: Vec<u8>,
    /// Option 82 circuit-id (sub-option 1), when Kea stored the relay agent information.
    pub circuit_id: Option<Vec<u8>>,
    /// Option 82 remote-id (sub-option 2).
    pub remote_id: Option<Vec<u8>>,
}

/// Kea's lifetime for a lease that never ends.
const INFINITE: u32 = u32::MAX;

impl Lease {
    /// The binding session it is: its address (a delegated prefix with its length).
    pub fn key(&self) -> String {
        match self.prefix {
            IpNet::V6(p) if p.prefix_len() < 128 => p.to_string(),
            p => p.addr().to_string(),
        }
    }

    /// Whether the lease holds its address at `now` (unix seconds): assigned, not released
    /// (lifetime 0), not expired.
    pub fn active_at(&self, now: u64) -> bool {
        self.state == LeaseState::Assigned
            && self.valid_lifetime > 0
            && (self.valid_lifetime == INFINITE || self.expire > now)
    }
}

/// Where the columns quid reads are in one lease file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub family: Family,
    width: usize,
    address: usize,
    client_id: usize,
    valid_lifetime: usize,
    expire: usize,
    hwaddr: Option<usize>,
    state: Option<usize>,
    user_context: Option<usize>,
    /// v6 only.
    lease_type: Option<usize>,
    prefix_len: Option<usize>,
}

impl Header {
    /// Reads a header line; the family is told by its second column (`hwaddr` for v4, `duid`
    /// for v6).
    pub fn parse(line: &str) -> Result<Header, String> {
        let names: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
        let at = |n: &str| names.iter().position(|c| *c == n);
        let need = |n: &str| at(n).ok_or_else(|| format!("the header lacks the column `{n}`"));
        let (family, client_id) = match (at("client_id"), at("duid")) {
            (Some(c), None) => (Family::V4, c),
            (None, Some(d)) => (Family::V6, d),
            _ => {
                return Err(format!(
                    "not a Kea lease file header (it names neither `client_id` nor `duid`): \
                     `{}`",
                    line.escape_debug()
                ));
            }
        };
        let (lease_type, prefix_len) = match family {
            Family::V4 => (None, None),
            Family::V6 => (Some(need("lease_type")?), Some(need("prefix_len")?)),
        };
        Ok(Header {
            family,
            width: names.len(),
            address: need("address")?,
            client_id,
            valid_lifetime: need("valid_lifetime")?,
            expire: need("expire")?,
            hwaddr: at("hwaddr"),
            state: at("state"),
            user_context: at("user_context"),
            lease_type,
            prefix_len,
        })
    }

    /// Reads one lease line (without its newline).
    pub fn lease(&self, line: &str) -> Result<Lease, String> {
        let cells: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
        if cells.len() != self.width {
            return Err(format!(
                "{} fields, the header has {}",
                cells.len(),
                self.width
            ));
        }
        let address: IpAddr = cells[self.address].parse().map_err(|_| {
            format!(
                "address `{}` is not an IP address",
                shown(cells[self.address])
            )
        })?;
        let len = match (self.family, address, self.lease_type, self.prefix_len) {
            (Family::V4, IpAddr::V4(_), ..) => 32,
            (Family::V6, IpAddr::V6(_), Some(t), Some(p)) => {
                match number::<u8>(cells[t], "lease_type")? {
                    // IA_NA and IA_TA: one address.
                    0 | 1 => 128,
                    // IA_PD: the delegated prefix.
                    2 => number::<u8>(cells[p], "prefix_len")?,
                    other => {
                        return Err(format!(
                            "lease_type {other} is not 0 (IA_NA), 1 (IA_TA) or 2 (IA_PD)"
                        ));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "address `{address}` is of the other family than this file"
                ));
            }
        };
        let prefix =
            IpNet::new(address, len).map_err(|_| format!("prefix_len {len} is out of range"))?;
        if prefix.trunc() != prefix || len == 0 {
            return Err(format!(
                "delegated prefix {prefix} has host bits set or covers everything"
            ));
        }
        let state = match self.state {
            None => LeaseState::Assigned,
            Some(i) => match number::<u8>(cells[i], "state")? {
                0 => LeaseState::Assigned,
                1 => LeaseState::Declined,
                2 => LeaseState::ExpiredReclaimed,
                n => LeaseState::Other(n),
            },
        };
        let (circuit_id, remote_id) = match self.user_context {
            Some(i) if !cells[i].is_empty() => relay_agent_info(&unescape(cells[i]))?,
            _ => (None, None),
        };
        Ok(Lease {
            prefix,
            valid_lifetime: number(cells[self.valid_lifetime], "valid_lifetime")?,
            expire: number(cells[self.expire], "expire")?,
            state,
            hwaddr: match self.hwaddr {
                Some(i) => hex_bytes(cells[i]).map_err(|m| format!("hwaddr: {m}"))?,
                None => Vec::new(),
            },
            client_id: hex_bytes(cells[self.client_id]).map_err(|m| format!("client id: {m}"))?,
            circuit_id,
            remote_id,
        })
    }
}

/// An identifier's bytes (circuit-id, remote-id).
type Id = Vec<u8>;

/// A cell shown in an error: escaped, and cut short.
fn shown(cell: &str) -> String {
    cell.chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

fn number<T: std::str::FromStr>(cell: &str, what: &str) -> Result<T, String> {
    cell.parse()
        .map_err(|_| format!("{what} `{}` is not a number in range", shown(cell)))
}

/// Hex bytes as Kea writes identifiers (`aa:bb:cc`, also accepted `aa-bb`, `aabbcc`, `0xaabb`).
pub fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !matches!(c, ':' | '-'))
        .collect();
    hex::decode(&digits).map_err(|_| format!("`{}` is not hex bytes", shown(text)))
}

/// Kea's escape of a ',' or '&' in a cell: `&#x` and two hex digits.
fn unescape(cell: &str) -> String {
    let mut out = Vec::with_capacity(cell.len());
    let bytes = cell.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"&#x")
            && let Some(b) = bytes
                .get(i + 3..i + 5)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 5;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The circuit-id and remote-id of option 82 in a lease's user context, as Kea stores them
/// with `store-extended-info`: `{"ISC": {"relay-agent-info": {"sub-options": "0x0104...",
/// "remote-id": "..."}}}` (Kea 2.1 and later), or the older `"relay-agent-info": "0x..."`.
fn relay_agent_info(context: &str) -> Result<(Option<Id>, Option<Id>), String> {
    let json: serde_json::Value =
        serde_json::from_str(context).map_err(|e| format!("user_context is not JSON: {e}"))?;
    let info = &json["ISC"]["relay-agent-info"];
    let sub_options = match info {
        serde_json::Value::String(s) => Some(s.as_str()),
        serde_json::Value::Object(m) => m.get("sub-options").and_then(|v| v.as_str()),
        _ => None,
    };
    let (mut circuit, mut remote) = (None, None);
    if let Some(hex) = sub_options {
        let raw = hex_bytes(hex).map_err(|m| format!("relay-agent-info sub-options: {m}"))?;
        let mut rest = raw.as_slice();
        // TLVs: code, length, value; a length running past the end is a lie.
        while let [code, len, tail @ ..] = rest {
            let len = usize::from(*len);
            let Some(value) = tail.get(..len) else {
                return Err("relay-agent-info sub-options: a sub-option runs past the end".into());
            };
            match code {
                1 => circuit = Some(value.to_vec()),
                2 => remote = Some(value.to_vec()),
                _ => {}
            }
            rest = &tail[len..];
        }
        if !rest.is_empty() {
            return Err("relay-agent-info sub-options: a truncated sub-option at the end".into());
        }
    }
    if remote.is_none()
        && let Some(r) = info.get("remote-id").and_then(|v| v.as_str())
    {
        remote = Some(hex_bytes(r).map_err(|m| format!("relay-agent-info remote-id: {m}"))?);
    }
    Ok((circuit, remote))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context";
    const V4_POOL: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id";
    const V6: &str = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source";

    #[test]
    fn a_v4_lease_with_option_82_reads_every_field_quid_uses() {
        let h = Header::parse(V4).unwrap();
        assert_eq!(h.family, Family::V4);
        let l = h
            .lease(
                "192.0.2.10,aa:bb:cc:00:00:01,01:aa:bb:cc:00:00:01,4000,1765000000,1,0,0,pc&#x2cone,0,\
                 { \"ISC\": { \"relay-agent-info\": { \"sub-options\": \"0x0106657468302F3102020A0B\"&#x2c \"remote-id\": \"0A0B\" } } }",
            )
            .unwrap();
        assert_eq!(l.prefix.to_string(), "192.0.2.10/32");
        assert_eq!(l.key(), "192.0.2.10");
        assert_eq!((l.valid_lifetime, l.expire), (4000, 1_765_000_000));
        assert_eq!(l.state, LeaseState::Assigned);
        assert_eq!(l.hwaddr, [0xaa, 0xbb, 0xcc, 0, 0, 1]);
        assert_eq!(l.client_id, [1, 0xaa, 0xbb, 0xcc, 0, 0, 1]);
        assert_eq!(l.circuit_id.as_deref(), Some(&b"eth0/1"[..]));
        assert_eq!(l.remote_id.as_deref(), Some(&[0x0a, 0x0b][..]));
        // Kea 2.0's form: the raw option as a string.
        let old = h
            .lease("192.0.2.11,,,4000,1765000000,1,0,0,,0,{ \"ISC\": { \"relay-agent-info\": \"0x0103414243\" } }")
            .unwrap();
        assert_eq!(old.circuit_id.as_deref(), Some(&b"ABC"[..]));
        // The pool_id column of newer Kea.
        let h = Header::parse(V4_POOL).unwrap();
        assert!(
            h.lease("192.0.2.12,aa:bb:cc:00:00:02,,0,1765000000,1,0,0,,0,,0")
                .is_ok()
        );
    }

    #[test]
    fn states_lifetimes_and_expiry_decide_whether_a_lease_is_active() {
        let h = Header::parse(V4).unwrap();
        let lease = |valid: u32, expire: u64, state: u8| {
            h.lease(&format!(
                "192.0.2.10,aa:bb:cc:00:00:01,,{valid},{expire},1,0,0,,{state},"
            ))
            .unwrap()
        };
        assert!(lease(4, 1000, 0).active_at(999));
        assert!(
            !lease(4, 1000, 0).active_at(1000),
            "expired at its expire time"
        );
        assert!(
            !lease(0, 1000, 0).active_at(10),
            "valid_lifetime 0: released"
        );
        assert!(!lease(4, 1000, 1).active_at(10), "declined");
        assert!(!lease(4, 1000, 2).active_at(10), "expired-reclaimed");
        assert!(
            lease(u32::MAX, 5, 0).active_at(10),
            "an infinite lease never expires"
        );
    }

    #[test]
    fn v6_addresses_and_delegated_prefixes() {
        let h = Header::parse(V6).unwrap();
        assert_eq!(h.family, Family::V6);
        let na = h
            .lease("2001:db8:1::10,00:03:00:01:aa:bb:cc:00:00:01,4000,1765000000,1,3000,0,1,128,0,0,,aa:bb:cc:00:00:01,0,,1,2")
            .unwrap();
        assert_eq!(
            (na.prefix.to_string(), na.key()),
            ("2001:db8:1::10/128".into(), "2001:db8:1::10".into())
        );
        assert_eq!(na.client_id, [0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0, 0, 1]);
        let pd = h
            .lease("2001:db8:100::,00:03:00:01:aa:bb:cc:00:00:01,4000,1765000000,1,3000,2,1,56,0,0,,,0,,1,2")
            .unwrap();
        assert_eq!(pd.key(), "2001:db8:100::/56");
        assert_eq!(pd.prefix.to_string(), "2001:db8:100::/56");
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        let v4 = Header::parse(V4).unwrap();
        let v6 = Header::parse(V6).unwrap();
        let cases = [
            (
                &v4,
                "192.0.2.10,aa:bb,,4000,1765000000,1,0,0,,0",
                "10 fields, the header has 11",
            ),
            (
                &v4,
                "192.0.2.300,aa:bb,,4000,1765000000,1,0,0,,0,",
                "address `192.0.2.300` is not an IP address",
            ),
            (
                &v4,
                "2001:db8::1,aa:bb,,4000,1765000000,1,0,0,,0,",
                "address `2001:db8::1` is of the other family than this file",
            ),
            (
                &v4,
                "192.0.2.10,aa:bb,,-1,1765000000,1,0,0,,0,",
                "valid_lifetime `-1` is not a number in range",
            ),
            (
                &v4,
                "192.0.2.10,zz,,4000,1765000000,1,0,0,,0,",
                "hwaddr: `zz` is not hex bytes",
            ),
            (
                &v4,
                "192.0.2.10,aa,,4000,1765000000,1,0,0,,0,{\"ISC\"",
                "user_context is not JSON: EOF while parsing an object at line 1 column 6",
            ),
            (
                &v4,
                "192.0.2.10,aa,,4000,1765000000,1,0,0,,0,{\"ISC\":{\"relay-agent-info\":\"0x0109AB\"}}",
                "relay-agent-info sub-options: a sub-option runs past the end",
            ),
            (
                &v6,
                "2001:db8:100::1,00:01,4000,1765000000,1,3000,2,1,56,0,0,,,0,,1,2",
                "delegated prefix 2001:db8:100::1/56 has host bits set or covers everything",
            ),
            (
                &v6,
                "2001:db8:100::,00:01,4000,1765000000,1,3000,7,1,56,0,0,,,0,,1,2",
                "lease_type 7 is not 0 (IA_NA), 1 (IA_TA) or 2 (IA_PD)",
            ),
            (
                &v6,
                "2001:db8:100::,00:01,4000,1765000000,1,3000,2,1,200,0,0,,,0,,1,2",
                "prefix_len 200 is out of range",
            ),
        ];
        for (h, line, want) in cases {
            assert_eq!(h.lease(line).unwrap_err(), want, "{line}");
        }
        assert!(
            Header::parse("id,name,plan,prefixes")
                .unwrap_err()
                .starts_with("not a Kea lease file header")
        );
        assert_eq!(
            Header::parse("address,hwaddr,client_id,expire").unwrap_err(),
            "the header lacks the column `valid_lifetime`"
        );
    }
}
