//! The ledger: append-only entries in micro-credits (exact integers, never floats), each
//! carrying the SHA-256 of the previous one, so `quid ledger verify` finds any edited, removed
//! or inserted entry. Balances are derived from the entries, never stored.
//!
//! Entry hash = SHA-256 over the previous entry's hash (hex) and the entry's fields, each
//! followed by a newline: `prev`, `seq`, `at`, `subscriber`, `kind`, `amount`, `reference`.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub at: i64,
    pub subscriber: String,
    /// `usage_debit`, `contribution_credit` or `adjustment`.
    pub kind: &'static str,
    /// Micro-credits: positive credits the subscriber, negative debits.
    pub amount: i64,
    /// What it is for: the interval, the report (`node#seq`), or the operator's reason.
    pub reference: String,
}

/// A recorded entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: i64,
    pub at: i64,
    pub subscriber: String,
    pub kind: String,
    pub amount: i64,
    pub reference: String,
    pub prev: String,
    pub hash: String,
}

/// Micro-credits as credits with six decimals (`-1.250000`).
pub fn credits(micro: i64) -> String {
    credits_wide(i128::from(micro))
}

/// [`credits`] for sums of balances, which can exceed i64.
pub fn credits_wide(micro: i128) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let m = micro.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}

/// The hash of an entry's fields chained to `prev`.
pub fn hash(
    prev: &str,
    seq: i64,
    at: i64,
    subscriber: &str,
    kind: &str,
    amount: i64,
    reference: &str,
) -> String {
    let mut h = Sha256::new();
    for field in [
        prev,
        &seq.to_string(),
        &at.to_string(),
        subscriber,
        kind,
        &amount.to_string(),
        reference,
    ] {
        h.update(field.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Why entries were not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error(
        "subscriber `{subscriber}`: a balance of {} plus {} does not fit in a balance \
         (at most ±9,223,372,036,854.775807 credits); nothing was recorded. Check the amount",
        credits(*balance), credits(*amount)
    )]
    Overflow {
        subscriber: String,
        balance: i64,
        amount: i64,
    },
    #[error(
        "subscriber `{0}`: the stored balance is not an exact integer (the store was edited or \
         written by an older quid); nothing was recorded. Recompute it from the ledger"
    )]
    BadBalance(String),
}

impl AppendError {
    /// As a store error on the store at `path`.
    pub(crate) fn into_store(self, path: &std::path::Path) -> StoreError {
        match self {
            AppendError::Sql(source) => StoreError::Sql {
                path: path.to_owned(),
                source,
            },
            other => StoreError::Ledger(other),
        }
    }
}

/// The balances `entries` leave, checked: every amount must keep its subscriber's balance an
/// exact i64 (entries of one subscriber apply in order).
pub(crate) fn check(conn: &rusqlite::Connection, entries: &[NewEntry]) -> Result<(), AppendError> {
    let mut after: std::collections::HashMap<&str, i64> = Default::default();
    for e in entries {
        let balance = match after.get(e.subscriber.as_str()) {
            Some(b) => *b,
            None => {
                let stored: Option<rusqlite::types::Value> = conn
                    .query_row(
                        "SELECT amount FROM balances WHERE subscriber = ?1",
                        [&e.subscriber],
                        |r| r.get(0),
                    )
                    .optional()?;
                match stored {
                    None => 0,
                    Some(rusqlite::types::Value::Integer(v)) => v,
                    Some(_) => return Err(AppendError::BadBalance(e.subscriber.clone())),
                }
            }
        };
        let next = balance
            .checked_add(e.amount)
            .ok_or_else(|| AppendError::Overflow {
                subscriber: e.subscriber.clone(),
                balance,
                amount: e.amount,
            })?;
        after.insert(&e.subscriber, next);
    }
    Ok(())
}

