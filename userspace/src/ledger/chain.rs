//! The ledger: append-only entries in micro-credits (exact integers, never floats), each
//! carrying the SHA-256 of the previous one, so `quid ledger verify` finds any edited, removed
//! or inserted entry. The store keeps each subscriber's balance in the `balances` table, in
//! the same transaction as every entry that moves it: that row is the balance everyone reads
//! (CLI, metrics, operator API), and `quid ledger verify` checks it against the entries
//! ([`verify_balances`]).
//!
//! Entry hash = SHA-256 over the previous entry's hash (hex) and the entry's fields, each
//! followed by a newline: `prev`, `seq`, `at`, `subscriber`, `kind`, `amount`, `reference`.
//! The kind is hashed as its text (`usage_debit`, …), which is also how the store keeps it.
//!
//! Pure: the store (`store/ledger.rs`) reads and writes entries and calls in here.

use std::{collections::BTreeMap, fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a ledger entry is for. Kept in the store, and hashed, as the text of [`Self::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Traffic priced by the tariff (negative).
    UsageDebit,
    /// A settled report's credit (positive).
    ContributionCredit,
    /// The tariff's monthly allowance (positive).
    Allowance,
    /// An operator's correction, either sign, with a reason.
    Adjustment,
}

impl EntryKind {
    /// Every kind, in no particular order.
    pub const ALL: [EntryKind; 4] = [
        EntryKind::UsageDebit,
        EntryKind::ContributionCredit,
        EntryKind::Allowance,
        EntryKind::Adjustment,
    ];

    /// The kind's text, as stored and hashed.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::UsageDebit => "usage_debit",
            EntryKind::ContributionCredit => "contribution_credit",
            EntryKind::Allowance => "allowance",
            EntryKind::Adjustment => "adjustment",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so widths and alignment in format strings apply.
        f.pad(self.as_str())
    }
}

/// A kind text quid does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a ledger entry kind (usage_debit, contribution_credit, allowance, \
     adjustment): the store was edited outside quid or written by a newer quid"
)]
pub struct UnknownKind(pub String);

impl FromStr for EntryKind {
    type Err = UnknownKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EntryKind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| UnknownKind(crate::settlement::report::quote(text)))
    }
}

/// An entry to append; made by one constructor per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub at: i64,
    pub subscriber: String,
    pub kind: EntryKind,
    /// Micro-credits: positive credits the subscriber, negative debits.
    pub amount: i64,
    /// What it is for: the interval, the report (`node#seq`), or the operator's reason.
    pub reference: String,
}

impl NewEntry {
    /// The debit for `subscriber`'s traffic over `[start, end)` (unix seconds).
    pub fn usage_debit(subscriber: &str, at: i64, amount: i64, start: u64, end: u64) -> NewEntry {
        NewEntry::new(
            EntryKind::UsageDebit,
            subscriber,
            at,
            amount,
            format!("usage {start}..{end}"),
        )
    }

    /// The credit of a settled report; `reference` names the report and its figures.
    pub fn contribution_credit(
        subscriber: &str,
        at: i64,
        amount: i64,
        reference: String,
    ) -> NewEntry {
        NewEntry::new(
            EntryKind::ContributionCredit,
            subscriber,
            at,
            amount,
            reference,
        )
    }

    /// The monthly allowance for `month` (as the clock numbers months).
    pub fn allowance(subscriber: &str, at: i64, amount: i64, month: u64) -> NewEntry {
        NewEntry::new(
            EntryKind::Allowance,
            subscriber,
            at,
            amount,
            format!("allowance {month}"),
        )
    }

    /// An operator's adjustment, kept with its reason for both sides.
    pub fn adjustment(subscriber: &str, at: i64, amount: i64, reason: String) -> NewEntry {
        NewEntry::new(EntryKind::Adjustment, subscriber, at, amount, reason)
    }

    fn new(kind: EntryKind, subscriber: &str, at: i64, amount: i64, reference: String) -> NewEntry {
        NewEntry {
            at,
            subscriber: subscriber.to_owned(),
            kind,
            amount,
            reference,
        }
    }
}

/// A recorded entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: i64,
    pub at: i64,
    pub subscriber: String,
    pub kind: EntryKind,
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
    kind: EntryKind,
    amount: i64,
    reference: &str,
) -> String {
    let mut h = Sha256::new();
    for field in [
        prev,
        &seq.to_string(),
        &at.to_string(),
        subscriber,
        kind.as_str(),
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
         written by an older quid); nothing was recorded. `quid ledger verify` shows the \
         difference; restore the store from a backup"
    )]
    BadBalance(String),
}

