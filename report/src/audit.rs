//! Proof of storage: the router fills a node's reservation with chunks only it can compute,
//! then audits random chunks with a fresh nonce.
//!
//! Chunk `i` of a node is keyed pseudorandom data, `SHA-256(K || i || j)` for its 32-byte
//! blocks `j`, where `K` is a [`FillKey`] the router keeps and never sends. A node that dropped
//! a chunk cannot make it again: it never sees `K`, and pseudorandom data does not compress,
//! so keeping less than the chunks themselves (a seed, a compressed copy, hashes) answers
//! wrongly. An audit ([`Challenge`]) names [`CHALLENGED_CHUNKS`] distinct random chunks and a
//! fresh 32-byte nonce; the node answers `SHA-256(nonce || chunk)` for each ([`proof`]) before
//! the deadline, and the router recomputes the answer from `K` ([`FillKey::judge`]).
//!
//! A node missing a share `f` of its chunks passes one audit with probability at most
//! `(1 - f)^16` (chunks are drawn without replacement): 0.185 for `f` = 10%, so three audits
//! in a row expose it with probability 99.4%. An audit costs the wire a challenge of about
//! 300 bytes and an answer of about 1.1 KiB, and the router 16 chunks of keyed SHA-256 (256 KiB
//! of output, 512 compressions each) plus the 16 proofs.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The size of one chunk of the fill, the unit a reservation is filled and audited in.
pub const CHUNK_BYTES: usize = 16 * 1024;

/// How many chunks one audit asks for.
pub const CHALLENGED_CHUNKS: usize = 16;

/// The router's secret for one node's fill. It never leaves the router: whoever has it can
/// make the chunks without storing them.
#[derive(Clone, PartialEq, Eq)]
pub struct FillKey([u8; 32]);

impl std::fmt::Debug for FillKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A key in a log line would let a node regenerate its fill.
        f.write_str("FillKey(..)")
    }
}

/// The random source failed (no entropy from the kernel).
#[derive(Debug, thiserror::Error)]
#[error("no randomness from the operating system: {0} (is getrandom(2) available?)")]
pub struct RandomError(String);

fn random<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| RandomError(e.to_string()))?;
    Ok(out)
}

impl FillKey {
    /// A new random key for one node.
    pub fn generate() -> Result<FillKey, RandomError> {
        random().map(FillKey)
    }

    /// A key from its stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> FillKey {
        FillKey(bytes)
    }

    /// The key's bytes, to store on the router.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// Chunk `index` of the fill, [`CHUNK_BYTES`] long.
    pub fn chunk(&self, index: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHUNK_BYTES);
        // The key, index and block number (44 bytes) fit one SHA-256 block with its padding:
        // one compression per 32 bytes of output. The key is used for nothing else, so no
        // domain prefix is needed, and a fixed-length input leaves no length extension.
        let mut input = [0u8; 44];
        input[..32].copy_from_slice(&self.0);
        input[32..40].copy_from_slice(&index.to_be_bytes());
        for block in (0u32..).take(CHUNK_BYTES / 32) {
            input[40..].copy_from_slice(&block.to_be_bytes());
            out.extend_from_slice(&Sha256::digest(input));
        }
        out
    }

    /// Judges `answer` to `challenge`, received `answered_at_ms` (unix milliseconds).
    pub fn judge(&self, challenge: &Challenge, answer: &Answer, answered_at_ms: i64) -> Verdict {
        if answered_at_ms > challenge.deadline_ms {
            return Verdict::Failed(Failure::Late);
        }
        if !answer.nonce.eq_ignore_ascii_case(&challenge.nonce) {
            return Verdict::Failed(Failure::WrongNonce);
        }
        if answer.proofs.len() != challenge.chunks.len() {
            return Verdict::Failed(Failure::WrongCount);
        }
        let Some(nonce) = hex32(&challenge.nonce) else {
            return Verdict::Failed(Failure::WrongNonce);
        };
        for (&index, given) in challenge.chunks.iter().zip(&answer.proofs) {
            let expected = proof(&nonce, &self.chunk(index));
            if hex32(given) != Some(expected) {
                return Verdict::Failed(Failure::WrongProof { chunk: index });
            }
        }
        Verdict::Passed
    }

    /// The answer a node holding every chunk gives to `challenge`, made from the key (for
    /// tests and benchmarks: a node never has the key); `None` for a malformed nonce.
    pub fn answer(&self, challenge: &Challenge) -> Option<Answer> {
        let nonce = challenge.nonce_bytes()?;
        Some(Answer {
            nonce: challenge.nonce.clone(),
            proofs: challenge
                .chunks
                .iter()
                .map(|&i| hex::encode(proof(&nonce, &self.chunk(i))))
                .collect(),
        })
    }
}

/// The proof that a chunk is held: `SHA-256(nonce || chunk)`.
pub fn proof(nonce: &[u8; 32], chunk: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(nonce);
    h.update(chunk);
    h.finalize().into()
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

/// One audit, as the router sends it to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// The node audited.
    pub node: String,
    /// 32 fresh random bytes in hex: an answer cannot be computed before the challenge.
    pub nonce: String,
    /// The chunks to prove, distinct, each below the number of chunks filled.
    pub chunks: Vec<u64>,
    /// The answer must arrive by this time (unix milliseconds): long enough to read the chunks
    /// from a slow disk, too short to fetch them from somewhere else.
    pub deadline_ms: i64,
}

