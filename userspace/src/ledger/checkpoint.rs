//! Checkpoints: the operator key's signature over the ledger's head (sequence number and hash)
//! at a moment, each committing to the checkpoint before it, so the checkpoints form a signed
//! chain of their own. The hash chain alone proves only that no entry in the middle changed:
//! deleting the newest entries, or rewriting every entry and recomputing every hash, leaves a
//! chain that verifies. A checkpoint names an entry's hash under a signature, so `quid ledger
//! verify` finds a ledger that ends before a checkpoint (truncated) or whose entry differs
//! from what a checkpoint signed (rewritten), unless whoever rewrote it also holds the
//! operator key and re-signed every checkpoint: exported checkpoints kept off the router
//! ([`parse_lines`]) still catch that, since re-signed ones differ from the exported ones.
//!
//! Canonical bytes (what is signed, and hashed into the next checkpoint's `prev`): the text
//! `quid checkpoint v1` and then `number`, `ledger_seq`, `head`, `at`, `period` (empty for
//! none) and `prev`, each followed by a newline.
//!
//! Pure: the store keeps them (`store/checkpoints.rs`); the daemon writes them.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chain::GENESIS;

/// What a checkpoint states about the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// 1 for the first checkpoint, then one more each.
    pub number: u64,
    /// The sequence number of the ledger's head entry (0: an empty ledger).
    pub ledger_seq: i64,
    /// That entry's hash (the genesis hash for an empty ledger).
    pub head: String,
    /// When it was signed (unix seconds).
    pub at: i64,
    /// The month (`YYYY-MM`) whose statements were computed from this head, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// The [`Checkpoint::id`] of the checkpoint before (the genesis hash for the first).
    pub prev: String,
}

/// A checkpoint with the operator's signature: one line of `quid ledger checkpoints --export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    pub checkpoint: Checkpoint,
    /// The signer's public key (hex).
    pub operator_key: String,
    /// ed25519 over the canonical bytes (hex).
    pub signature: String,
}

impl Checkpoint {
    /// The bytes signed and hashed.
    pub fn canonical(&self) -> Vec<u8> {
        format!(
            "quid checkpoint v1\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.number,
            self.ledger_seq,
            self.head,
            self.at,
            self.period.as_deref().unwrap_or(""),
            self.prev
        )
        .into_bytes()
    }

    /// The SHA-256 of the canonical bytes (hex): what the next checkpoint's `prev` names.
    pub fn id(&self) -> String {
        hex::encode(Sha256::digest(self.canonical()))
    }

    /// The checkpoint after `last` (or the first) for the ledger head `(seq, head)`.
    pub fn next(
        last: Option<&Checkpoint>,
        (ledger_seq, head): (i64, String),
        at: i64,
        period: Option<String>,
    ) -> Checkpoint {
        Checkpoint {
            number: last.map_or(1, |c| c.number.saturating_add(1)),
            ledger_seq,
            head,
            at,
            period,
            prev: last.map_or_else(|| GENESIS.to_owned(), Checkpoint::id),
        }
    }
}

/// Signs a checkpoint with the operator key.
pub fn sign(checkpoint: Checkpoint, key: &SigningKey) -> Signed {
    Signed {
        operator_key: hex::encode(key.verifying_key().to_bytes()),
        signature: hex::encode(key.sign(&checkpoint.canonical()).to_bytes()),
        checkpoint,
    }
}