/// The balance `entry` leaves when its subscriber's balance is `balance`, or why it cannot
/// be recorded (it would leave i64).
pub fn next_balance(balance: i64, entry: &NewEntry) -> Result<i64, AppendError> {
    balance
        .checked_add(entry.amount)
        .ok_or_else(|| AppendError::Overflow {
            subscriber: entry.subscriber.clone(),
            balance,
            amount: entry.amount,
        })
}

/// What `quid ledger verify` found wrong in the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger entry {seq}: {why}; the ledger has been altered after it was written")]
pub struct Broken {
    pub seq: i64,
    pub why: String,
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
            e.kind,
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

/// Each subscriber's entries summed (i128 holds the sum of any 2^64 i64 amounts exactly).
pub fn sums(entries: &[Entry]) -> BTreeMap<String, i128> {
    let mut sums: BTreeMap<String, i128> = BTreeMap::new();
    for e in entries {
        *sums.entry(e.subscriber.clone()).or_insert(0) += i128::from(e.amount);
    }
    sums
}

/// A stored balance that is not the sum of its subscriber's entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "subscriber `{subscriber}`: the stored balance is {stored} but its ledger entries sum to \
     {entries} credits; the balances table has been altered after it was written (quid keeps \
     it in the same transaction as every entry). Restore the store from a backup"
)]
pub struct BalanceMismatch {
    pub subscriber: String,
    /// The stored row: `N credits`, `missing` or `not an exact integer`.
    pub stored: String,
    /// The entries' sum as credits.
    pub entries: String,
}

/// Checks every stored balance (`None`: a row that is not an exact integer) against the sum of
/// its subscriber's entries, and that every subscriber with entries has a row; returns how many
/// balances agree, or the first subscriber (by id) whose do not.
pub fn verify_balances(
    entries: &[Entry],
    stored: &BTreeMap<String, Option<i64>>,
) -> Result<usize, BalanceMismatch> {
    let sums = sums(entries);
    let ids: std::collections::BTreeSet<&String> = sums.keys().chain(stored.keys()).collect();
    for id in &ids {
        let sum = sums.get(*id).copied().unwrap_or(0);
        let row = stored.get(*id);
        let agrees = match row {
            Some(Some(b)) => i128::from(*b) == sum,
            // No row is right only for a subscriber without entries.
            None => !sums.contains_key(*id),
            Some(None) => false,
        };
        if !agrees {
            return Err(BalanceMismatch {
                subscriber: (*id).clone(),
                stored: match row {
                    Some(Some(b)) => format!("{} credits", credits(*b)),
                    Some(None) => "not an exact integer".into(),
                    None => "missing".into(),
                },
                entries: credits_wide(sum),
            });
        }
    }
    Ok(ids.len())
}

/// One stored entry as the store streams it past (borrowed, so a month of entries is checked
/// without holding it in memory).
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub seq: i64,
    pub at: i64,
    pub subscriber: &'a str,
    /// The kind as stored (and hashed).
    pub kind: &'a str,
    pub amount: i64,
    pub reference: &'a str,
    pub prev: &'a str,
    pub hash: &'a str,
}

/// Why a streamed ledger does not verify: the chain itself, or against the checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Broken(#[from] Broken),
    #[error(transparent)]
    Kind(#[from] UnknownKind),
    #[error(transparent)]
    Checkpoint(#[from] super::checkpoint::CheckpointError),
}

/// Checks the chain entry by entry as the store streams it ([`Verifier::push`]), against the
/// checkpoints' signed heads as it goes, summing each subscriber's entries for
/// [`verify_balances`]. The same rules as [`verify`], about twice as fast and in constant
/// memory per subscriber: no hex decoding, no allocation per entry.
pub struct Verifier<'h> {
    prev: [u8; 64],
    seq: i64,
    sums: std::collections::HashMap<String, i128>,
    heads: &'h super::checkpoint::Heads,
    digits: itoa::Buffer,
}

impl<'h> Verifier<'h> {
    /// The hash (hex) the next entry must chain to: the store keeps no separate link, so the
    /// stream hands this back as the entry's `prev` and the entry's own hash decides.
    pub fn expected_prev(&self) -> [u8; 64] {
        self.prev
    }

