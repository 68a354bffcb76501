//! The `checkpoints` table: the operator key's signed checkpoints of the ledger's head
//! (`ledger::checkpoint`), and the streaming read `quid ledger verify` checks the chain with.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::{Store, StoreError};
use crate::ledger::{
    chain::{EntryRef, GENESIS, StreamError, Verifier},
    checkpoint::{self, Checkpoint, Heads, Signed},
    statement::Anchor,
};

/// The table, created in any store that lacks it (a store written before checkpoints gains
/// an empty one; its chain is sealed by the first checkpoint signed, not rewritten).
const TABLE: &str = "
CREATE TABLE IF NOT EXISTS checkpoints (
    number INTEGER PRIMARY KEY, ledger_seq INTEGER NOT NULL, head TEXT NOT NULL,
    at INTEGER NOT NULL, period TEXT UNIQUE, prev TEXT NOT NULL,
    operator_key TEXT NOT NULL, signature TEXT NOT NULL);
";

/// The schema version this step brings a store to (`meta` key `checkpoints_schema`).
const VERSION: i64 = 1;

/// Adds the `checkpoints` table to a store that lacks it; idempotent, called on every open
/// from `schema.rs`.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    super::schema::versioned_step(conn, "checkpoints_schema", VERSION, TABLE).map(|_| ())
}

/// What a streamed `quid ledger verify` established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamVerified {
    /// The head's sequence number (entries checked).
    pub entries: i64,
    /// Each subscriber's entries summed.
    pub sums: HashMap<String, i128>,
    /// Every balance row of the same moment; `None` for one that is not an exact integer.
    pub balances: BTreeMap<String, Option<i64>>,
}

