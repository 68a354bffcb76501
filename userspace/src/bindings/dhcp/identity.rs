//! Which subscriber a lease belongs to: the mapping file (`[dhcp] map`), CSV with the header
//! `key,value,subscriber`, one identity a row:
//!
//! ```csv
//! key,value,subscriber
//! circuit_id,eth0/1/3,alice        # option 82 circuit-id as text, or 0x and hex
//! remote_id,0x000a0b0c,bob         # option 82 remote-id
//! client_id,01:aa:bb:cc:00:00:01,carol
//! duid,00:03:00:01:aa:bb:cc:00:00:02,carol
//! hwaddr,aa:bb:cc:00:00:03,dave
//! ```
//!
//! A lease is looked up by its circuit-id first, then its remote-id, its client identifier
//! (DUID for v6), its hardware address: the line a relay names is the surest sign of who it is.

use std::{collections::HashMap, path::Path};

use super::lease::{Lease, hex_bytes};
use crate::subscribers::table::{TableError, TableErrors, check_token, read_file, records};

/// What a row of the mapping file matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityKind {
    /// Option 82 sub-option 1 (the access line at the relay).
    CircuitId,
    /// Option 82 sub-option 2.
    RemoteId,
    /// DHCPv4 option 61.
    ClientId,
    /// DHCPv6 client DUID.
    Duid,
    /// The client's hardware (MAC) address.
    HwAddr,
}

impl IdentityKind {
    /// The order a lease is looked up in.
    pub const ORDER: [IdentityKind; 5] = [
        IdentityKind::CircuitId,
        IdentityKind::RemoteId,
        IdentityKind::ClientId,
        IdentityKind::Duid,
        IdentityKind::HwAddr,
    ];

    fn parse(text: &str) -> Option<IdentityKind> {
        Some(match text {
            "circuit_id" => IdentityKind::CircuitId,
            "remote_id" => IdentityKind::RemoteId,
            "client_id" => IdentityKind::ClientId,
            "duid" => IdentityKind::Duid,
            "hwaddr" => IdentityKind::HwAddr,
            _ => return None,
        })
    }

    /// The lease's value of this kind, if it has one.
    fn of(self, lease: &Lease, v6: bool) -> Option<&[u8]> {
        let value = match self {
            IdentityKind::CircuitId => lease.circuit_id.as_deref()?,
            IdentityKind::RemoteId => lease.remote_id.as_deref()?,
            IdentityKind::ClientId if !v6 => &lease.client_id,
            IdentityKind::Duid if v6 => &lease.client_id,
            IdentityKind::ClientId | IdentityKind::Duid => return None,
            IdentityKind::HwAddr => &lease.hwaddr,
        };
        (!value.is_empty()).then_some(value)
    }
}

/// The mapping file, read and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities {
    by_key: HashMap<(IdentityKind, Vec<u8>), String>,
}

impl Identities {
    /// Reads and checks the mapping file; every bad row is reported.
    pub fn load(path: &Path) -> Result<Identities, TableErrors> {
        Identities::parse(&read_file(path, "the DHCP mapping file")?, path)
    }

    /// Parses mapping file bytes; `path` only names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Identities, TableErrors> {
        let mut errors = Vec::new();
        let err = |line, field: &'static str, message| TableError::new(path, line, field, message);
        let mut lines: HashMap<(IdentityKind, Vec<u8>), u64> = HashMap::new();
        let mut map = Identities::default();
        let mut header = false;
        for record in records(bytes, path) {
            let Ok((line, record)) = record.map_err(|e| errors.push(e)) else {
                continue;
            };
            if !header {
                header = true;
                if record.iter().collect::<Vec<_>>() != ["key", "value", "subscriber"] {
                    errors.push(err(
                        line,
                        "header",
                        "the first row must be `key,value,subscriber`".into(),
                    ));
                    break;
                }
                continue;
            }
            if record.len() != 3 {
                errors.push(err(
                    line,
                    "row",
                    format!(
                        "expected 3 fields (key,value,subscriber), found {}",
                        record.len()
                    ),
                ));
                continue;
            }
            let Some(kind) = IdentityKind::parse(&record[0]) else {
                errors.push(err(
                    line,
                    "key",
                    format!(
                        "`{}` is not a key: use circuit_id, remote_id, client_id, duid or hwaddr",
                        record[0].escape_debug()
                    ),
                ));
                continue;
            };
            let value = match value_bytes(kind, &record[1]) {
                Ok(v) => v,
                Err(m) => {
                    errors.push(err(line, "value", m));
                    continue;
                }
            };
            if let Err(m) = check_token(&record[2], 64) {
                errors.push(err(line, "subscriber", m));
                continue;
            }
            let key = (kind, value);
            if let Some(first) = lines.get(&key) {
                errors.push(err(
                    line,
                    "value",
                    format!("this identity is already mapped on line {first}"),
                ));
                continue;
            }
            lines.insert(key.clone(), line);
            map.by_key.insert(key, record[2].to_owned());
        }
        if !header {
            errors.push(err(
                1,
                "header",
                "the file is empty: it needs the header `key,value,subscriber`".into(),
            ));
        }
        if errors.is_empty() {
            Ok(map)
        } else {
            Err(TableErrors(errors))
        }
    }

    /// The subscriber a lease belongs to, looked up in [`IdentityKind::ORDER`].
    pub fn subscriber(&self, lease: &Lease, v6: bool) -> Option<&str> {
        IdentityKind::ORDER.iter().find_map(|&kind| {
            let value = kind.of(lease, v6)?;
            self.by_key.get(&(kind, value.to_vec())).map(String::as_str)
        })
    }
}

