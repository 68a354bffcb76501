//! The tables every router of a fleet applies alike when `[store] tables = "shared"`: the
//! subscriber table and the nodes file, pushed once to the shared store and written by each
//! router to its configured file (which its reload picks up). A table is checked with the
//! same parser the daemon uses before it is pushed, and again before a router writes it.

use std::{path::Path, str::FromStr};

use crate::{
    settlement::nodes::Nodes,
    subscribers::{
        table::{Table, TableErrors},
        table_file::Format,
    },
};

/// A table the shared store can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedTable {
    Subscribers,
    Nodes,
}

impl SharedTable {
    /// Both, in the order routers apply them.
    pub const ALL: [SharedTable; 2] = [SharedTable::Subscribers, SharedTable::Nodes];

    /// Its name in the shared store and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SharedTable::Subscribers => "subscribers",
            SharedTable::Nodes => "nodes",
        }
    }

    /// Checks `bytes` as this table (`label` names it in errors), a subscriber table laid out
    /// as `format` (`[subscribers] format`: quid's CSV or LibreQoS's `ShapedDevices.csv`); an
    /// empty subscriber table is refused, as a file is unless `allow_empty`.
    pub fn check(self, bytes: &[u8], label: &Path, format: &Format) -> Result<(), TableErrors> {
        match self {
            SharedTable::Subscribers => {
                let t = Table::parse_as(bytes, label, format)?;
                if t.subscribers.is_empty() {
                    return Err(TableErrors(vec![crate::subscribers::table::TableError {
                        path: label.to_owned(),
                        line: 0,
                        field: "table".into(),
                        message: "no subscribers: a shared table would stop every router \
                                  counting; push one with subscribers"
                            .into(),
                    }]));
                }
                Ok(())
            }
            SharedTable::Nodes => Nodes::parse(bytes, label).map(drop),
        }
    }
}

impl FromStr for SharedTable {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "subscribers" => Ok(SharedTable::Subscribers),
            "nodes" => Ok(SharedTable::Nodes),
            _ => Err(format!(
                "{s:?} is not a shared table: use subscribers or nodes"
            )),
        }
    }
}

/// The SHA-256 of a table's bytes, hex: routers compare it with their file's.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_checked_before_they_are_shared() {
        let p = Path::new("pushed");
        let quid = &Format::Quid;
        let ok = b"id,name,plan,prefixes\nalice,Alice,home,100.64.1.10\n";
        assert!(SharedTable::Subscribers.check(ok, p, quid).is_ok());
        let twice = b"id,name,plan,prefixes\nalice,A,home,100.64.1.10\nalice,B,home,100.64.1.11\n";
        assert!(SharedTable::Subscribers.check(twice, p, quid).is_err());
        let empty = b"id,name,plan,prefixes\n";
        let e = SharedTable::Subscribers.check(empty, p, quid).unwrap_err();
        assert!(e.to_string().contains("no subscribers"), "{e}");
        assert!(
            SharedTable::Nodes
                .check(b"node,subscriber\n", p, quid)
                .is_err()
        );
        // A fleet on LibreQoS's ShapedDevices.csv shares that file, checked in its layout.
        let shaped = b"Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,MAC,IPv4,IPv6,\
Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment
1,Alice,1,Device 1,AP_A,,100.64.0.1,,1,1,155,20,
";
        let libreqos = &Format::LibreQos(crate::subscribers::libreqos::PlanFrom::MaxRates);
        assert!(SharedTable::Subscribers.check(shaped, p, libreqos).is_ok());
        assert!(SharedTable::Subscribers.check(shaped, p, quid).is_err());
        assert!(SharedTable::Subscribers.check(ok, p, libreqos).is_err());
        assert_eq!("nodes".parse(), Ok(SharedTable::Nodes));
        assert!("routes".parse::<SharedTable>().is_err());
        assert_eq!(digest(b"").len(), 64);
    }
}
