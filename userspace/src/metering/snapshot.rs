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

/// One subscriber's running totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberTotals {
    pub id: String,
    pub name: String,
    pub plan: String,
    /// Removed from the table: these totals are final.
    #[serde(default)]
    pub removed: bool,
    pub upload: Count,
    pub download: Count,
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

    /// The per-subscriber table `quid subscribers` prints.
    pub fn render_table(&self) -> String {
        let mut out = format!(
            "{:<16} {:<20} {:<12} {:>12} {:>16} {:>12} {:>16}\n",
            "ID", "NAME", "PLAN", "UP_PACKETS", "UP_BYTES", "DOWN_PACKETS", "DOWN_BYTES"
        );
        for s in &self.subscribers {
            let id = if s.removed {
                format!("{} (removed)", s.id)
            } else {
                s.id.clone()
            };
            out += &format!(
                "{:<16} {:<20} {:<12} {:>12} {:>16} {:>12} {:>16}\n",
                id,
                truncate(&s.name, 20),
                s.plan,
                s.upload.packets,
                s.upload.bytes,
                s.download.packets,
                s.download.bytes
            );
        }
        out += &format!(
            "\n{:<12} {:<7} {:<8} {:>20} {:>20} {:>20} {:>20}\n",
            "INTERFACE",
            "ROLE",
            "MODE",
            "ATTRIBUTED pkts/B",
            "NON_IP pkts/B",
            "UNKNOWN pkts/B",
            "MALFORMED pkts/B"
        );
        for i in &self.interfaces {
            let c = |c: &Count| format!("{}/{}", c.packets, c.bytes);
            out += &format!(
                "{:<12} {:<7} {:<8} {:>20} {:>20} {:>20} {:>20}\n",
                i.attachment.name,
                i.attachment.role,
                i.attachment.mode,
                c(&i.attributed),
                c(&i.non_ip),
                c(&i.unknown),
                c(&i.malformed)
            );
        }
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
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
}
