//! The storage audits' tables: each node's fill key, fill progress and audit score
//! (`audit_nodes`), and every challenge issued with how it ended (`audits`). The fill key
//! is the secret that makes the fill: it is written once per node and never leaves this file
//! and the daemon's memory.

use rusqlite::{OptionalExtension as _, params};

use super::{Store, StoreError};
use crate::settlement::audits::{AuditNode, AuditTally, Closed, Issued};
use quid_report::{
    audit::{Challenge, FillKey},
    audit_score::{AuditScore, Standing},
};

/// The tables, created by `schema::bring_up_to_date`.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_nodes (
    node TEXT PRIMARY KEY, fill_key BLOB NOT NULL, total INTEGER NOT NULL,
    served INTEGER NOT NULL, filled INTEGER NOT NULL,
    alpha REAL NOT NULL, beta REAL NOT NULL, disqualified INTEGER NOT NULL,
    next_due_ms INTEGER NOT NULL);
-- One row per challenge: `outcome` is open, passed or failed (`reason` says why it failed);
-- `filled` is how many chunks the challenge could draw from.
CREATE TABLE IF NOT EXISTS audits (
    node TEXT NOT NULL, nonce TEXT NOT NULL, chunks TEXT NOT NULL,
    issued_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL, filled INTEGER NOT NULL,
    outcome TEXT NOT NULL, reason TEXT, closed_ms INTEGER,
    PRIMARY KEY (node, nonce));
CREATE INDEX IF NOT EXISTS audits_by_deadline ON audits (node, deadline_ms);
";

impl Store {
    /// Relaxes this connection's commits to WAL's `synchronous=NORMAL`: an audit outcome lost
    /// to a power cut leaves its challenge open, to be failed or answered again, while a
    /// thousand audits a second need no fsync each. Only the audit service's connection.
    pub fn audit_connection(self) -> Result<Store, StoreError> {
        self.conn
            .execute_batch("PRAGMA synchronous=NORMAL;")
            .map_err(|e| self.sql(e))?;
        Ok(self)
    }

