//! Monthly statements: a subscriber's bytes by direction and class, contributions by resource,
//! credits, debits, and opening and closing balance for one calendar month (UTC), signed with
//! the operator's ed25519 key so the subscriber can check the ISP.
//!
//! The signature covers the statement serialized as compact JSON in field order (integers and
//! strings only, so every reader re-serializes the same bytes). The statement names the hash of
//! the last ledger entry it includes, tying it to the hash chain.
//!
//! Pure: the store reads the [`Figures`] (`store/statements.rs`); this module states, signs
//! and verifies them.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

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
    /// The sequence number of the entry `ledger_hash` is the hash of (version 2; 0 for an
    /// empty ledger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_seq: Option<i64>,
    /// Version 2: the heads every earlier month's statements were computed from, each with
    /// the hash this statement's ledger holds for that entry, so a subscriber holding an older
    /// statement can check that its history was not rewritten since
    /// ([`check_against`]). Left out of version 1 statements, which re-serialize as signed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anchors: Vec<Anchor>,
}

/// The ledger head a month's statements were computed from, as a later statement's ledger
/// holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// `YYYY-MM`.
    pub period: String,
    pub ledger_seq: i64,
    pub ledger_hash: String,
}

/// The statement format this quid writes: 2 adds `ledger_seq` and `anchors`.
pub const VERSION: u32 = 2;

/// A statement with the operator's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    pub statement: Statement,
    pub operator_key: String,
    pub signature: String,
}

/// Why a statement cannot be made or does not check out.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    /// The books could not be read: the server's fault, not the request's.
    #[error(
        "the books cannot be read ({0}); no statement was made: retry when the store is readable"
    )]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(
        "{subscriber}'s stored balance ({stored}) is not the sum of the ledger entries \
         ({entries} credits): the books were edited outside quid (`quid ledger verify` names \
         what differs); no statement can state it"
    )]
    BalanceDisagrees {
        subscriber: String,
        stored: String,
        entries: String,
    },
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
        "the statements of {period} were computed from ledger entry {seq}, which the ledger no \
         longer holds: entries were deleted from its end (`quid ledger verify` names what); \
         no statement can be computed from it. Restore the store from a backup"
    )]
    AnchorGone { period: String, seq: i64 },
    #[error(
        "the history between the two statements was rewritten: {0}. The ISP's ledger no longer \
         holds what the older statement was computed from; keep both files as evidence"
    )]
    Rewritten(String),
    #[error("cannot compare the two statements: {0}")]
    NotComparable(String),
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
    crate::clock::month_bounds(period).map_err(|_| StatementError::Period(period.to_owned()))
}

/// What the books hold for one subscriber and month, as the store reads them; sums are exact
/// (u128/i128), so no figure of one subscriber can stop a statement by overflowing on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Usage bytes in the month: download internet, download grid, upload internet, upload grid.
    pub bytes: [u128; 4],
    /// Matched and disputed reports ending in the month: cpu core-micros, storage
    /// byte-seconds, energy microjoules.
    pub contributed: [u128; 3],
    pub reports_matched: u64,
    pub reports_disputed: u64,
    /// The subscriber's entries dated before the month.
    pub opening: i128,
    /// The subscriber's entries in the month: positive, negative, and how many.
    pub credits: i128,
    pub debits: i128,
    pub entries: u64,
    /// The subscriber's entries dated after the month.
    pub later: i128,
    /// The subscriber's stored balance: `None` without a row, `Some(None)` for a row that is
    /// not an exact integer.
    pub balance: Option<Option<i64>>,
    /// The hash of the last entry (of any subscriber) dated before the month's end; `None`
    /// only when there is none.
    pub ledger_hash: Option<String>,
    /// The sequence number of that entry (`None` with `ledger_hash`).
    pub ledger_seq: Option<i64>,
}

