//! Monthly statements: a subscriber's bytes by direction and class, contributions by resource,
//! credits, debits, and opening and closing balance for one calendar month (UTC), signed with
//! the operator's ed25519 key so the subscriber can check the ISP.
//!
//! The signature covers the statement serialized as compact JSON in field order (integers and
//! strings only, so every reader re-serializes the same bytes). The statement names the hash of
//! the last ledger entry it includes, tying it to the hash chain.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::store::Store;

/// Bytes by direction and class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bytes {
    pub download_internet: u64,
    pub download_grid: u64,
    pub upload_internet: u64,
    pub upload_grid: u64,
}

/// Contributions of settled reports (summed exactly, then floored to whole units).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contributions {
    pub cpu_core_seconds: u64,
    pub storage_byte_seconds: u64,
    pub energy_joules: u64,
    pub reports_matched: u64,
    pub reports_disputed: u64,
}

/// One subscriber's month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    pub version: u32,
    pub subscriber: String,
    /// `YYYY-MM`.
    pub period: String,
    /// Unix seconds, `[from, to)`.
    pub from: i64,
    pub to: i64,
    pub bytes: Bytes,
    pub contributions: Contributions,
    /// Micro-credits.
    pub opening_balance: i64,
    pub credits: i64,
    pub debits: i64,
    pub closing_balance: i64,
    /// Ledger entries of the subscriber in the period, and the chain hash after the last one
    /// the statement counts (of any subscriber).
    pub entries: u64,
    pub ledger_hash: String,
}

/// A statement with the operator's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    pub statement: Statement,
    pub operator_key: String,
    pub signature: String,
}

/// Why a statement does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("`{0}` is not a month: use YYYY-MM, like 2026-11")]
    Period(String),
    #[error("the statement is not readable: {0}")]
    Format(String),
    #[error("the signature does not verify: the statement was altered or not signed by {0}")]
    Signature(String),
    #[error("signed by {found}, not by the operator key you gave ({expected})")]
    WrongKey { found: String, expected: String },
    #[error(
        "{subscriber}'s {what} is beyond ±9,223,372,036,854.775807 credits: the ledger was edited \
         outside quid (`quid ledger verify` finds where); no statement can state it"
    )]
    OutOfRange {
        subscriber: String,
        what: &'static str,
    },
    #[error(
        "`{0}` is not an operator public key: give the 64 hex digits the ISP published (`quid operator key` prints them)"
    )]
    Key(String),
    #[error(
        "the arithmetic is wrong: opening {opening} + credits {credits} + debits {debits} is not closing {closing}"
    )]
    Arithmetic {
        opening: i64,
        credits: i64,
        debits: i64,
        closing: i64,
    },
}

/// `[from, to)` of a `YYYY-MM` month in UTC.
pub fn month(period: &str) -> Result<(i64, i64), StatementError> {
    let bad = || StatementError::Period(period.to_owned());
    let start: jiff::civil::Date = format!("{period}-01").parse().map_err(|_| bad())?;
    if period.len() != 7 {
        return Err(bad());
    }
    let end = start
        .checked_add(jiff::Span::new().months(1))
        .map_err(|_| bad())?;
    let ts = |d: jiff::civil::Date| {
        d.to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_second())
            .map_err(|_| bad())
    };
    Ok((ts(start)?, ts(end)?))
}