/// Appends `entries` inside an open transaction, chained to the last entry; refuses them all
/// if any would take a balance out of i64.
pub(crate) fn append(tx: &Transaction<'_>, entries: &[NewEntry]) -> Result<(), AppendError> {
    if entries.is_empty() {
        return Ok(());
    }
    check(tx, entries)?;
    let (mut seq, mut prev): (i64, String) = tx
        .query_row(
            "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS.to_owned()));
    let mut put = tx.prepare_cached(
        "INSERT INTO ledger (seq, at, subscriber, kind, amount, reference, prev, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for e in entries {
        seq += 1;
        let h = hash(
            &prev,
            seq,
            e.at,
            &e.subscriber,
            e.kind,
            e.amount,
            &e.reference,
        );
        put.execute(params![
            seq,
            e.at,
            e.subscriber,
            e.kind,
            e.amount,
            e.reference,
            prev,
            h
        ])?;
        prev = h;
    }
    Ok(())
}

/// What `quid ledger verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger entry {seq}: {why}; the ledger has been altered after it was written")]
pub struct Broken {
    pub seq: i64,
    pub why: String,
}

impl Store {
    /// Appends entries in a transaction of their own (operator adjustments).
    pub fn append(&mut self, entries: &[NewEntry]) -> Result<(), StoreError> {
        let path = self.path().to_owned();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        append(&tx, entries).map_err(|e| e.into_store(&path))?;
        tx.commit().map_err(sql)
    }

    /// Every entry, oldest first, or those of one subscriber.
    pub fn entries(&self, subscriber: Option<&str>) -> Result<Vec<Entry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, at, subscriber, kind, amount, reference, prev, hash FROM ledger
                 WHERE ?1 IS NULL OR subscriber = ?1 ORDER BY seq",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([subscriber], |r| {
                Ok(Entry {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    subscriber: r.get(2)?,
                    kind: r.get(3)?,
                    amount: r.get(4)?,
                    reference: r.get(5)?,
                    prev: r.get(6)?,
                    hash: r.get(7)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Balances by subscriber, derived from every entry; an error naming the first subscriber
    /// whose entries sum beyond i64 (see [`Store::balances_checked`] to read the others).
    pub fn balances(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        self.balances_checked()?
            .into_iter()
            .map(|(id, b)| match b {
                Some(b) => Ok((id, b)),
                None => Err(StoreError::Ledger(AppendError::BadBalance(id))),
            })
            .collect()
    }

    /// Balances by subscriber, derived from every entry; `None` for a subscriber whose entries
    /// sum beyond i64 (which the ledger refuses to record, so only an edited store has one).
    pub fn balances_checked(&self) -> Result<BTreeMap<String, Option<i64>>, StoreError> {
        let mut sums: BTreeMap<String, i128> = BTreeMap::new();
        for e in self.entries(None)? {
            // i128 holds the sum of any 2^64 i64 amounts exactly.
            *sums.entry(e.subscriber).or_insert(0) += i128::from(e.amount);
        }
        Ok(sums
            .into_iter()
            .map(|(id, sum)| (id, i64::try_from(sum).ok()))
            .collect())
    }
}

/// Recomputes the chain; returns how many entries it holds.
pub fn verify(entries: &[Entry]) -> Result<usize, Broken> {
    let mut prev = GENESIS.to_owned();
    for (i, e) in entries.iter().enumerate() {
        let broken = |why: String| Broken { seq: e.seq, why };
        if i64::try_from(i).ok().and_then(|i| i.checked_add(1)) != Some(e.seq) {
            return Err(broken(format!("expected sequence number {}", i + 1)));
        }
        if e.prev != prev {
            return Err(broken(
                "its link to the previous entry does not match".into(),
            ));
        }
        if hash(
            &prev,
            e.seq,
            e.at,
            &e.subscriber,
            &e.kind,
            e.amount,
            &e.reference,
        ) != e.hash
        {
            return Err(broken("its contents do not match its hash".into()));
        }
        prev = e.hash.clone();
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sub: &str, kind: &'static str, amount: i64) -> NewEntry {
        NewEntry {
            at: 1_795_000_000,
            subscriber: sub.into(),
            kind,
            amount,
            reference: "t".into(),
        }
    }

    #[test]
    fn balances_are_derived_and_any_edit_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.append(&[
            entry("a", "usage_debit", -300),
            entry("b", "contribution_credit", 1_000),
        ])
        .unwrap();
        s.append(&[entry("a", "contribution_credit", 500)]).unwrap();
        let all = s.entries(None).unwrap();
        assert_eq!(verify(&all), Ok(3));
        assert_eq!(
            s.balances().unwrap(),
            BTreeMap::from([("a".into(), 200), ("b".into(), 1_000)])
        );

        // An operator with sqlite3 turns a debit into a credit: verify names the entry.
        s.conn
            .execute("UPDATE ledger SET amount = 300 WHERE seq = 1", [])
            .unwrap();
        let err = verify(&s.entries(None).unwrap()).unwrap_err();
        assert_eq!(err.seq, 1);
        assert!(err.to_string().contains("do not match its hash"), "{err}");
        s.conn
            .execute("UPDATE ledger SET amount = -300 WHERE seq = 1", [])
            .unwrap();
        assert_eq!(verify(&s.entries(None).unwrap()), Ok(3));
        // Removing an entry breaks the chain too.
        s.conn
            .execute("DELETE FROM ledger WHERE seq = 2", [])
            .unwrap();
        assert_eq!(verify(&s.entries(None).unwrap()).unwrap_err().seq, 3);
    }
}
