//! The figures of a monthly statement, read from the books in one read transaction (so usage,
//! reports, entries, balance and hash are of one moment); `ledger::statement` states and signs
//! them.

use quid_common::{CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, pair_index};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, types::Value};

use super::{Store, StoreError, from_sql};
use crate::{
    ledger::statement::{Figures, Statement, StatementError, month},
    settlement::outcome::Outcome,
};

impl From<StoreError> for StatementError {
    fn from(e: StoreError) -> Self {
        StatementError::Store(Box::new(e))
    }
}

impl Store {
    /// Builds `subscriber`'s statement for `period` (`YYYY-MM`) from the books; a store that
    /// cannot be read is [`StatementError::Store`], never a statement of what could be read.
    pub fn statement(&self, subscriber: &str, period: &str) -> Result<Statement, StatementError> {
        let (from, to) = month(period)?;
        let figures = self.statement_figures(subscriber, from, to)?;
        let mut statement = Statement::from_figures(subscriber, period, (from, to), figures)?;
        statement.anchors = self.statement_anchors(period)?;
        Ok(statement)
    }

    /// What the books hold for `subscriber` over `[from, to)`.
    pub fn statement_figures(
        &self,
        subscriber: &str,
        from: i64,
        to: i64,
    ) -> Result<Figures, StoreError> {
        let sql = |e| self.sql(e);
        let tx = self.begin(TransactionBehavior::Deferred)?;
        let figures = figures_on(&tx, subscriber, from, to).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(figures)
    }
}

