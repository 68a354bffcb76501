//! Issuing the monthly statements: once the month has ended, every subscriber in the books gets
//! the statement of that month, signed with the operator key, in
//! `state_dir/statements/YYYY-MM/ID.json`. The daemon calls [`issue_due`] once per interval;
//! building and signing one statement is `ledger::statement`'s job, this is which month, for
//! whom, and the files.

use std::path::{Path, PathBuf};

use crate::{clock::ClockError, store::Store};

/// The statements written by one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The month, `YYYY-MM`.
    pub period: String,
    /// The directory holding the month's statements.
    pub dir: PathBuf,
    /// How many statements it holds.
    pub count: usize,
}

/// Why the month's statements were not issued (the next call tries again).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The month just ended cannot be named.
    #[error("statements not issued: {0}")]
    Clock(#[from] ClockError),
    /// The month's statements could not be written; none of them appeared.
    #[error("issuing the statements for {period} failed (will retry): {source}")]
    Write {
        period: String,
        #[source]
        source: WriteError,
    },
}

/// What failed while writing a month's statements.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The operator key file is missing or not a key.
    #[error("{0:#}")]
    Key(anyhow::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The month's head could not be signed into the checkpoints.
    #[error("cannot sign the checkpoint of the month's ledger head: {0}")]
    Checkpoint(#[from] crate::store::StoreError),
    #[error(transparent)]
    Clock(#[from] ClockError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Issues the statements of the month before `now` (unix seconds) for `subscribers`, signed with
/// the operator key in `key_path`, unless that month's are in `state_dir` already: `Ok(None)`.
///
/// One subscriber whose books cannot be stated (a balance beyond i64 in an edited store) is
/// logged and left out; everyone else gets theirs.
pub fn issue_due<'a>(
    store: &Store,
    subscribers: impl IntoIterator<Item = &'a str>,
    key_path: &Path,
    state_dir: &Path,
    now: i64,
) -> Result<Option<Issued>, IssueError> {
    let period = crate::clock::previous_month(now)?;
    let dir = state_dir.join("statements").join(&period);
    if dir.exists() {
        return Ok(None);
    }
    match write_month(store, subscribers, key_path, &dir, &period, now) {
        Ok(count) => Ok(Some(Issued { period, dir, count })),
        Err(source) => Err(IssueError::Write { period, source }),
    }
}

/// Writes the month's statements into `dir` all at once: the number written.
fn write_month<'a>(
    store: &Store,
    subscribers: impl IntoIterator<Item = &'a str>,
    key_path: &Path,
    dir: &Path,
    period: &str,
    now: i64,
) -> Result<usize, WriteError> {
    let key = crate::settlement::node_client::read_key(key_path).map_err(WriteError::Key)?;
    // The head the month's statements are computed from is signed first: the statements of
    // later months carry the hash their ledger holds for it, for subscribers to compare.
    let (_, to) = crate::clock::month_bounds(period)?;
    store.write_checkpoint(&key, now, Some((period, to)))?;
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut n = 0;
    for id in subscribers {
        let statement = match store.statement(id, period) {
            Ok(s) => s,
            Err(e) => {
                log::error!("no statement for {id} for {period}: {e}");
                continue;
            }
        };
        let signed = crate::ledger::statement::sign(statement, &key);
        std::fs::write(
            tmp.join(format!("{id}.json")),
            serde_json::to_string_pretty(&signed)? + "\n",
        )?;
        n += 1;
    }
    // All of the month's statements appear at once, or none.
    std::fs::rename(&tmp, dir)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_issued_once_and_needs_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // 2026-12-05: the month just ended is November.
        let now = 1_796_428_800;
        let missing = dir.path().join("no-key");
        let err = issue_due(&store, [], &missing, dir.path(), now).unwrap_err();
        assert!(matches!(err, IssueError::Write { ref period, .. } if period == "2026-11"));
        assert!(!dir.path().join("statements/2026-11").exists());

        let key = dir.path().join("operator.key");
        std::fs::write(&key, hex::encode([7u8; 32])).unwrap();
        let issued = issue_due(&store, [], &key, dir.path(), now)
            .unwrap()
            .unwrap();
        assert_eq!((issued.period.as_str(), issued.count), ("2026-11", 0));
        assert!(issued.dir.is_dir());
        assert_eq!(issue_due(&store, [], &key, dir.path(), now).unwrap(), None);
    }
}
