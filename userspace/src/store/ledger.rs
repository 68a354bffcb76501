//! The `ledger` and `balances` tables: entries appended with their hash chain, and each
//! subscriber's balance, kept by a trigger in the same transaction as every entry. That row is
//! THE balance: the CLI, the metrics and the operator API read it, and `quid ledger verify`
//! checks it against the entries (see `ledger::chain`).

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, types::Value};

use super::{Store, StoreError};
use crate::ledger::chain::{self, AppendError, Entry, GENESIS, NewEntry};

/// Why entries were not appended: the store failed, or the ledger refused them.
pub(super) enum AppendFailure {
    Sql(rusqlite::Error),
    Refused(AppendError),
}

impl From<rusqlite::Error> for AppendFailure {
    fn from(e: rusqlite::Error) -> Self {
        AppendFailure::Sql(e)
    }
}

impl AppendFailure {
    /// As a store error on the store at `path`.
    pub(super) fn into_store(self, path: &std::path::Path) -> StoreError {
        match self {
            AppendFailure::Sql(source) => StoreError::Sql {
                path: path.to_owned(),
                source,
            },
            AppendFailure::Refused(e) => StoreError::Ledger(e),
        }
    }
}

/// The entries and the balances of one moment (one read transaction), for checking one against
/// the other while the daemon keeps writing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerSnapshot {
    /// Every entry, oldest first.
    pub entries: Vec<Entry>,
    /// Every balance row; `None` for one that is not an exact integer.
    pub balances: BTreeMap<String, Option<i64>>,
}

/// For each of `entries`, in order, why the ledger would refuse it (`None`: it fits): the
/// balance it leaves must stay an exact i64, counting the entries before it that fit.
pub(super) fn refusals_on(
    conn: &Connection,
    entries: &[NewEntry],
) -> rusqlite::Result<Vec<Option<AppendError>>> {
    let mut after: HashMap<&str, i64> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let balance = match after.get(e.subscriber.as_str()) {
            Some(b) => Ok(*b),
            None => match stored_balance(conn, &e.subscriber)? {
                None => Ok(0),
                Some(Value::Integer(v)) => Ok(v),
                Some(_) => Err(AppendError::BadBalance(e.subscriber.clone())),
            },
        };
        match balance.and_then(|b| chain::next_balance(b, e)) {
            Ok(next) => {
                after.insert(&e.subscriber, next);
                out.push(None);
            }
            Err(refused) => out.push(Some(refused)),
        }
    }
    Ok(out)
}