impl Store {
    /// Builds `subscriber`'s statement for `period` (`YYYY-MM`) from the books.
    pub fn statement(&self, subscriber: &str, period: &str) -> Result<Statement, StatementError> {
        let (from, to) = month(period)?;
        let sql = |e: rusqlite::Error| StatementError::Format(e.to_string());
        let c = &self.conn;
        // Sums in Rust, exact in u128/i128: SQLite's sum() fails on an i64 overflow, and one
        // subscriber's figures must never stop the statement (or anyone else's).
        let mut bytes = [0u128; 4];
        {
            let mut stmt = c
                .prepare_cached(
                    "SELECT down_bytes, down_grid_bytes, up_bytes, up_grid_bytes FROM usage
                     WHERE subscriber = ?1 AND start >= ?2 AND start < ?3",
                )
                .map_err(sql)?;
            let mut rows = stmt.query(params![subscriber, from, to]).map_err(sql)?;
            while let Some(r) = rows.next().map_err(sql)? {
                for (i, b) in bytes.iter_mut().enumerate() {
                    // Counters are stored bit-exact (see `store::flat`).
                    *b += u128::from(r.get::<_, i64>(i).map_err(sql)?.cast_unsigned());
                }
            }
        }
        let [di, dg, ui, ug] = bytes.map(|b| u64::try_from(b).unwrap_or(u64::MAX));
        let (mut cpu, mut storage, mut energy, mut matched, mut disputed) =
            (0u128, 0u128, 0u128, 0u64, 0u64);
        {
            let mut stmt = c
                .prepare_cached(
                    "SELECT cpu_core_micros, storage_byte_seconds, energy_microjoules, outcome
                     FROM reports WHERE subscriber = ?1 AND outcome IN ('matched', 'disputed')
                       AND period_end > ?2 AND period_end <= ?3",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map(params![subscriber, from, to], |r| {
                    Ok((
                        crate::store::from_sql(r, 0)?,
                        crate::store::from_sql(r, 1)?,
                        crate::store::from_sql(r, 2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .map_err(sql)?;
            for row in rows {
                let (c, s, e, outcome) = row.map_err(sql)?;
                cpu += u128::from(c);
                storage += u128::from(s);
                energy += u128::from(e);
                match outcome.as_str() {
                    "matched" => matched += 1,
                    "disputed" => disputed += 1,
                    _ => {}
                }
            }
        }
        let (mut opening, mut credits, mut debits, mut entries) = (0i128, 0i128, 0i128, 0u64);
        {
            let mut stmt = c
                .prepare_cached("SELECT at, amount FROM ledger WHERE subscriber = ?1 AND at < ?2")
                .map_err(sql)?;
            let mut rows = stmt.query(params![subscriber, to]).map_err(sql)?;
            while let Some(r) = rows.next().map_err(sql)? {
                let (at, amount): (i64, i64) = (r.get(0).map_err(sql)?, r.get(1).map_err(sql)?);
                let amount = i128::from(amount);
                if at < from {
                    opening += amount;
                } else {
                    entries += 1;
                    if amount > 0 {
                        credits += amount;
                    } else {
                        debits += amount;
                    }
                }
            }
        }
        let fit = |what: &'static str, v: i128| {
            i64::try_from(v).map_err(|_| StatementError::OutOfRange {
                subscriber: subscriber.to_owned(),
                what,
            })
        };
        let (opening, credits, debits) = (
            fit("opening balance", opening)?,
            fit("credits", credits)?,
            fit("debits", debits)?,
        );
        let closing = opening
            .checked_add(credits)
            .and_then(|v| v.checked_add(debits))
            .ok_or_else(|| StatementError::OutOfRange {
                subscriber: subscriber.to_owned(),
                what: "closing balance",
            })?;
        let ledger_hash: String = c
            .query_row(
                "SELECT hash FROM ledger WHERE at < ?1 ORDER BY seq DESC LIMIT 1",
                [to],
                |r| r.get(0),
            )
            .unwrap_or_else(|_| crate::ledger::chain::GENESIS.to_owned());
        // Whole units, floored (the statement format keeps core-seconds and joules).
        let whole = |v: u128, unit: u128| u64::try_from(v / unit).unwrap_or(u64::MAX);
        Ok(Statement {
            version: 1,
            subscriber: subscriber.to_owned(),
            period: period.to_owned(),
            from,
            to,
            bytes: Bytes {
                download_internet: di,
                download_grid: dg,
                upload_internet: ui,
                upload_grid: ug,
            },
            contributions: Contributions {
                cpu_core_seconds: whole(cpu, 1_000_000),
                storage_byte_seconds: whole(storage, 1),
                energy_joules: whole(energy, 1_000_000),
                reports_matched: matched,
                reports_disputed: disputed,
            },
            opening_balance: opening,
            credits,
            debits,
            closing_balance: closing,
            entries,
            ledger_hash,
        })
    }
}

/// Signs a statement with the operator's key.
pub fn sign(statement: Statement, key: &SigningKey) -> Signed {
    // Integers and strings only: serializing cannot fail.
    let bytes = serde_json::to_vec(&statement).unwrap_or_default();
    Signed {
        operator_key: hex::encode(key.verifying_key().to_bytes()),
        signature: hex::encode(key.sign(&bytes).to_bytes()),
        statement,
    }
}

/// Reads an operator public key: 64 hex digits (either case), alone or as the only text of
/// the file `quid operator key` writes.
pub fn parse_key(text: &str) -> Result<VerifyingKey, StatementError> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| StatementError::Key(crate::settlement::report::quote(text.trim())))
}

/// What [`verify`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The statement, its signature and arithmetic checked.
    pub statement: Statement,
    /// The key the statement names and verifies with (hex).
    pub signer: String,
    /// Whether that key is the operator key the caller gave; false means only that the
    /// statement is consistent and signed by the key it names, which anyone can make.
    pub authenticated: bool,
}

