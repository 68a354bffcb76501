//! The sessions the RADIUS accounting client reports to the billing server: when each began
//! and the subscriber's running totals at that moment, so a restarted daemon goes on with the
//! same Acct-Session-Id and the same per-session octets (never counting a byte twice).

use rusqlite::params;

use super::{Store, StoreError};

/// The table (created at every open; empty unless `[accounting_out]` is configured).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounting_out_sessions (
    subscriber TEXT PRIMARY KEY, start INTEGER NOT NULL,
    base_input INTEGER NOT NULL, base_output INTEGER NOT NULL);";

/// One accounting session as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountingSession {
    /// When it began (seconds since 1970): part of its Acct-Session-Id.
    pub start: u64,
    /// The subscriber's running upload total (bytes from it) when it began.
    pub base_input: u64,
    /// The subscriber's running download total (bytes to it) when it began.
    pub base_output: u64,
}

/// u64 in SQLite's i64 (totals stay far below 2^63; a larger one is clamped, not wrapped).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Records sessions that began and drops those that ended, in one transaction.
    pub fn put_accounting_sessions(
        &mut self,
        began: &[(String, AccountingSession)],
        ended: &[String],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql { path, source };
        let tx = self.conn.transaction().map_err(sql.clone())?;
        let result = (|| {
            for (id, s) in began {
                tx.execute(
                    "INSERT OR REPLACE INTO accounting_out_sessions
                     (subscriber, start, base_input, base_output) VALUES (?1, ?2, ?3, ?4)",
                    params![id, int(s.start), int(s.base_input), int(s.base_output)],
                )?;
            }
            for id in ended {
                tx.execute(
                    "DELETE FROM accounting_out_sessions WHERE subscriber = ?1",
                    [id],
                )?;
            }
            Ok(())
        })();
        result.and_then(|()| tx.commit()).map_err(sql)
    }

    /// Every stored session by subscriber (a negative figure, which quid never writes, reads
    /// as 0).
    pub fn accounting_sessions(&self) -> Result<Vec<(String, AccountingSession)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT subscriber, start, base_input, base_output
                 FROM accounting_out_sessions ORDER BY 1",
            )
            .map_err(|e| self.sql(e))?;
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    AccountingSession {
                        start: u(r.get(1)?),
                        base_input: u(r.get(2)?),
                        base_output: u(r.get(3)?),
                    },
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sql(e))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_survive_a_reopen_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let s0 = AccountingSession {
            start: 1_800_000_000,
            base_input: 5 << 32,
            base_output: 7,
        };
        {
            let mut s = Store::open(dir.path()).unwrap();
            s.put_accounting_sessions(&[("alice".into(), s0), ("bob".into(), s0)], &[])
                .unwrap();
            s.put_accounting_sessions(&[], &["bob".into()]).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.accounting_sessions().unwrap(), vec![("alice".into(), s0)]);
    }
}