/// Subscriber `id`'s balance row as stored (any SQLite value), if it has one.
fn stored_balance(conn: &Connection, id: &str) -> rusqlite::Result<Option<Value>> {
    conn.prepare_cached("SELECT amount FROM balances WHERE subscriber = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()
}

/// Appends `entries` on `conn` (inside an open transaction), chained to the last entry; the
/// balances follow by trigger. Refuses them all if any would take a balance out of i64.
pub(super) fn append_on(conn: &Connection, entries: &[NewEntry]) -> Result<(), AppendFailure> {
    if entries.is_empty() {
        return Ok(());
    }
    if let Some(refused) = refusals_on(conn, entries)?.into_iter().flatten().next() {
        return Err(AppendFailure::Refused(refused));
    }
    let (mut seq, mut prev): (i64, String) = conn
        .query_row(
            "SELECT seq, lower(hex(hash)) FROM ledger ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS.to_owned()));
    let mut put = conn.prepare_cached(
        "INSERT INTO ledger (seq, at, subscriber, kind, amount, reference, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, unhex(?7))",
    )?;
    for e in entries {
        seq += 1;
        let h = chain::hash(
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
            h
        ])?;
        prev = h;
    }
    Ok(())
}

impl Store {
    /// Appends entries in a transaction of their own (operator adjustments).
    pub fn append(&mut self, entries: &[NewEntry]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        append_on(&tx, entries).map_err(|e| e.into_store(&path))?;
        tx.commit().map_err(sql)
    }

    /// For each of `entries`, in order, why the ledger would refuse it now (`None`: it fits);
    /// to leave out the few that cannot be recorded rather than fail everyone's.
    pub fn refusals(&self, entries: &[NewEntry]) -> Result<Vec<Option<AppendError>>, StoreError> {
        refusals_on(&self.conn, entries).map_err(|e| self.sql(e))
    }

    /// Every entry, oldest first, or those of one subscriber; an error for a kind quid does
    /// not know.
    pub fn entries(&self, subscriber: Option<&str>) -> Result<Vec<Entry>, StoreError> {
        entries_on(&self.conn, subscriber).map_err(|e| self.sql(e))
    }

    /// Every balance row: `None` for one that is not an exact integer (only an edited store
    /// has one), so one bad row never hides the others.
    pub fn balances_checked(&self) -> Result<BTreeMap<String, Option<i64>>, StoreError> {
        balances_on(&self.conn).map_err(|e| self.sql(e))
    }

    /// Every balance row; an error naming the first subscriber whose row is not an exact
    /// integer (see [`Store::balances_checked`] to read the others).
    pub fn balances(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        self.balances_checked()?
            .into_iter()
            .map(|(id, b)| match b {
                Some(b) => Ok((id, b)),
                None => Err(StoreError::Ledger(AppendError::BadBalance(id))),
            })
            .collect()
    }

    /// Every subscriber's balance (micro-credits), and the subscribers whose row is not an
    /// exact integer (left out, so one bad row never hides the others).
    pub fn running_balances(&self) -> Result<(HashMap<String, i64>, Vec<String>), StoreError> {
        let (mut good, mut bad) = (HashMap::new(), Vec::new());
        for (id, b) in self.balances_checked()? {
            match b {
                Some(b) => {
                    good.insert(id, b);
                }
                None => bad.push(id),
            }
        }
        Ok((good, bad))
    }

    /// Subscriber `id`'s balance (micro-credits), if it has ledger entries; an error if its
    /// row is not an exact integer.
    pub fn balance(&self, id: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT amount FROM balances WHERE subscriber = ?1",
                [id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Every entry and every balance as of one moment (one read transaction), for `quid
    /// ledger verify` to check them against each other while the daemon writes.
    pub fn ledger_snapshot(&self) -> Result<LedgerSnapshot, StoreError> {
        let sql = |e| self.sql(e);
        let tx = self.begin(TransactionBehavior::Deferred)?;
        let snapshot = LedgerSnapshot {
            entries: entries_on(&tx, None).map_err(sql)?,
            balances: balances_on(&tx).map_err(sql)?,
        };
        tx.commit().map_err(sql)?;
        Ok(snapshot)
    }
}

/// Every entry on `conn`, oldest first, or those of one subscriber.
fn entries_on(conn: &Connection, subscriber: Option<&str>) -> rusqlite::Result<Vec<Entry>> {
    // Each entry's link is the hash of the entry before it in the whole ledger (the window runs
    // before the filter), the genesis hash for the first.
    let mut stmt = conn.prepare(&format!(
        "SELECT * FROM (SELECT seq, at, subscriber, kind, amount, reference,
                lag(lower(hex(hash)), 1, '{GENESIS}') OVER (ORDER BY seq), lower(hex(hash))
             FROM ledger)
         WHERE ?1 IS NULL OR subscriber = ?1 ORDER BY seq"
    ))?;
    let rows = stmt.query_map([subscriber], |r| {
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
    })?;
    rows.collect()
}

/// Every balance row on `conn`; `None` for one that is not an exact integer.
pub(super) fn balances_on(conn: &Connection) -> rusqlite::Result<BTreeMap<String, Option<i64>>> {
    let mut stmt = conn.prepare_cached("SELECT subscriber, amount FROM balances")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            match r.get::<_, Value>(1)? {
                Value::Integer(v) => Some(v),
                _ => None,
            },
        ))
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sub: &str, amount: i64) -> NewEntry {
        if amount < 0 {
            NewEntry::usage_debit(sub, 1_795_000_000, amount, 0, 10)
        } else {
            NewEntry::contribution_credit(sub, 1_795_000_000, amount, "t".into())
        }
    }

    #[test]
    fn balances_follow_the_entries_and_any_edit_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.append(&[entry("a", -300), entry("b", 1_000)]).unwrap();
        s.append(&[entry("a", 500)]).unwrap();
        let all = s.entries(None).unwrap();
        assert_eq!(chain::verify(&all), Ok(3));
        assert_eq!(
            s.balances().unwrap(),
            BTreeMap::from([("a".into(), 200), ("b".into(), 1_000)])
        );
        let snap = s.ledger_snapshot().unwrap();
        assert_eq!(snap.entries, all);
        assert_eq!(chain::verify_balances(&snap.entries, &snap.balances), Ok(2));

        // An operator with sqlite3 turns a debit into a credit: verify names the entry.
        s.conn
            .execute("UPDATE ledger SET amount = 300 WHERE seq = 1", [])
            .unwrap();
        let err = chain::verify(&s.entries(None).unwrap()).unwrap_err();
        assert_eq!(err.seq, 1);
        assert!(err.to_string().contains("do not match its hash"), "{err}");
        s.conn
            .execute("UPDATE ledger SET amount = -300 WHERE seq = 1", [])
            .unwrap();
        assert_eq!(chain::verify(&s.entries(None).unwrap()), Ok(3));
        // Removing an entry breaks the chain too.
        s.conn
            .execute("DELETE FROM ledger WHERE seq = 2", [])
            .unwrap();
        assert_eq!(chain::verify(&s.entries(None).unwrap()).unwrap_err().seq, 3);
    }

    #[test]
    fn an_unknown_kind_in_the_store_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.append(&[entry("a", 5)]).unwrap();
        s.conn
            .execute("UPDATE ledger SET kind = 'gift'", [])
            .unwrap();
        let err = s.entries(None).unwrap_err().to_string();
        assert!(err.contains("`gift` is not a ledger entry kind"), "{err}");
    }

    #[test]
    fn entries_that_would_leave_i64_are_refused_and_the_rest_fit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.append(&[entry("a", i64::MAX)]).unwrap();
        let refused = s
            .refusals(&[entry("a", 1), entry("b", 1), entry("a", -1)])
            .unwrap();
        assert!(matches!(refused[0], Some(AppendError::Overflow { .. })));
        assert!(refused[1].is_none() && refused[2].is_none());
        assert!(matches!(
            s.append(&[entry("b", 1), entry("a", 1)]),
            Err(StoreError::Ledger(AppendError::Overflow { .. }))
        ));
        assert_eq!(
            s.entries(None).unwrap().len(),
            1,
            "nothing of a refused batch"
        );
    }
}