/// Checks a signed statement's signature and arithmetic, and that it is signed by
/// `operator_key`; without one the signer is not authenticated (see [`Verified`]).
pub fn verify(text: &str, operator_key: Option<&VerifyingKey>) -> Result<Verified, StatementError> {
    let signed: Signed = serde_json::from_str(text).map_err(|e| {
        StatementError::Format(crate::settlement::report::quote_n(&e.to_string(), 256))
    })?;
    let key = hex::decode(&signed.operator_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| StatementError::Format("operator_key is not an ed25519 key".into()))?;
    let signer = hex::encode(key.to_bytes());
    // Compared as keys, not as hex text.
    if let Some(expected) = operator_key
        && expected != &key
    {
        return Err(StatementError::WrongKey {
            found: signer,
            expected: hex::encode(expected.to_bytes()),
        });
    }
    let sig = hex::decode(&signed.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or_else(|| StatementError::Format("signature is not 128 hex digits".into()))?;
    let bytes =
        serde_json::to_vec(&signed.statement).map_err(|e| StatementError::Format(e.to_string()))?;
    key.verify_strict(&bytes, &sig)
        .map_err(|_| StatementError::Signature(signer.clone()))?;
    let s = signed.statement;
    if s.opening_balance
        .checked_add(s.credits)
        .and_then(|v| v.checked_add(s.debits))
        != Some(s.closing_balance)
    {
        return Err(StatementError::Arithmetic {
            opening: s.opening_balance,
            credits: s.credits,
            debits: s.debits,
            closing: s.closing_balance,
        });
    }
    Ok(Verified {
        statement: s,
        signer,
        authenticated: operator_key.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ledger::chain::NewEntry, store::Usage};
    use quid_common::{
        CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters, pair_index,
    };

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(
            month("2026-11").unwrap(),
            (1_793_491_200, 1_793_491_200 + 30 * 86_400)
        );
        assert_eq!(
            month("2026-12").unwrap().1 - month("2026-12").unwrap().0,
            31 * 86_400
        );
        assert!(month("2026-13").is_err());
        assert!(month("2026-1").is_err());
    }

    #[test]
    fn a_month_gives_a_statement_that_verifies_and_any_edit_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (from, to) = month("2026-11").unwrap();
        let entry = |at: i64, kind: &'static str, amount: i64| NewEntry {
            at,
            subscriber: "alice".into(),
            kind,
            amount,
            reference: "t".into(),
        };
        // October leaves alice at +5,000; November: two debits, one credit; December is not
        // November's business.
        store
            .append(&[
                entry(from - 100, "contribution_credit", 5_000),
                entry(from + 10, "usage_debit", -1_200),
                entry(from + 86_400, "contribution_credit", 20_000),
                entry(to - 1, "usage_debit", -300),
                entry(to, "usage_debit", -999_999),
            ])
            .unwrap();
        let mut c = SubscriberCounters::default();
        c.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes = 7_000;
        c.pairs[pair_index(DIR_UPLOAD, CLASS_GRID)].bytes = 900;
        store
            .commit(
                &[],
                &[(
                    "alice",
                    Usage {
                        start: from as u64,
                        end: from as u64 + 10,
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