impl Statement {
    /// `subscriber`'s statement for `period` (`YYYY-MM`, the month `[from, to)`) from the
    /// figures the books hold; refused when a figure leaves i64 or the entries do not add up
    /// to the stored balance (both only in a store edited outside quid).
    pub fn from_figures(
        subscriber: &str,
        period: &str,
        (from, to): (i64, i64),
        f: Figures,
    ) -> Result<Statement, StatementError> {
        let fit = |what: &'static str, v: i128| {
            i64::try_from(v).map_err(|_| StatementError::OutOfRange {
                subscriber: subscriber.to_owned(),
                what,
            })
        };
        let (opening, credits, debits) = (
            fit("opening balance", f.opening)?,
            fit("credits", f.credits)?,
            fit("debits", f.debits)?,
        );
        let closing = opening
            .checked_add(credits)
            .and_then(|v| v.checked_add(debits))
            .ok_or_else(|| StatementError::OutOfRange {
                subscriber: subscriber.to_owned(),
                what: "closing balance",
            })?;
        // The closing balance and what came after must be the balance everyone else reads.
        let all = f.opening + f.credits + f.debits + f.later;
        let agrees = match f.balance {
            Some(Some(b)) => i128::from(b) == all,
            // No row: no entries yet.
            None => all == 0,
            Some(None) => false,
        };
        if !agrees {
            return Err(StatementError::BalanceDisagrees {
                subscriber: subscriber.to_owned(),
                stored: match f.balance {
                    Some(Some(b)) => format!("{} credits", crate::ledger::chain::credits(b)),
                    Some(None) => "not an exact integer".into(),
                    None => "missing".into(),
                },
                entries: crate::ledger::chain::credits_wide(all),
            });
        }
        let [di, dg, ui, ug] = f.bytes.map(|b| u64::try_from(b).unwrap_or(u64::MAX));
        let [cpu, storage, energy] = f.contributed;
        // Whole units, floored (the statement format keeps core-seconds and joules).
        let whole = |v: u128, unit: u128| u64::try_from(v / unit).unwrap_or(u64::MAX);
        Ok(Statement {
            version: VERSION,
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
                reports_matched: f.reports_matched,
                reports_disputed: f.reports_disputed,
            },
            opening_balance: opening,
            credits,
            debits,
            closing_balance: closing,
            entries: f.entries,
            // Only a ledger with no entry before the month's end starts from the genesis hash.
            ledger_hash: f
                .ledger_hash
                .unwrap_or_else(|| crate::ledger::chain::GENESIS.to_owned()),
            ledger_seq: Some(f.ledger_seq.unwrap_or(0)),
            anchors: Vec::new(),
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

/// What [`check_against`] established about a newer statement and an older one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuity {
    /// The older statement's month and head.
    pub older_period: String,
    pub older_seq: Option<i64>,
    /// The newer statement's month and head.
    pub newer_period: String,
    pub newer_seq: Option<i64>,
}

/// Checks that the ledger `newer` was computed from extends, unchanged, the ledger `older` was
/// computed from: `newer` carries the hash its ledger holds for `older`'s head entry, which
/// must be `older`'s. Entry hashes chain, so equal hashes at that entry mean every entry up to
/// it is the same in both. Both must be verified (signature, key) first, by the same key.
pub fn check_against(newer: &Verified, older: &Verified) -> Result<Continuity, StatementError> {
    let (n, o) = (&newer.statement, &older.statement);
    if newer.signer != older.signer {
        return Err(StatementError::NotComparable(format!(
            "signed by different keys ({} and {})",
            newer.signer, older.signer
        )));
    }
    if o.period >= n.period {
        return Err(StatementError::NotComparable(format!(
            "the older statement ({}) is not of an earlier month than the newer one ({}): give \
             the newer statement first and the older one with --against",
            o.period, n.period
        )));
    }
    if n.version < 2 {
        return Err(StatementError::NotComparable(format!(
            "the newer statement is version {}, issued before statements carried the ledger's \
             earlier heads",
            n.version
        )));
    }
    let Some(anchor) = n.anchors.iter().find(|a| a.period == o.period) else {
        return Err(StatementError::NotComparable(format!(
            "the newer statement carries no head for {}: that month's statements were issued \
             before quid anchored them (by an older release, or by hand)",
            o.period
        )));
    };
    if let Some(seq) = o.ledger_seq
        && seq != anchor.ledger_seq
    {
        return Err(StatementError::Rewritten(format!(
            "the older statement was computed from ledger entry {seq}, the newer one says \
             {}'s statements were computed from entry {}",
            o.period, anchor.ledger_seq
        )));
    }
    if anchor.ledger_hash != o.ledger_hash {
        return Err(StatementError::Rewritten(format!(
            "the older statement's ledger entry {} hashed to {}, the newer statement's ledger \
             holds {} for it",
            anchor.ledger_seq, o.ledger_hash, anchor.ledger_hash
        )));
    }
    if n.ledger_seq.is_some_and(|s| s < anchor.ledger_seq) {
        return Err(StatementError::Rewritten(format!(
            "the newer statement's ledger ends at entry {}, before the older one's head {}",
            n.ledger_seq.unwrap_or(0),
            anchor.ledger_seq
        )));
    }
    Ok(Continuity {
        older_period: o.period.clone(),
        older_seq: Some(anchor.ledger_seq),
        newer_period: n.period.clone(),
        newer_seq: n.ledger_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_statement_agrees_with_the_stored_balance_or_is_refused() {
        let (from, to) = month("2026-11").unwrap();
        let figures = Figures {
            opening: 5_000,
            credits: 20_000,
            debits: -1_500,
            entries: 3,
            later: -300,
            balance: Some(Some(23_200)),
            ledger_hash: None,
            ..Figures::default()
        };
        let s = Statement::from_figures("alice", "2026-11", (from, to), figures.clone()).unwrap();
        assert_eq!(s.closing_balance, 23_500);
        // No entry before the month's end: the genesis hash, and only then.
        assert_eq!(s.ledger_hash, crate::ledger::chain::GENESIS);
        for balance in [Some(Some(23_201)), Some(None), None] {
            let err = Statement::from_figures(
                "alice",
                "2026-11",
                (from, to),
                Figures {
                    balance,
                    ..figures.clone()
                },
            )
            .unwrap_err();
            assert!(
                matches!(err, StatementError::BalanceDisagrees { .. }),
                "{err}"
            );
        }
        // A subscriber without entries has no balance row, and a statement of zeros.
        let empty = Statement::from_figures("bob", "2026-11", (from, to), Figures::default());
        assert_eq!(empty.unwrap().closing_balance, 0);
    }

    #[test]
    fn a_version_1_statement_signed_before_anchors_still_verifies() {
        // As the previous release wrote it: no `ledger_seq`, no `anchors` in the signed bytes.
        let key = SigningKey::from_bytes(&[9; 32]);
        let v1 = r#"{"version":1,"subscriber":"alice","period":"2026-11","from":1793491200,"to":1796083200,"bytes":{"download_internet":0,"download_grid":0,"upload_internet":0,"upload_grid":0},"contributions":{"cpu_core_seconds":0,"storage_byte_seconds":0,"energy_joules":0,"reports_matched":0,"reports_disputed":0},"opening_balance":0,"credits":5,"debits":0,"closing_balance":5,"entries":1,"ledger_hash":"ab"}"#;
        let signed = format!(
            r#"{{"statement":{v1},"operator_key":"{}","signature":"{}"}}"#,
            hex::encode(key.verifying_key().to_bytes()),
            hex::encode(key.sign(v1.as_bytes()).to_bytes())
        );
        let v = verify(&signed, Some(&key.verifying_key())).unwrap();
        assert_eq!(
            (v.statement.ledger_seq, v.statement.anchors.len()),
            (None, 0)
        );
    }
}