/// The ledger's head on `conn`: the last entry's sequence number and hash, (0, genesis) empty.
fn head_on(conn: &Connection) -> rusqlite::Result<(i64, String)> {
    Ok(conn
        .query_row(
            "SELECT seq, lower(hex(hash)) FROM ledger ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS.to_owned())))
}

/// The last entry dated before `to`, as statements of a month ending at `to` count them.
fn month_head_on(conn: &Connection, to: i64) -> rusqlite::Result<(i64, String)> {
    Ok(conn
        .query_row(
            "SELECT seq, lower(hex(hash)) FROM ledger WHERE at < ?1 ORDER BY seq DESC LIMIT 1",
            [to],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS.to_owned())))
}

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Signed> {
    Ok(Signed {
        checkpoint: Checkpoint {
            number: super::from_sql(r, 0)?,
            ledger_seq: r.get(1)?,
            head: r.get(2)?,
            at: r.get(3)?,
            period: r.get(4)?,
            prev: r.get(5)?,
        },
        operator_key: r.get(6)?,
        signature: r.get(7)?,
    })
}

const COLUMNS: &str = "number, ledger_seq, head, at, period, prev, operator_key, signature";

impl Store {
    /// The ledger's head: the last entry's sequence number and hash ((0, genesis) if empty).
    pub fn ledger_head(&self) -> Result<(i64, String), StoreError> {
        head_on(&self.conn).map_err(|e| self.sql(e))
    }

    /// Every checkpoint, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<Signed>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM checkpoints ORDER BY number"
            ))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], checkpoint_row)
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.sql(e))
    }

    /// The newest checkpoint, if any.
    pub fn last_checkpoint(&self) -> Result<Option<Signed>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM checkpoints ORDER BY number DESC LIMIT 1"),
                [],
                checkpoint_row,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Signs and keeps a checkpoint of the ledger's head now (`period: None`), or of the head
    /// the statements of `period` (`YYYY-MM`, ending at `to`) are computed from; the one
    /// already kept for that period if there is one, so issuing again signs nothing new.
    pub fn write_checkpoint(
        &self,
        key: &SigningKey,
        at: i64,
        period: Option<(&str, i64)>,
    ) -> Result<Signed, StoreError> {
        let sql = |e| self.sql(e);
        let tx = self.begin(TransactionBehavior::Immediate)?;
        let existing = |tx: &Transaction<'_>, period: &str| {
            tx.query_row(
                &format!("SELECT {COLUMNS} FROM checkpoints WHERE period = ?1"),
                [period],
                checkpoint_row,
            )
            .optional()
        };
        if let Some((p, _)) = period
            && let Some(found) = existing(&tx, p).map_err(sql)?
        {
            return Ok(found);
        }
        let last = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM checkpoints ORDER BY number DESC LIMIT 1"),
                [],
                checkpoint_row,
            )
            .optional()
            .map_err(sql)?;
        let head = match period {
            Some((_, to)) => month_head_on(&tx, to),
            None => head_on(&tx),
        }
        .map_err(sql)?;
        let signed = checkpoint::sign(
            Checkpoint::next(
                last.as_ref().map(|s| &s.checkpoint),
                head,
                at,
                period.map(|(p, _)| p.to_owned()),
            ),
            key,
        );
        let c = &signed.checkpoint;
        tx.execute(
            &format!("INSERT INTO checkpoints ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                super::to_sql("checkpoint number", c.number).map_err(sql)?,
                c.ledger_seq,
                c.head,
                c.at,
                c.period,
                c.prev,
                signed.operator_key,
                signed.signature
            ],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(signed)
    }

    /// The heads the statements of every month before `period` were computed from, each with
    /// the hash the ledger holds for that entry NOW (not the one signed then): a newer
    /// statement carries them, so a subscriber holding an older one sees any rewrite of the
    /// history it covered. `None` for a hash: the entry is gone (a truncated ledger).
    pub fn anchors_before(&self, period: &str) -> Result<Vec<(Anchor, bool)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.period, c.ledger_seq, CASE WHEN c.ledger_seq = 0 THEN ?2 ELSE lower(hex(l.hash)) END
                 FROM checkpoints c LEFT JOIN ledger l ON l.seq = c.ledger_seq
                 WHERE c.period IS NOT NULL AND c.period < ?1 ORDER BY c.period",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![period, GENESIS], |r| {
                let hash: Option<String> = r.get(2)?;
                Ok((
                    Anchor {
                        period: r.get(0)?,
                        ledger_seq: r.get(1)?,
                        ledger_hash: hash.clone().unwrap_or_default(),
                    },
                    hash.is_some(),
                ))
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.sql(e))
    }

    /// The anchors a statement of `period` carries ([`Store::anchors_before`]); refused when
    /// an anchored entry is gone, since no honest statement can be computed from that ledger.
    pub fn statement_anchors(
        &self,
        period: &str,
    ) -> Result<Vec<Anchor>, crate::ledger::statement::StatementError> {
        self.anchors_before(period)?
            .into_iter()
            .map(|(a, present)| {
                if present {
                    Ok(a)
                } else {
                    Err(crate::ledger::statement::StatementError::AnchorGone {
                        period: a.period,
                        seq: a.ledger_seq,
                    })
                }
            })
            .collect()
    }

    /// Streams every entry through a [`Verifier`] checking against `heads`, and reads every
    /// balance, in one read transaction (the daemon may be writing): constant memory per
    /// subscriber however long the ledger. The outer error: the store; the inner: the books.
    pub fn verify_ledger(
        &self,
        heads: &Heads,
    ) -> Result<Result<StreamVerified, StreamError>, StoreError> {
        let sql = |e| self.sql(e);
        let tx = self.begin(TransactionBehavior::Deferred)?;
        let mut verifier = Verifier::new(heads);
        let checked = {
            let mut stmt = tx
                .prepare(
                    "SELECT seq, at, subscriber, kind, amount, reference, lower(hex(hash))
                     FROM ledger ORDER BY seq",
                )
                .map_err(sql)?;
            let mut rows = stmt.query([]).map_err(sql)?;
            let mut checked = Ok(());
            while let Some(r) = rows.next().map_err(sql)? {
                let text = |i: usize| -> Result<&str, StoreError> {
                    r.get_ref(i)
                        .and_then(|v| {
                            v.as_str().map_err(|e| {
                                rusqlite::Error::FromSqlConversionFailure(
                                    i,
                                    v.data_type(),
                                    Box::new(e),
                                )
                            })
                        })
                        .map_err(sql)
                };
                // The store keeps no link column: the entry chains to what the verifier
                // expects, and its own hash (recomputed over that) decides.
                let expected = verifier.expected_prev();
                let entry = EntryRef {
                    seq: r.get(0).map_err(sql)?,
                    at: r.get(1).map_err(sql)?,
                    subscriber: text(2)?,
                    kind: text(3)?,
                    amount: r.get(4).map_err(sql)?,
                    reference: text(5)?,
                    prev: std::str::from_utf8(&expected).unwrap_or_default(),
                    hash: text(6)?,
                };
                if let Err(e) = verifier.push(entry) {
                    checked = Err(e);
                    break;
                }
            }
            checked
        };
        let balances = super::ledger::balances_on(&tx).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(checked.and_then(|()| {
            let (entries, sums) = verifier.finish()?;
            Ok(StreamVerified {
                entries,
                sums,
                balances,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::chain::NewEntry;

    #[test]
    fn a_checkpoint_names_the_head_and_the_month_head_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        s.append(&[NewEntry::adjustment("a", 10, 5, "t".into())])
            .unwrap();
        s.append(&[NewEntry::adjustment("a", 30, 5, "t".into())])
            .unwrap();
        let now = s.write_checkpoint(&key, 40, None).unwrap();
        assert_eq!(now.checkpoint.ledger_seq, 2);
        let month = s.write_checkpoint(&key, 41, Some(("m", 20))).unwrap();
        assert_eq!(
            (month.checkpoint.number, month.checkpoint.ledger_seq),
            (2, 1)
        );
        assert_eq!(month.checkpoint.prev, now.checkpoint.id());
        // Issuing again signs nothing new.
        assert_eq!(
            s.write_checkpoint(&key, 42, Some(("m", 20))).unwrap(),
            month
        );
        assert_eq!(s.checkpoints().unwrap(), vec![now, month.clone()]);
        assert_eq!(s.last_checkpoint().unwrap(), Some(month));
        let anchors = s.anchors_before("n").unwrap();
        assert_eq!(anchors.len(), 1);
        assert_eq!(anchors[0].0.ledger_seq, 1);
        assert!(anchors[0].1);
        let checked = s
            .verify_ledger(&Heads::of(&s.checkpoints().unwrap()))
            .unwrap()
            .unwrap();
        assert_eq!((checked.entries, checked.sums.get("a")), (2, Some(&10)));
    }
}
