//! The totals snapshot the daemon writes every interval (`STATE_DIR/totals.json`) and
//! `quid subscribers` reads: per-subscriber and per-interface counts since the programs loaded.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::kernel::loader::Attachment;

/// File name of the snapshot inside the state directory.
pub const FILE: &str = "totals.json";

/// Packets and IP-layer bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl From<quid_common::Counter> for Count {
    fn from(c: quid_common::Counter) -> Self {
        Count {
            packets: c.packets,
            bytes: c.bytes,
        }
    }
}

/// Upload and download of one traffic class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directions {
    pub upload: Count,
    pub download: Count,
}

/// A subscriber's totals by class: settlement prices grid and Internet traffic differently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByClass {
    pub internet: Directions,
    pub grid: Directions,
}

impl ByClass {
    /// The split of a subscriber's counters (the books keep every direction and class apart).
    pub fn of(c: &quid_common::SubscriberCounters) -> ByClass {
        use quid_common::{CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, pair_index};
        let class = |k| Directions {
            upload: c.pairs[pair_index(DIR_UPLOAD, k)].into(),
            download: c.pairs[pair_index(DIR_DOWNLOAD, k)].into(),
        };
        ByClass {
            internet: class(CLASS_INTERNET),
            grid: class(CLASS_GRID),
        }
    }
}

/// One subscriber's running totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberTotals {
    pub id: String,
    pub name: String,
    pub plan: String,
    /// Removed from the table: these totals are final.
    #[serde(default)]
    pub removed: bool,
    /// Both classes together.
    pub upload: Count,
    pub download: Count,
    /// The same totals, Internet and grid apart; `None` in a snapshot an older quid wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_class: Option<ByClass>,
}

/// One interface's buckets: every frame it received is in exactly one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceTotals {
    #[serde(flatten)]
    pub attachment: Attachment,
    pub attributed: Count,
    pub non_ip: Count,
    pub unknown: Count,
    pub malformed: Count,
    /// PPPoE discovery frames (frame bytes); zero in a snapshot an older quid wrote.
    #[serde(default)]
    pub pppoe_discovery: Count,
}

/// Whether the daemon that wrote a snapshot was still counting (`totals.json`'s `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonState {
    /// Written every interval while the daemon counts.
    Running,
    /// Written once at a clean stop: the final totals.
    Stopped,
}

/// Everything the daemon knows at the end of an interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `running` while the daemon counts, `stopped` once it has stopped.
    pub state: DaemonState,
    pub pid: u32,
    pub taken_at_unix: u64,
    pub interval_secs: u64,
    /// The lookup generation packets use.
    #[serde(default)]
    pub generation: u32,
    pub subscribers: Vec<SubscriberTotals>,
    pub interfaces: Vec<InterfaceTotals>,
}

/// Errors reading or writing a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a quid totals snapshot: {source}")]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl Snapshot {
    /// Writes the snapshot atomically (temporary file, then rename), so a reader never sees
    /// half of it.
    pub fn write(&self, state_dir: &Path) -> Result<(), SnapshotError> {
        let path = state_dir.join(FILE);
        let tmp = state_dir.join(format!(".{FILE}.tmp"));
        let io = |source| SnapshotError::Io {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        let body = serde_json::to_vec_pretty(self).map_err(|source| SnapshotError::Format {
            path: path.clone(),
            source,
        })?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Reads the snapshot from a state directory.
    pub fn read(state_dir: &Path) -> Result<Snapshot, SnapshotError> {
        let path = state_dir.join(FILE);
        let body = std::fs::read(&path).map_err(|source| SnapshotError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&body).map_err(|source| SnapshotError::Format { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_written_and_read_as_the_words_older_snapshots_hold() {
        for (state, text) in [
            (DaemonState::Running, "\"running\""),
            (DaemonState::Stopped, "\"stopped\""),
        ] {
            assert_eq!(serde_json::to_string(&state).unwrap(), text);
            assert_eq!(serde_json::from_str::<DaemonState>(text).unwrap(), state);
        }
        assert!(serde_json::from_str::<DaemonState>("\"paused\"").is_err());
    }

    #[test]
    fn the_split_by_class_keeps_each_direction_and_class_and_older_snapshots_have_none() {
        use quid_common::{
            CLASS_GRID, CLASS_INTERNET, Counter, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters,
            pair_index,
        };
        let mut c = SubscriberCounters::default();
        for (i, (d, k)) in [
            (DIR_UPLOAD, CLASS_INTERNET),
            (DIR_UPLOAD, CLASS_GRID),
            (DIR_DOWNLOAD, CLASS_INTERNET),
            (DIR_DOWNLOAD, CLASS_GRID),
        ]
        .into_iter()
        .enumerate()
        {
            let i = i as u64 + 1;
            c.pairs[pair_index(d, k)] = Counter {
                packets: i,
                bytes: i * 1000,
            };
        }
        let split = ByClass::of(&c);
        let count = |n: u64| Count {
            packets: n,
            bytes: n * 1000,
        };
        assert_eq!(split.internet.upload, count(1));
        assert_eq!(split.grid.upload, count(2));
        assert_eq!(split.internet.download, count(3));
        assert_eq!(split.grid.download, count(4));
        let old = r#"{"id": "a", "name": "A", "plan": "p",
            "upload": {"packets": 1, "bytes": 2}, "download": {"packets": 3, "bytes": 4}}"#;
        let old: SubscriberTotals = serde_json::from_str(old).unwrap();
        assert_eq!(old.by_class, None);
        assert!(!serde_json::to_string(&old).unwrap().contains("by_class"));
    }

    #[test]
    fn an_older_snapshots_interfaces_read_as_ethernet_without_pppoe_discovery() {
        let zero = r#"{"packets": 0, "bytes": 0}"#;
        let old = format!(
            r#"{{"name": "eth1", "ifindex": 2, "role": "access", "mode": "native",
            "attributed": {zero}, "non_ip": {zero}, "unknown": {zero}, "malformed": {zero}}}"#
        );
        let old: InterfaceTotals = serde_json::from_str(&old).unwrap();
        assert_eq!(old.pppoe_discovery, Count::default());
        assert_eq!(
            old.attachment.framing,
            crate::kernel::link_type::Framing::Ethernet
        );
        let now = serde_json::to_string(&old).unwrap();
        assert!(
            now.contains(r#""framing":"ethernet""#) && now.contains("pppoe_discovery"),
            "{now}"
        );
    }
}