    /// A verifier from the genesis hash, checking against `heads`.
    pub fn new(heads: &'h super::checkpoint::Heads) -> Verifier<'h> {
        let mut prev = [0u8; 64];
        prev.copy_from_slice(GENESIS.as_bytes());
        Verifier {
            prev,
            seq: 0,
            sums: std::collections::HashMap::new(),
            heads,
            digits: itoa::Buffer::new(),
        }
    }

    /// Checks the next entry.
    pub fn push(&mut self, e: EntryRef<'_>) -> Result<(), StreamError> {
        let broken = |why: &str| Broken {
            seq: e.seq,
            why: why.to_owned(),
        };
        let expected = self.seq.saturating_add(1);
        if e.seq != expected {
            return Err(broken(&format!("expected sequence number {expected}")).into());
        }
        if e.prev.as_bytes() != self.prev {
            return Err(broken("its link to the previous entry does not match").into());
        }
        // The kind must be one quid knows (its text is what was hashed).
        let kind: EntryKind = e.kind.parse()?;
        let mut h = Sha256::new();
        h.update(self.prev);
        h.update(b"\n");
        h.update(self.digits.format(e.seq).as_bytes());
        h.update(b"\n");
        h.update(self.digits.format(e.at).as_bytes());
        h.update(b"\n");
        h.update(e.subscriber.as_bytes());
        h.update(b"\n");
        h.update(kind.as_str().as_bytes());
        h.update(b"\n");
        h.update(self.digits.format(e.amount).as_bytes());
        h.update(b"\n");
        h.update(e.reference.as_bytes());
        h.update(b"\n");
        let mut hash = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(h.finalize(), &mut hash);
        if e.hash.as_bytes() != hash {
            return Err(broken("its contents do not match its hash").into());
        }
        if self.heads.names(e.seq).is_some() {
            self.heads.check(e.seq, e.hash)?;
        }
        self.prev = hash;
        self.seq = e.seq;
        match self.sums.get_mut(e.subscriber) {
            Some(sum) => *sum += i128::from(e.amount),
            None => {
                self.sums
                    .insert(e.subscriber.to_owned(), i128::from(e.amount));
            }
        }
        Ok(())
    }

    /// After the last entry: checks no checkpoint names an entry beyond it (a truncated
    /// ledger); returns how many entries were checked and each subscriber's sum.
    pub fn finish(self) -> Result<(i64, std::collections::HashMap<String, i128>), StreamError> {
        self.heads.check_end(self.seq)?;
        Ok((self.seq, self.sums))
    }
}

/// [`verify_balances`] for the sums a [`Verifier`] kept: one lookup per stored row, then one
/// per subscriber with entries (no merged set of every id, which costs more than the rest at
/// a million subscribers). The first mismatch by id is named, as [`verify_balances`] does.
pub fn verify_sums(
    sums: &std::collections::HashMap<String, i128>,
    stored: &BTreeMap<String, Option<i64>>,
) -> Result<usize, BalanceMismatch> {
    let mut first: Option<(&str, Option<&Option<i64>>, i128)> = None;
    for (id, row) in stored {
        let sum = sums.get(id).copied().unwrap_or(0);
        let agrees = match row {
            Some(b) => i128::from(*b) == sum,
            None => false,
        };
        if !agrees && first.is_none_or(|f| id.as_str() < f.0) {
            first = Some((id, Some(row), sum));
        }
    }
    let mut missing = 0usize;
    for (id, sum) in sums {
        if !stored.contains_key(id) {
            missing += 1;
            if first.is_none_or(|f| id.as_str() < f.0) {
                first = Some((id, None, *sum));
            }
        }
    }
    match first {
        None => Ok(stored.len() + missing),
        Some((id, row, sum)) => Err(BalanceMismatch {
            subscriber: id.to_owned(),
            stored: match row {
                Some(Some(b)) => format!("{} credits", credits(*b)),
                Some(None) => "not an exact integer".into(),
                None => "missing".into(),
            },
            entries: credits_wide(sum),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(amounts: &[(&str, i64)]) -> Vec<Entry> {
        let mut prev = GENESIS.to_owned();
        let mut out = Vec::new();
        for (seq, (who, amount)) in (1..).zip(amounts) {
            let kind = EntryKind::Adjustment;
            let hash = hash(&prev, seq, 7, who, kind, *amount, "t");
            out.push(Entry {
                seq,
                at: 7,
                subscriber: (*who).into(),
                kind,
                amount: *amount,
                reference: "t".into(),
                prev: prev.clone(),
                hash: hash.clone(),
            });
            prev = hash;
        }
        out
    }

    #[test]
    fn kinds_read_back_as_written_and_unknown_text_is_an_error() {
        for k in EntryKind::ALL {
            assert_eq!(k.as_str().parse::<EntryKind>(), Ok(k));
        }
        assert_eq!(format!("{:<12}|", EntryKind::Allowance), "allowance   |");
        let err = "gift".parse::<EntryKind>().unwrap_err().to_string();
        assert!(err.contains("`gift` is not a ledger entry kind"), "{err}");
        let e = NewEntry::usage_debit("a", 5, -3, 100, 110);
        assert_eq!(
            (e.kind, e.reference.as_str()),
            (EntryKind::UsageDebit, "usage 100..110")
        );
        assert_eq!(
            NewEntry::allowance("a", 5, 3, 677).reference,
            "allowance 677"
        );
    }

    #[test]
    fn the_hash_covers_the_kind_text_as_older_quid_wrote_it() {
        // The chain of stores written before kinds were an enum must still verify.
        let h = hash(GENESIS, 1, 7, "a", EntryKind::UsageDebit, -3, "t");
        let mut old = Sha256::new();
        for f in [GENESIS, "1", "7", "a", "usage_debit", "-3", "t"] {
            old.update(f.as_bytes());
            old.update(b"\n");
        }
        assert_eq!(h, hex::encode(old.finalize()));
    }

    #[test]
    fn a_balance_that_is_not_the_sum_of_its_entries_is_named() {
        let entries = chain(&[("a", -300), ("b", 1_000), ("a", 500)]);
        assert_eq!(verify(&entries), Ok(3));
        let good = BTreeMap::from([("a".to_owned(), Some(200)), ("b".to_owned(), Some(1_000))]);
        assert_eq!(verify_balances(&entries, &good), Ok(2));
        let cases = [
            ("a", Some(Some(201)), "0.000201 credits"),
            ("a", Some(None), "not an exact integer"),
            ("a", None, "missing"),
            ("c", Some(Some(5)), "0.000005 credits"),
        ];
        for (who, row, stored) in cases {
            let mut edited = good.clone();
            match row {
                Some(row) => edited.insert(who.to_owned(), row),
                None => edited.remove(who),
            };
            let err = verify_balances(&entries, &edited).unwrap_err();
            assert_eq!(
                (err.subscriber.as_str(), err.stored.as_str()),
                (who, stored)
            );
            assert!(err.to_string().contains(&format!("`{who}`")), "{err}");
        }
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    #[test]
    fn the_streaming_verifier_agrees_with_verify_and_names_the_same_entry() {
        let mut prev = GENESIS.to_owned();
        let mut entries = Vec::new();
        for seq in 1..=5 {
            let h = hash(&prev, seq, 7, "a", EntryKind::Adjustment, -seq, "t");
            entries.push(Entry {
                seq,
                at: 7,
                subscriber: "a".into(),
                kind: EntryKind::Adjustment,
                amount: -seq,
                reference: "t".into(),
                prev: prev.clone(),
                hash: h.clone(),
            });
            prev = h;
        }
        let run = |entries: &[Entry]| {
            let heads = super::super::checkpoint::Heads::default();
            let mut v = Verifier::new(&heads);
            for e in entries {
                v.push(EntryRef {
                    seq: e.seq,
                    at: e.at,
                    subscriber: &e.subscriber,
                    kind: e.kind.as_str(),
                    amount: e.amount,
                    reference: &e.reference,
                    prev: &e.prev,
                    hash: &e.hash,
                })?;
            }
            v.finish()
        };
        let (n, sums) = run(&entries).unwrap();
        assert_eq!((n, sums.get("a").copied()), (5, Some(-15)));
        assert_eq!(verify(&entries), Ok(5));
        entries[2].amount = 3;
        let StreamError::Broken(b) = run(&entries).unwrap_err() else {
            panic!("not a broken chain")
        };
        assert_eq!(b, verify(&entries).unwrap_err());
    }

    #[test]
    fn verify_sums_names_the_same_subscriber_as_verify_balances() {
        let entries = [("a", 200i128), ("b", 1_000)];
        let sums: std::collections::HashMap<String, i128> =
            entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        let good = BTreeMap::from([("a".to_owned(), Some(200)), ("b".to_owned(), Some(1_000))]);
        assert_eq!(verify_sums(&sums, &good), Ok(2));
        for (who, row, stored) in [
            ("a", Some(Some(201)), "0.000201 credits"),
            ("b", Some(None), "not an exact integer"),
            ("a", None, "missing"),
            ("c", Some(Some(5)), "0.000005 credits"),
        ] {
            let mut edited = good.clone();
            match row {
                Some(row) => edited.insert(who.to_owned(), row),
                None => edited.remove(who),
            };
            let err = verify_sums(&sums, &edited).unwrap_err();
            assert_eq!(
                (err.subscriber.as_str(), err.stored.as_str()),
                (who, stored)
            );
        }
    }
}
