//! The agent's durable state: one JSON file per closed period. Writing a period's entry into
//! `outbox/` (temporary file, fsync, rename, fsync of the folder) is the single commit point
//! of a period, and the entry carries the meters' totals at its end, so after a restart or a
//! power cut the newest entry says where the next period starts, its sequence number and its
//! baselines. An entry leaves the outbox only after `done.json` has become it: a crash in
//! between sends it once more, which the router answers `already_recorded`.

use std::{
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::meters::Meters;

/// One closed period (or, with no report, the anchor the first period starts from).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The report's sequence number (0 for the anchor).
    pub seq: u64,
    /// Unix seconds where the period ended: where the next one starts.
    pub period_end: i64,
    /// The meters' totals at `period_end`.
    pub meters: Meters,
    /// Where the energy figure came from.
    pub energy_source: String,
    /// The signed report (none for the anchor).
    pub report: Option<quid_report::report::Report>,
    /// Why the router refused it for good, if it did.
    #[serde(default)]
    pub refused: Option<String>,
}

/// Why the state folder could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// A file operation failed.
    #[error("{path}: {message} (check state_dir and its permissions)")]
    Io { path: String, message: String },
    /// A state file is damaged.
    #[error("{path} is not an outbox entry ({message}): move it aside and restart")]
    Damaged { path: String, message: String },
}

/// The state folder.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> OutboxError + '_ {
    move |e| OutboxError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes `value` as JSON to `path` so that `path` holds either the old or the new content
/// after any crash.
fn write_atomically(path: &Path, value: &Entry) -> Result<(), OutboxError> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| OutboxError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<(), OutboxError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn read(path: &Path) -> Result<Entry, OutboxError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| OutboxError::Damaged {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

impl Outbox {
    /// Opens (creating) the state folder `dir`.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        let outbox = dir.join("outbox");
        std::fs::create_dir_all(&outbox).map_err(io(&outbox))?;
        Ok(Outbox {
            dir: dir.to_owned(),
        })
    }

    fn pending_path(&self, seq: u64) -> PathBuf {
        self.dir.join("outbox").join(format!("{seq:020}.json"))
    }

    fn done_path(&self) -> PathBuf {
        self.dir.join("done.json")
    }

    /// Commits a closed period.
    pub fn push(&self, entry: &Entry) -> Result<(), OutboxError> {
        write_atomically(&self.pending_path(entry.seq), entry)
    }

    /// The entries not yet acknowledged, oldest first.
    pub fn pending(&self) -> Result<Vec<Entry>, OutboxError> {
        let dir = self.dir.join("outbox");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names.iter().map(|p| read(p)).collect()
    }

    /// The last entry the router acknowledged (or refused for good), if any.
    pub fn done(&self) -> Result<Option<Entry>, OutboxError> {
        let path = self.done_path();
        if !path.exists() {
            return Ok(None);
        }
        read(&path).map(Some)
    }

    /// The newest entry: where the next period starts.
    pub fn latest(&self) -> Result<Option<Entry>, OutboxError> {
        match self.pending()?.pop() {
            Some(e) => Ok(Some(e)),
            None => self.done(),
        }
    }

    /// Records the anchor the first period starts from.
    pub fn anchor(&self, entry: &Entry) -> Result<(), OutboxError> {
        write_atomically(&self.done_path(), entry)
    }

    /// The router has `entry` (acknowledged, or refused with a reason): it leaves the outbox.
    pub fn settle(&self, entry: &Entry) -> Result<(), OutboxError> {
        write_atomically(&self.done_path(), entry)?;
        let path = self.pending_path(entry.seq);
        std::fs::remove_file(&path).map_err(io(&path))?;
        sync_dir(&path)
    }
}