/// Why a challenge could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    /// Nothing is filled yet, so there is nothing to audit.
    #[error("node {node} holds no chunks yet: fill its reservation before auditing it")]
    NothingFilled { node: String },
    /// No randomness.
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl Challenge {
    /// A fresh audit of `node`, which holds chunks `0..filled`, answerable until
    /// `deadline_ms`. Asks for [`CHALLENGED_CHUNKS`] distinct chunks, or all when fewer are
    /// filled.
    pub fn new(node: &str, filled: u64, deadline_ms: i64) -> Result<Challenge, ChallengeError> {
        if filled == 0 {
            return Err(ChallengeError::NothingFilled {
                node: node.to_owned(),
            });
        }
        let want = usize::try_from(filled)
            .unwrap_or(usize::MAX)
            .min(CHALLENGED_CHUNKS);
        let mut chunks: Vec<u64> = Vec::with_capacity(want);
        // Rejection sampling: at most 16 distinct draws, a bounded number of retries in
        // expectation (at worst 16 of 16 filled: about 54 draws).
        while chunks.len() < want {
            let draw = u64::from_le_bytes(random()?);
            // Lemire's widening multiply: uniform enough for 64-bit draws below `filled`.
            let index = ((u128::from(draw) * u128::from(filled)) >> 64) as u64;
            if !chunks.contains(&index) {
                chunks.push(index);
            }
        }
        Ok(Challenge {
            node: node.to_owned(),
            nonce: hex::encode(random::<32>()?),
            chunks,
            deadline_ms,
        })
    }

    /// The nonce's bytes, or `None` when the challenge does not carry 32 bytes of hex.
    pub fn nonce_bytes(&self) -> Option<[u8; 32]> {
        hex32(&self.nonce)
    }
}

/// A node's answer to a [`Challenge`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The challenge's nonce, repeated.
    pub nonce: String,
    /// [`proof`] of each challenged chunk in hex, in the challenge's order.
    pub proofs: Vec<String>,
}

/// How an audit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every chunk proven in time.
    Passed,
    /// The node does not hold (all of) the data, or did not answer in time.
    Failed(Failure),
}

/// Why an audit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The answer came after the deadline (or never).
    #[error("no answer before the deadline")]
    Late,
    /// The answer is for another challenge.
    #[error("the answer repeats another nonce")]
    WrongNonce,
    /// Not one proof per challenged chunk.
    #[error("the answer has not one proof per challenged chunk")]
    WrongCount,
    /// A proof is not that of the chunk the router filled.
    #[error("chunk {chunk} is not held as filled")]
    WrongProof { chunk: u64 },
}

impl Verdict {
    /// Whether the audit passed.
    pub fn passed(self) -> bool {
        self == Verdict::Passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(key: &FillKey, c: &Challenge) -> Answer {
        key.answer(c).unwrap()
    }

    #[test]
    fn chunks_are_keyed_distinct_and_the_documented_vector() {
        let key = FillKey::from_bytes([7; 32]);
        let c0 = key.chunk(0);
        assert_eq!(c0.len(), CHUNK_BYTES);
        assert_ne!(c0, key.chunk(1));
        assert_ne!(c0, FillKey::from_bytes([8; 32]).chunk(0));
        // Computed with Python's hashlib: sha256(bytes([7]*32) + i.to_bytes(8, 'big') +
        // j.to_bytes(4, 'big')) for chunk i, block j.
        assert_eq!(
            hex::encode(&c0[..32]),
            "a5cd12480eacec10626e4e96b96e41589daf6fb1476e4aa077d6e0eeb33ed071"
        );
        assert_eq!(
            hex::encode(&key.chunk(5)[CHUNK_BYTES - 32..]),
            "b90d81f959b84503f2751c48b4eee50a9092e915d0d84bc8bfa033fe4929cf6e"
        );
        assert_eq!(format!("{key:?}"), "FillKey(..)");
    }

    #[test]
    fn an_honest_answer_passes_and_every_lie_fails_with_its_reason() {
        let key = FillKey::generate().unwrap();
        let c = Challenge::new("pi", 1000, 5_000).unwrap();
        assert_eq!(c.chunks.len(), CHALLENGED_CHUNKS);
        let mut sorted = c.chunks.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), CHALLENGED_CHUNKS, "distinct chunks");
        assert!(c.chunks.iter().all(|&i| i < 1000));
        let good = answer(&key, &c);
        assert_eq!(key.judge(&c, &good, 5_000), Verdict::Passed);
        assert_eq!(key.judge(&c, &good, 5_001), Verdict::Failed(Failure::Late));
        // An answer kept from an earlier audit: the nonce differs.
        let other = Challenge::new("pi", 1000, 5_000).unwrap();
        assert_eq!(
            key.judge(&other, &good, 0),
            Verdict::Failed(Failure::WrongNonce)
        );
        let mut forged = good.clone();
        forged.nonce = other.nonce.clone();
        assert!(!key.judge(&other, &forged, 0).passed());
        let mut short = good.clone();
        short.proofs.pop();
        assert_eq!(
            key.judge(&c, &short, 0),
            Verdict::Failed(Failure::WrongCount)
        );
        let mut wrong = good.clone();
        wrong.proofs[3] = hex::encode([0u8; 32]);
        assert_eq!(
            key.judge(&c, &wrong, 0),
            Verdict::Failed(Failure::WrongProof { chunk: c.chunks[3] })
        );
        wrong.proofs[3] = "not hex".into();
        assert!(!key.judge(&c, &wrong, 0).passed());
        // Another node's key makes other chunks.
        let stranger = answer(&FillKey::generate().unwrap(), &c);
        assert!(!key.judge(&c, &stranger, 0).passed());
    }

    #[test]
    fn a_small_fill_is_audited_whole_and_an_empty_one_not_at_all() {
        let c = Challenge::new("pi", 5, 0).unwrap();
        let mut sorted = c.chunks.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3, 4]);
        assert!(matches!(
            Challenge::new("pi", 0, 0),
            Err(ChallengeError::NothingFilled { .. })
        ));
    }
}