/// A mapping value as bytes: identifiers are hex (`aa:bb:cc`); option 82 values are text as
/// the relay sends it, or hex after `0x`.
fn value_bytes(kind: IdentityKind, text: &str) -> Result<Vec<u8>, String> {
    let bytes = match kind {
        IdentityKind::CircuitId | IdentityKind::RemoteId if !text.starts_with("0x") => {
            text.as_bytes().to_vec()
        }
        _ => hex_bytes(text)?,
    };
    if bytes.is_empty() || bytes.len() > 255 {
        return Err("must be 1 to 255 bytes".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::dhcp::lease::LeaseState;

    fn lease() -> Lease {
        Lease {
            prefix: "192.0.2.10/32".parse().unwrap(),
            valid_lifetime: 4,
            expire: 100,
            state: LeaseState::Assigned,
            hwaddr: vec![0xaa, 0xbb, 0xcc, 0, 0, 3],
            client_id: vec![1, 0xaa, 0xbb, 0xcc, 0, 0, 3],
            circuit_id: None,
            remote_id: None,
        }
    }

    const MAP: &str = "key,value,subscriber
# the relay's line first
circuit_id,eth0/1,alice
remote_id,0x0a0b,bob
client_id,01:aa:bb:cc:00:00:03,carol
duid,01-aa-bb-cc-00-00-03,erin
hwaddr,AA:BB:CC:00:00:03,dave
";

    #[test]
    fn a_lease_is_matched_by_circuit_id_then_remote_id_then_client_id_then_hardware_address() {
        let map = Identities::parse(MAP.as_bytes(), Path::new("map.csv")).unwrap();
        let mut l = lease();
        l.circuit_id = Some(b"eth0/1".to_vec());
        l.remote_id = Some(vec![0x0a, 0x0b]);
        assert_eq!(map.subscriber(&l, false), Some("alice"));
        l.circuit_id = Some(b"eth0/2".to_vec());
        assert_eq!(map.subscriber(&l, false), Some("bob"));
        l.remote_id = None;
        assert_eq!(map.subscriber(&l, false), Some("carol"));
        // The same bytes as a v6 lease's DUID match the duid row, not client_id.
        assert_eq!(map.subscriber(&l, true), Some("erin"));
        l.client_id.clear();
        assert_eq!(map.subscriber(&l, false), Some("dave"));
        l.hwaddr = vec![0xaa, 0xbb, 0xcc, 0, 0, 4];
        assert_eq!(map.subscriber(&l, false), None);
    }

    #[test]
    fn every_bad_row_is_reported_with_line_and_field() {
        let errs = Identities::parse(
            "key,value,subscriber\n\
             mac,aa:bb,alice\n\
             hwaddr,zz,alice\n\
             hwaddr,aa:bb,al ice\n\
             hwaddr,aa:bb,alice\n\
             hwaddr,AA-BB,bob\n\
             circuit_id,,bob\n\
             hwaddr,aa:bb\n"
                .as_bytes(),
            Path::new("map.csv"),
        )
        .unwrap_err();
        let errs: Vec<String> = errs.0.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            [
                "map.csv:2: key: `mac` is not a key: use circuit_id, remote_id, client_id, duid or hwaddr",
                "map.csv:3: value: `zz` is not hex bytes",
                "map.csv:4: subscriber: `al ice` contains ' '; use letters, digits, '.', '_' or '-'",
                "map.csv:6: value: this identity is already mapped on line 5",
                "map.csv:7: value: must be 1 to 255 bytes",
                "map.csv:8: row: expected 3 fields (key,value,subscriber), found 2",
            ]
        );
    }
}