/// [`Store::statement_figures`] on `conn`. Sums in Rust, exact in u128/i128: SQLite's sum()
/// fails on an i64 overflow, and one subscriber's figures must never stop the statement.
fn figures_on(c: &Connection, subscriber: &str, from: i64, to: i64) -> rusqlite::Result<Figures> {
    let mut f = Figures::default();
    let key: Option<i64> = c
        .query_row(
            "SELECT key FROM subscribers WHERE id = ?1",
            [subscriber],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(key) = key {
        for (_, _, _, counters) in super::tiers::rows_of(c, key, from, to)? {
            let pick = |d, k| u128::from(counters.pairs[pair_index(d, k)].bytes);
            let got = [
                pick(DIR_DOWNLOAD, CLASS_INTERNET),
                pick(DIR_DOWNLOAD, CLASS_GRID),
                pick(DIR_UPLOAD, CLASS_INTERNET),
                pick(DIR_UPLOAD, CLASS_GRID),
            ];
            for (b, g) in f.bytes.iter_mut().zip(got) {
                *b += g;
            }
        }
    }
    {
        let mut stmt = c.prepare_cached(
            "SELECT cpu_core_micros, storage_byte_seconds, energy_microjoules, outcome
             FROM reports WHERE subscriber = ?1 AND outcome IN (?4, ?5)
               AND period_end > ?2 AND period_end <= ?3",
        )?;
        let mut rows = stmt.query(params![
            subscriber,
            from,
            to,
            Outcome::Matched,
            Outcome::Disputed
        ])?;
        while let Some(r) = rows.next()? {
            for (i, x) in f.contributed.iter_mut().enumerate() {
                *x += u128::from(from_sql(r, i)?);
            }
            match r.get::<_, Outcome>(3)? {
                Outcome::Matched => f.reports_matched += 1,
                Outcome::Disputed => f.reports_disputed += 1,
                Outcome::Pending | Outcome::Unmetered => {}
            }
        }
    }
    {
        let mut stmt = c.prepare_cached("SELECT at, amount FROM ledger WHERE subscriber = ?1")?;
        let mut rows = stmt.query([subscriber])?;
        while let Some(r) = rows.next()? {
            let (at, amount): (i64, i64) = (r.get(0)?, r.get(1)?);
            let amount = i128::from(amount);
            if at < from {
                f.opening += amount;
            } else if at >= to {
                f.later += amount;
            } else {
                f.entries += 1;
                if amount > 0 {
                    f.credits += amount;
                } else {
                    f.debits += amount;
                }
            }
        }
    }
    f.balance = c
        .query_row(
            "SELECT amount FROM balances WHERE subscriber = ?1",
            [subscriber],
            |r| r.get::<_, Value>(0),
        )
        .optional()?
        .map(|v| match v {
            Value::Integer(b) => Some(b),
            _ => None,
        });
    // An error here is an error: only a ledger without an entry before `to` starts from the
    // genesis hash.
    let head: Option<(i64, String)> = c
        .query_row(
            // A hash that is not 32 bytes (a damaged row) reads as NULL: nothing is signed over it.
            "SELECT seq, iif(length(hash) = 32, lower(hex(hash)), NULL) FROM ledger
             WHERE at < ?1 ORDER BY seq DESC LIMIT 1",
            [to],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    f.ledger_seq = head.as_ref().map(|h| h.0);
    f.ledger_hash = head.map(|h| h.1);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use quid_common::{
        CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters, pair_index,
    };

    use super::*;
    use crate::{
        ledger::{
            chain::{GENESIS, NewEntry},
            statement::{parse_key, sign, verify},
        },
        store::Usage,
    };

    #[test]
    fn a_damaged_ledger_is_refused_and_only_an_empty_one_states_the_genesis_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (from, _) = month("2026-11").unwrap();
        // An empty ledger, and only an empty one, is stated with the genesis hash.
        assert_eq!(
            store.statement("alice", "2026-11").unwrap().ledger_hash,
            GENESIS
        );
        store
            .append(&[NewEntry::adjustment("alice", from + 10, 5, "t".into())])
            .unwrap();
        let hash = store.statement("alice", "2026-11").unwrap().ledger_hash;
        assert_ne!(hash, GENESIS);
        // The last entry's hash is no longer text (a damaged row): nothing may be signed.
        store
            .execute_unchecked_for_tests("UPDATE ledger SET hash = x'00'")
            .unwrap();
        let r = store.statement("alice", "2026-11");
        assert!(matches!(r, Err(StatementError::Store(_))), "{r:?}");
        // So is a ledger that cannot be read at all.
        store
            .execute_unchecked_for_tests("ALTER TABLE ledger RENAME TO elsewhere")
            .unwrap();
        let r = store.statement("alice", "2026-11");
        assert!(matches!(r, Err(StatementError::Store(_))), "{r:?}");
    }

    #[test]
    fn a_month_gives_a_statement_that_verifies_and_any_edit_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (from, to) = month("2026-11").unwrap();
        let credit =
            |at: i64, amount: i64| NewEntry::contribution_credit("alice", at, amount, "t".into());
        let debit = |at: i64, amount: i64| NewEntry::usage_debit("alice", at, amount, 0, 10);
        // October leaves alice at +5,000; November: two debits, one credit; December is not
        // November's business.
        store
            .append(&[
                credit(from - 100, 5_000),
                debit(from + 10, -1_200),
                credit(from + 86_400, 20_000),
                debit(to - 1, -300),
                debit(to, -999_999),
            ])
            .unwrap();
        let mut c = SubscriberCounters::default();
        c.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes = 7_000;
        c.pairs[pair_index(DIR_UPLOAD, CLASS_GRID)].bytes = 900;
        let alice = crate::store::Record {
            id: "alice".into(),
            name: "Alice".into(),
            plan: "home".into(),
            prefixes: "100.64.0.1/32".into(),
            slot: None,
            status: crate::store::Status::Active,
            last: SubscriberCounters::default(),
            total: SubscriberCounters::default(),
            base: crate::store::Base::default(),
        };
        store
            .commit(
                &[&alice],
                &[(
                    "alice",
                    Usage {
                        start: u64::try_from(from).unwrap(),
                        end: u64::try_from(from + 10).unwrap(),
                        counters: c,
                    },
                )],
            )
            .unwrap();
        let s = store.statement("alice", "2026-11").unwrap();
        assert_eq!(
            (
                s.opening_balance,
                s.credits,
                s.debits,
                s.closing_balance,
                s.entries
            ),
            (5_000, 20_000, -1_500, 23_500, 3)
        );
        assert_eq!(s.bytes.download_internet, 7_000);
        assert_eq!(s.bytes.upload_grid, 900);

        let key = SigningKey::from_bytes(&[42u8; 32]);
        let signed = sign(s, &key);
        let text = serde_json::to_string_pretty(&signed).unwrap();
        let pubkey = key.verifying_key();
        let ok = verify(&text, Some(&pubkey)).unwrap();
        assert_eq!(ok.statement.closing_balance, 23_500);
        assert!(ok.authenticated);
        // Without the operator's key, the signer is reported as not authenticated.
        assert!(!verify(&text, None).unwrap().authenticated);
        let upper = hex::encode(pubkey.to_bytes()).to_uppercase();
        assert_eq!(parse_key(&format!("{upper}\n")).unwrap(), pubkey);
        assert!(matches!(parse_key("abc"), Err(StatementError::Key(_))));
        // The ISP cannot change a figure after signing, nor sign with another key unnoticed.
        let edited = text.replace("\"credits\": 20000", "\"credits\": 2000");
        assert!(matches!(
            verify(&edited, None),
            Err(StatementError::Signature(_))
        ));
        let other = sign(
            signed.statement.clone(),
            &SigningKey::from_bytes(&[1u8; 32]),
        );
        let other = serde_json::to_string(&other).unwrap();
        assert!(matches!(
            verify(&other, Some(&pubkey)),
            Err(StatementError::WrongKey { .. })
        ));
        // A correctly signed statement with wrong arithmetic is caught too.
        let mut bad = signed.statement.clone();
        bad.closing_balance += 1;
        let bad = serde_json::to_string(&sign(bad, &key)).unwrap();
        assert!(matches!(
            verify(&bad, None),
            Err(StatementError::Arithmetic { .. })
        ));
    }
}