    /// Every node's audit state, with its open challenge.
    pub fn audit_nodes(&self) -> Result<Vec<AuditNode>, StoreError> {
        let sql = |e| self.sql(e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT node, fill_key, total, served, filled, alpha, beta, disqualified,
                        next_due_ms FROM audit_nodes",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                let key: Vec<u8> = r.get(1)?;
                Ok((
                    r.get::<_, String>(0)?,
                    key,
                    [r.get::<_, i64>(2)?, r.get(3)?, r.get(4)?],
                    (
                        r.get::<_, f64>(5)?,
                        r.get::<_, f64>(6)?,
                        r.get::<_, bool>(7)?,
                    ),
                    r.get::<_, i64>(8)?,
                ))
            })
            .map_err(sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (node, key, [total, served, filled], (alpha, beta, dq), next_due_ms) =
                row.map_err(sql)?;
            let key: [u8; 32] = key.try_into().map_err(|_| StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!("the fill key of node {node} is not 32 bytes"),
            })?;
            let open = self.open_challenge(&node)?;
            out.push(AuditNode {
                fill_key: FillKey::from_bytes(key),
                total: total.cast_unsigned(),
                served: served.cast_unsigned(),
                filled: filled.cast_unsigned(),
                score: AuditScore {
                    alpha,
                    beta,
                    standing: if dq {
                        Standing::Disqualified
                    } else {
                        Standing::Good
                    },
                },
                next_due_ms,
                open,
                node,
            });
        }
        Ok(out)
    }

    fn open_challenge(&self, node: &str) -> Result<Option<Issued>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT nonce, chunks, issued_ms, deadline_ms, filled FROM audits
                 WHERE node = ?1 AND outcome = 'open' ORDER BY issued_ms DESC LIMIT 1",
                [node],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some((nonce, chunks, issued_ms, deadline_ms, filled)) = row else {
            return Ok(None);
        };
        let chunks = serde_json::from_str(&chunks).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            detail: format!("the chunks of an audit of node {node}: {e}"),
        })?;
        Ok(Some(Issued {
            challenge: Challenge {
                node: node.to_owned(),
                nonce,
                chunks,
                deadline_ms,
            },
            issued_ms,
            filled: filled.cast_unsigned(),
        }))
    }

    /// Writes `node`'s state (its key, progress, score and next due time).
    pub fn save_audit_node(&self, node: &AuditNode) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit_nodes (node, fill_key, total, served, filled, alpha, beta,
                                          disqualified, next_due_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(node) DO UPDATE SET total = excluded.total,
                   served = excluded.served, filled = excluded.filled, alpha = excluded.alpha,
                   beta = excluded.beta, disqualified = excluded.disqualified,
                   next_due_ms = excluded.next_due_ms",
            )
            .and_then(|mut s| {
                s.execute(params![
                    node.node,
                    node.fill_key.to_bytes().as_slice(),
                    node.total.cast_signed(),
                    node.served.cast_signed(),
                    node.filled.cast_signed(),
                    node.score.alpha,
                    node.score.beta,
                    node.score.standing == Standing::Disqualified,
                    node.next_due_ms
                ])
            })
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    /// Records a new challenge of `node` and its state, in one transaction.
    pub fn issue_audit(&self, node: &AuditNode, issued: &Issued) -> Result<(), StoreError> {
        let tx = self.begin(rusqlite::TransactionBehavior::Immediate)?;
        let chunks = serde_json::to_string(&issued.challenge.chunks).unwrap_or_default();
        tx.prepare_cached(
            "INSERT INTO audits (node, nonce, chunks, issued_ms, deadline_ms, filled, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'open')",
        )
        .and_then(|mut s| {
            s.execute(params![
                node.node,
                issued.challenge.nonce,
                chunks,
                issued.issued_ms,
                issued.challenge.deadline_ms,
                issued.filled.cast_signed()
            ])
        })
        .map_err(|e| self.sql(e))?;
        self.save_audit_node(node)?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Records how `node`'s challenge ended and its new score, in one transaction.
    pub fn close_audit(&self, node: &AuditNode, closed: &Closed) -> Result<(), StoreError> {
        let tx = self.begin(rusqlite::TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "UPDATE audits SET outcome = ?3, reason = ?4, closed_ms = ?5
             WHERE node = ?1 AND nonce = ?2 AND outcome = 'open'",
        )
        .and_then(|mut s| {
            s.execute(params![
                node.node,
                closed.nonce,
                if closed.failure.is_none() {
                    "passed"
                } else {
                    "failed"
                },
                closed.failure,
                closed.at_ms
            ])
        })
        .map_err(|e| self.sql(e))?;
        self.save_audit_node(node)?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// The audits of `node` whose deadline fell in `[start_ms, end_ms)` and how they ended;
    /// `None` when the node was never audited (no fill key).
    pub fn audit_tally(
        &self,
        node: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Option<AuditTally>, StoreError> {
        let sql = |e| self.sql(e);
        let dq: Option<bool> = self
            .conn
            .prepare_cached("SELECT disqualified FROM audit_nodes WHERE node = ?1")
            .and_then(|mut s| s.query_row([node], |r| r.get(0)).optional())
            .map_err(sql)?;
        let Some(disqualified) = dq else {
            return Ok(None);
        };
        let (due, passed, filled): (i64, i64, Option<i64>) = self
            .conn
            .prepare_cached(
                "SELECT count(*), count(*) FILTER (WHERE outcome = 'passed'), min(filled)
                 FROM audits WHERE node = ?1 AND deadline_ms >= ?2 AND deadline_ms < ?3
                   AND outcome != 'open'",
            )
            .and_then(|mut s| {
                s.query_row(params![node, start_ms, end_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
            .map_err(sql)?;
        Ok(Some(AuditTally {
            due: u32::try_from(due).unwrap_or(u32::MAX),
            passed: u32::try_from(passed).unwrap_or(u32::MAX),
            filled_chunks: filled.map_or(0, i64::cast_unsigned),
            disqualified,
        }))
    }
}