/// Why checkpoints do not check out, or the ledger disagrees with them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "checkpoint {number}: {why}; the checkpoints were altered after they were signed \
         (compare with an exported copy: `quid ledger verify --checkpoints FILE`)"
    )]
    Chain { number: u64, why: String },
    #[error(
        "checkpoint {number}: the signature does not verify for operator key {key}: it was \
         altered or not signed by that key"
    )]
    Signature { number: u64, key: String },
    #[error(
        "checkpoint {number} is signed by {found}, not by the operator key ({expected}): \
         give the key the checkpoints were signed with"
    )]
    WrongKey {
        number: u64,
        found: String,
        expected: String,
    },
    #[error(
        "checkpoint {number} signed entry {seq} as the ledger's head, but the ledger ends at \
         entry {last}: entries were deleted from its end (truncated). Restore the store from \
         a backup"
    )]
    Truncated { number: u64, seq: i64, last: i64 },
    #[error(
        "checkpoint {number} signed entry {seq} with hash {signed}, but the ledger's entry {seq} \
         hashes to {found}: the history up to it was rewritten (hashes recomputed). Restore \
         the store from a backup"
    )]
    Rewritten {
        number: u64,
        seq: i64,
        signed: String,
        found: String,
    },
    #[error("checkpoints line {line}: {why}")]
    Format { line: usize, why: String },
}

/// Reads exported checkpoints: one JSON [`Signed`] per line, blank lines skipped.
pub fn parse_lines(text: &str) -> Result<Vec<Signed>, CheckpointError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| CheckpointError::Format {
                line: i + 1,
                why: crate::settlement::report::quote_n(&e.to_string(), 256),
            })
        })
        .collect()
}

/// Checks that `checkpoints` (oldest first, as stored or exported) form one chain from the
/// first checkpoint, each signed by the key it names, and that key is `operator_key` when
/// given (without one, a rewrite that re-signed everything with another key passes: say so).
pub fn verify_chain(
    checkpoints: &[Signed],
    operator_key: Option<&VerifyingKey>,
) -> Result<(), CheckpointError> {
    let mut last: Option<&Checkpoint> = None;
    for s in checkpoints {
        let c = &s.checkpoint;
        let chain = |why: &str| CheckpointError::Chain {
            number: c.number,
            why: why.to_owned(),
        };
        let expected_number = last.map_or(1, |l| l.number.saturating_add(1));
        if c.number != expected_number {
            return Err(chain(&format!(
                "expected checkpoint number {expected_number}"
            )));
        }
        let expected_prev = last.map_or_else(|| GENESIS.to_owned(), Checkpoint::id);
        if c.prev != expected_prev {
            return Err(chain("its link to the checkpoint before does not match"));
        }
        let key = hex::decode(&s.operator_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| chain("operator_key is not an ed25519 key"))?;
        if let Some(expected) = operator_key
            && expected != &key
        {
            return Err(CheckpointError::WrongKey {
                number: c.number,
                found: hex::encode(key.to_bytes()),
                expected: hex::encode(expected.to_bytes()),
            });
        }
        let sig = hex::decode(&s.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or_else(|| chain("signature is not 128 hex digits"))?;
        key.verify_strict(&c.canonical(), &sig)
            .map_err(|_| CheckpointError::Signature {
                number: c.number,
                key: hex::encode(key.to_bytes()),
            })?;
        last = Some(c);
    }
    Ok(())
}

/// The heads the checkpoints signed, by ledger sequence number, for checking the ledger
/// against them as it streams past ([`super::chain::Verifier`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heads {
    /// Ledger sequence number → (checkpoint number, head hash), every checkpoint naming it.
    by_seq: BTreeMap<i64, Vec<(u64, String)>>,
}

impl Heads {
    /// The heads of `checkpoints`.
    pub fn of(checkpoints: &[Signed]) -> Heads {
        let mut by_seq: BTreeMap<i64, Vec<(u64, String)>> = BTreeMap::new();
        for s in checkpoints {
            let c = &s.checkpoint;
            by_seq
                .entry(c.ledger_seq)
                .or_default()
                .push((c.number, c.head.clone()));
        }
        Heads { by_seq }
    }

    /// Whether any checkpoint names entry `seq` (one lookup per entry, so cheap to ask).
    pub fn names(&self, seq: i64) -> Option<&[(u64, String)]> {
        self.by_seq.get(&seq).map(Vec::as_slice)
    }

    /// Checks entry `seq` hashing to `hash` against every checkpoint naming it.
    pub fn check(&self, seq: i64, hash: &str) -> Result<(), CheckpointError> {
        for (number, head) in self.names(seq).unwrap_or_default() {
            if head != hash {
                return Err(CheckpointError::Rewritten {
                    number: *number,
                    seq,
                    signed: head.clone(),
                    found: hash.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Checks that the ledger, ending at entry `last` (0: empty), still holds every entry a
    /// checkpoint signed (each was checked with [`Heads::check`] as it streamed past).
    pub fn check_end(&self, last: i64) -> Result<(), CheckpointError> {
        // Entry 0 is the genesis hash in every ledger: no stream visits it.
        self.check(0, GENESIS)?;
        match self.by_seq.range(last.saturating_add(1)..).next() {
            Some((seq, named)) => Err(CheckpointError::Truncated {
                number: named.first().map_or(0, |n| n.0),
                seq: *seq,
                last,
            }),
            None => Ok(()),
        }
    }

    /// The highest ledger sequence number any checkpoint signed.
    pub fn highest(&self) -> Option<i64> {
        self.by_seq.keys().next_back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(key: &SigningKey, heads: &[(i64, &str)]) -> Vec<Signed> {
        let mut out: Vec<Signed> = Vec::new();
        for (i, (seq, head)) in (0i64..).zip(heads) {
            let c = Checkpoint::next(
                out.last().map(|s| &s.checkpoint),
                (*seq, (*head).to_owned()),
                100 + i,
                None,
            );
            out.push(sign(c, key));
        }
        out
    }

    #[test]
    fn a_chain_verifies_and_any_edit_or_gap_or_other_key_is_named() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let good = chain(&key, &[(1, "aa"), (5, "bb"), (9, "cc")]);
        assert_eq!(verify_chain(&good, Some(&public)), Ok(()));
        // Exported as lines and read back: the same checkpoints.
        let lines: String = good
            .iter()
            .map(|s| serde_json::to_string(s).unwrap() + "\n")
            .collect();
        assert_eq!(parse_lines(&lines).unwrap(), good);

        let mut edited = good.clone();
        edited[1].checkpoint.head = "bd".into();
        assert!(matches!(
            verify_chain(&edited, Some(&public)),
            Err(CheckpointError::Signature { number: 2, .. })
        ));
        let mut gap = good.clone();
        gap.remove(1);
        assert!(matches!(
            verify_chain(&gap, Some(&public)),
            Err(CheckpointError::Chain { number: 3, .. })
        ));
        // Re-signed with another key: consistent, but not the operator's.
        let other = chain(&SigningKey::from_bytes(&[8; 32]), &[(1, "aa")]);
        assert_eq!(verify_chain(&other, None), Ok(()));
        assert!(matches!(
            verify_chain(&other, Some(&public)),
            Err(CheckpointError::WrongKey { number: 1, .. })
        ));
        // A checkpoint re-signed in place (same key, new head) breaks the next one's link.
        let mut resigned = good.clone();
        let mut c = resigned[1].checkpoint.clone();
        c.head = "bd".into();
        resigned[1] = sign(c, &key);
        assert!(matches!(
            verify_chain(&resigned, Some(&public)),
            Err(CheckpointError::Chain { number: 3, .. })
        ));
    }

    #[test]
    fn heads_find_a_rewritten_entry_and_a_truncated_ledger() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let heads = Heads::of(&chain(&key, &[(1, "aa"), (5, "bb")]));
        assert_eq!(heads.check(5, "bb"), Ok(()));
        assert_eq!(heads.check(4, "anything"), Ok(()));
        assert!(matches!(
            heads.check(5, "bc"),
            Err(CheckpointError::Rewritten {
                number: 2,
                seq: 5,
                ..
            })
        ));
        assert_eq!(heads.check_end(5), Ok(()));
        assert!(matches!(
            heads.check_end(4),
            Err(CheckpointError::Truncated {
                number: 2,
                seq: 5,
                last: 4
            })
        ));
        assert_eq!(heads.highest(), Some(5));
    }
}
