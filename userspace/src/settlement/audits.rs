//! The router's side of the storage audits: each node's fill key and progress, the schedule of
//! its challenges, and the rules every request a node sends must pass. The node always asks
//! (it sits behind its subscriber's NAT): it fetches its fill, says how much it holds, takes
//! the challenge that is due and answers it. The router alone decides the key, the chunks, the
//! nonce and the deadline; a challenge nobody answered in time fails.
//!
//! The protocol and its detection probability: `quid_report::audit`; the signed requests:
//! `quid_report::audit_request`; the HTTP routes: `audit_routes.rs`; the tables:
//! `store/audits.rs`.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use quid_report::{
    audit::{Answer, CHUNK_BYTES, Challenge, Failure, FillKey, Verdict},
    audit_score::{AuditScore, Standing},
};

use crate::store::{Store, StoreError};

/// Most chunks one fill request may fetch (1 MiB).
pub const MAX_CHUNKS_PER_REQUEST: u32 = 64;

/// `[audits]`: storage audits of every node that declares storage.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// One challenge per node this often, in seconds.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Seconds a node has to answer a challenge.
    #[serde(default = "default_deadline")]
    pub deadline_secs: u64,
    /// Fill bytes a second each node may fetch (the fill is grid traffic: it must not starve
    /// the subscriber's own).
    #[serde(default = "default_fill_rate")]
    pub fill_bytes_per_sec: u64,
    /// How far a request's `at_ms` may be from the router's clock, in seconds.
    #[serde(default = "default_skew")]
    pub max_skew_secs: u64,
}

fn default_interval() -> u64 {
    900
}
fn default_deadline() -> u64 {
    30
}
fn default_fill_rate() -> u64 {
    1 << 20
}
fn default_skew() -> u64 {
    300
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            interval_secs: default_interval(),
            deadline_secs: default_deadline(),
            fill_bytes_per_sec: default_fill_rate(),
            max_skew_secs: default_skew(),
        }
    }
}

impl AuditConfig {
    /// What `quid check` refuses.
    pub fn check(&self) -> Result<(), String> {
        if self.interval_secs < 1 || self.deadline_secs < 1 {
            return Err("[audits] interval_secs and deadline_secs must be at least 1".into());
        }
        if self.deadline_secs >= self.interval_secs {
            return Err(format!(
                "[audits] deadline_secs ({}) must be below interval_secs ({}): a node answers \
                 one challenge before the next is due",
                self.deadline_secs, self.interval_secs
            ));
        }
        if self.fill_bytes_per_sec < CHUNK_BYTES as u64 {
            return Err(format!(
                "[audits] fill_bytes_per_sec must be at least one chunk ({CHUNK_BYTES})"
            ));
        }
        Ok(())
    }
}

/// A challenge as issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub challenge: Challenge,
    /// Unix milliseconds.
    pub issued_ms: i64,
    /// The chunks it drew from (`0..filled`).
    pub filled: u64,
}

/// How a challenge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub nonce: String,
    /// `None`: passed.
    pub failure: Option<&'static str>,
    pub at_ms: i64,
}

/// One node's audit state, as stored.
#[derive(Debug, Clone)]
pub struct AuditNode {
    pub node: String,
    pub fill_key: FillKey,
    /// Chunks of the whole fill: the declared storage / [`CHUNK_BYTES`].
    pub total: u64,
    /// Chunks `0..served` were sent at least once.
    pub served: u64,
    /// Chunks `0..filled` the node said it holds (never beyond `served`).
    pub filled: u64,
    pub score: AuditScore,
    /// When the next challenge is due (unix ms).
    pub next_due_ms: i64,
    pub open: Option<Issued>,
}

/// What settlement needs of a node's audits over a report's period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditTally {
    /// Challenges whose deadline fell in the period (answered or not).
    pub due: u32,
    /// Of them, passed.
    pub passed: u32,
    /// The fewest chunks any of them drew from: the fill proven over the period.
    pub filled_chunks: u64,
    pub disqualified: bool,
}

impl AuditTally {
    /// The storage byte-seconds `claimed` over `period_secs` earns, and why it earns less (see
    /// `quid_report::audit_score::storage_credit`): nothing with no audit due in the period
    /// (the fill has not started, or no challenge fell due yet), nothing for a disqualified
    /// node, at most the proven fill for the whole period, times passed / due.
    pub fn credit(&self, claimed: u64, period_secs: u64) -> (u64, Option<StorageReduction>) {
        let standing = if self.disqualified {
            Standing::Disqualified
        } else {
            Standing::Good
        };
        let filled = self.filled_chunks.saturating_mul(CHUNK_BYTES as u64);
        let credited = quid_report::audit_score::storage_credit(
            claimed,
            filled,
            period_secs,
            self.due,
            self.passed,
            standing,
        );
        let reduction = if credited == claimed {
            None
        } else if self.disqualified {
            Some(StorageReduction::Disqualified)
        } else if self.due == 0 {
            Some(StorageReduction::NoAuditDue)
        } else if self.passed < self.due {
            Some(StorageReduction::AuditsFailed)
        } else {
            Some(StorageReduction::BeyondFill)
        };
        (credited, reduction)
    }
}

/// Why a report's storage earned less than it claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageReduction {
    /// No audit fell due in the period: nothing was proven.
    NoAuditDue,
    /// Some of the period's audits failed: credit for the share passed.
    AuditsFailed,
    /// The node's audit score fell below 0.96.
    Disqualified,
    /// More was claimed than the fill proven over the period.
    BeyondFill,
}

impl StorageReduction {
    /// The code stored with the report and shown in the ledger's reference.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageReduction::NoAuditDue => "no_audit_due",
            StorageReduction::AuditsFailed => "audits_failed",
            StorageReduction::Disqualified => "disqualified",
            StorageReduction::BeyondFill => "beyond_fill",
        }
    }
}

/// Why an audit request was refused; `code` is the HTTP answer's reason and the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("node `{0}` is not registered")]
    UnknownNode(String),
    #[error("the node declares no storage: nothing to fill or audit")]
    NoStorage,
    #[error("the signature does not verify with the node's registered key")]
    BadSignature,
    #[error("the request cannot be read: {0}")]
    Malformed(String),
    #[error("at_ms {at_ms} is not above the node's last request ({last}): a replay")]
    Replayed { at_ms: i64, last: i64 },
    #[error("at_ms {at_ms} is {off_ms} ms from the router's clock (at most {max_ms} allowed)")]
    Skewed {
        at_ms: i64,
        off_ms: i64,
        max_ms: i64,
    },
    #[error(
        "chunks {from}..{end} are not all within the fill of {total} chunks, or more than \
         {MAX_CHUNKS_PER_REQUEST} at once"
    )]
    ChunkRange { from: u64, end: u64, total: u64 },
    #[error("chunk {from} is beyond what was sent so far ({served}): fetch the fill in order")]
    AheadOfFill { from: u64, served: u64 },
    #[error("the fill is limited to {rate} bytes a second: retry in {retry_ms} ms")]
    Throttled { rate: u64, retry_ms: u64 },
    #[error("no challenge is open for this node (answered already, failed, or never issued)")]
    NoOpenChallenge,
    #[error("the answer is not for this node's open challenge")]
    WrongChallenge,
    #[error("the answer came after the deadline: the audit failed")]
    Late,
    #[error("the audit failed: {0}")]
    Failed(Failure),
    #[error("the audit could not be recorded: {0}")]
    Store(String),
}

impl Refusal {
    /// The machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownNode(_) => "unknown_node",
            Refusal::NoStorage => "no_storage",
            Refusal::BadSignature => "bad_signature",
            Refusal::Malformed(_) => "malformed",
            Refusal::Replayed { .. } => "replayed",
            Refusal::Skewed { .. } => "clock_skew",
            Refusal::ChunkRange { .. } => "chunk_range",
            Refusal::AheadOfFill { .. } => "ahead_of_fill",
            Refusal::Throttled { .. } => "throttled",
            Refusal::NoOpenChallenge => "no_open_challenge",
            Refusal::WrongChallenge => "wrong_challenge",
            Refusal::Late => "late",
            Refusal::Failed(f) => failure_code(*f),
            Refusal::Store(_) => "store_unavailable",
        }
    }

    /// Every code, for metrics that exist before the first refusal.
    pub const CODES: [&'static str; 17] = [
        "unknown_node",
        "no_storage",
        "bad_signature",
        "malformed",
        "replayed",
        "clock_skew",
        "chunk_range",
        "ahead_of_fill",
        "throttled",
        "no_open_challenge",
        "wrong_challenge",
        "late",
        "wrong_nonce",
        "wrong_count",
        "wrong_proof",
        "store_unavailable",
        "unanswered",
    ];
}

/// The code of a failed audit.
pub fn failure_code(f: Failure) -> &'static str {
    match f {
        Failure::Late => "late",
        Failure::WrongNonce => "wrong_nonce",
        Failure::WrongCount => "wrong_count",
        Failure::WrongProof { .. } => "wrong_proof",
    }
}

/// Why the schedule could not advance.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The store refused the write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No randomness for a challenge.
    #[error(transparent)]
    Challenge(#[from] quid_report::audit::ChallengeError),
}

/// Per-node figures for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeFigures {
    pub passed: u64,
    pub failed: u64,
    pub score: f64,
    pub disqualified: bool,
    pub filled_chunks: u64,
    pub total_chunks: u64,
    pub fill_bytes_served: u64,
}

/// What the node's requests hold in memory only: the replay guard and the fill's throttle.
#[derive(Debug, Clone, Copy, Default)]
struct Session {
    last_at_ms: i64,
    /// Fill bytes the node may fetch now, and when that was computed.
    tokens: u64,
    tokens_at_ms: i64,
    passed: u64,
    failed: u64,
    served_bytes: u64,
}

/// Every node's audits: the state, its store, and the counts.
pub struct AuditBook {
    config: AuditConfig,
    nodes: HashMap<String, AuditNode>,
    sessions: HashMap<String, Session>,
    store: Store,
    /// Refusals and failures by code.
    pub refusals: BTreeMap<&'static str, u64>,
}

/// What the due request answers.
pub type DueState = (Option<Challenge>, u64, u64);

impl AuditBook {
    /// The audits as the store holds them.
    pub fn open(config: AuditConfig, store: Store) -> Result<AuditBook, StoreError> {
        let nodes = store
            .audit_nodes()?
            .into_iter()
            .map(|n| (n.node.clone(), n))
            .collect();
        Ok(AuditBook {
            config,
            nodes,
            sessions: HashMap::new(),
            store,
            refusals: Refusal::CODES.iter().map(|c| (*c, 0)).collect(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> AuditConfig {
        self.config
    }

    /// Counts a refusal and hands it back.
    pub fn refuse(&mut self, r: Refusal) -> Refusal {
        *self.refusals.entry(r.code()).or_default() += 1;
        r
    }

    /// The first checks on a verified request of `node` at `at_ms`, now `now_ms`: the node's
    /// audit state (made, with a new fill key, the first time), the clock and replay guard.
    pub fn admit(
        &mut self,
        node: &str,
        storage_bytes: u64,
        at_ms: i64,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let total = storage_bytes / CHUNK_BYTES as u64;
        if total == 0 {
            return Err(self.refuse(Refusal::NoStorage));
        }
        let max_ms = i64::try_from(self.config.max_skew_secs.saturating_mul(1000)).unwrap_or(0);
        let off_ms = at_ms.saturating_sub(now_ms).saturating_abs();
        if off_ms > max_ms {
            return Err(self.refuse(Refusal::Skewed {
                at_ms,
                off_ms,
                max_ms,
            }));
        }
        let session = self.sessions.entry(node.to_owned()).or_default();
        if at_ms <= session.last_at_ms {
            let last = session.last_at_ms;
            return Err(self.refuse(Refusal::Replayed { at_ms, last }));
        }
        session.last_at_ms = at_ms;
        if !self.nodes.contains_key(node) {
            let fill_key = FillKey::generate().map_err(|e| Refusal::Store(e.to_string()))?;
            let fresh = AuditNode {
                node: node.to_owned(),
                fill_key,
                total,
                served: 0,
                filled: 0,
                score: AuditScore::default(),
                next_due_ms: now_ms,
                open: None,
            };
            self.store
                .save_audit_node(&fresh)
                .map_err(|e| Refusal::Store(e.to_string()))?;
            self.nodes.insert(node.to_owned(), fresh);
        }
        let n = self.nodes.get_mut(node).ok_or(Refusal::NoOpenChallenge)?;
        if n.total != total {
            // The declared storage changed in the nodes file: the fill follows it.
            n.total = total;
            n.served = n.served.min(total);
            n.filled = n.filled.min(total);
        }
        Ok(())
    }

    /// Checks a fill request for chunks `from .. from + count` and charges its bytes to the
    /// node's throttle; returns the key to compute them with (outside the book's lock).
    pub fn fill(
        &mut self,
        node: &str,
        from: u64,
        count: u32,
        now_ms: i64,
    ) -> Result<FillKey, Refusal> {
        let Some(n) = self.nodes.get(node) else {
            return Err(self.refuse(Refusal::UnknownNode(node.to_owned())));
        };
        let end = from.saturating_add(u64::from(count));
        if count == 0 || count > MAX_CHUNKS_PER_REQUEST || end > n.total {
            let total = n.total;
            return Err(self.refuse(Refusal::ChunkRange { from, end, total }));
        }
        if from > n.served {
            let served = n.served;
            return Err(self.refuse(Refusal::AheadOfFill { from, served }));
        }
        // A token bucket in bytes (integers: exact, and no float casts): `rate` a second, up
        // to one full request or one second's worth saved up.
        let rate = self.config.fill_bytes_per_sec.max(1);
        let burst = rate.max(u64::from(MAX_CHUNKS_PER_REQUEST) * CHUNK_BYTES as u64);
        let bytes = u64::from(count) * CHUNK_BYTES as u64;
        let session = self.sessions.entry(node.to_owned()).or_default();
        if session.tokens_at_ms == 0 {
            session.tokens = burst;
        } else {
            let ms =
                u128::try_from(now_ms.saturating_sub(session.tokens_at_ms).max(0)).unwrap_or(0);
            let earned = u64::try_from(ms * u128::from(rate) / 1000).unwrap_or(u64::MAX);
            session.tokens = session.tokens.saturating_add(earned).min(burst);
        }
        session.tokens_at_ms = now_ms;
        if session.tokens < bytes {
            let retry_ms = (bytes - session.tokens).saturating_mul(1000).div_ceil(rate);
            return Err(self.refuse(Refusal::Throttled { rate, retry_ms }));
        }
        session.tokens -= bytes;
        session.served_bytes = session.served_bytes.saturating_add(bytes);
        let key = n.fill_key.clone();
        let served = n.served.max(end);
        if served != n.served {
            let n = self.nodes.get_mut(node).ok_or(Refusal::NoOpenChallenge)?;
            n.served = served;
            let n = n.clone();
            self.save(&n)?;
        }
        Ok(key)
    }

    fn save(&mut self, n: &AuditNode) -> Result<(), Refusal> {
        self.store
            .save_audit_node(n)
            .map_err(|e| Refusal::Store(e.to_string()))
    }

    /// The node holds chunks `0..held`: records it (within what was sent), fails an open
    /// challenge past its deadline, issues one when due; answers (open challenge, filled,
    /// total).
    pub fn due(&mut self, node: &str, held: u64, now_ms: i64) -> Result<DueState, Refusal> {
        let Some(n) = self.nodes.get_mut(node) else {
            return Err(self.refuse(Refusal::UnknownNode(node.to_owned())));
        };
        let filled = n.filled.max(held.min(n.served));
        if filled != n.filled {
            n.filled = filled;
            let n = n.clone();
            self.save(&n)?;
        }
        self.step(node, now_ms)
            .map_err(|e| Refusal::Store(e.to_string()))?;
        let n = &self.nodes[node];
        Ok((
            n.open.as_ref().map(|i| i.challenge.clone()),
            n.filled,
            n.total,
        ))
    }

    /// The schedule of one node at `now_ms`: an open challenge past its deadline fails
    /// (`unanswered`), and a new one is issued when due and something is filled.
    fn step(&mut self, node: &str, now_ms: i64) -> Result<(), SweepError> {
        let Some(n) = self.nodes.get_mut(node) else {
            return Ok(());
        };
        // A grace of one more deadline before an unanswered challenge is failed here, so a
        // node answering just late is told `late` rather than that nothing is open.
        let grace = i64::try_from(self.config.deadline_secs * 1000).unwrap_or(0);
        if let Some(open) = &n.open
            && now_ms > open.challenge.deadline_ms.saturating_add(grace)
        {
            let closed = Closed {
                nonce: open.challenge.nonce.clone(),
                failure: Some("unanswered"),
                at_ms: now_ms,
            };
            n.open = None;
            n.score.record(false);
            self.store.close_audit(n, &closed)?;
            *self.refusals.entry("unanswered").or_default() += 1;
            self.sessions.entry(node.to_owned()).or_default().failed += 1;
        }
        if n.open.is_none() && n.filled > 0 && now_ms >= n.next_due_ms {
            let deadline_ms =
                now_ms.saturating_add(i64::try_from(self.config.deadline_secs * 1000).unwrap_or(0));
            let challenge = Challenge::new(node, n.filled, deadline_ms)?;
            let issued = Issued {
                challenge,
                issued_ms: now_ms,
                filled: n.filled,
            };
            // The cadence keeps its phase; a router that was down does not issue the missed
            // challenges all at once.
            let interval = i64::try_from(self.config.interval_secs * 1000).unwrap_or(i64::MAX);
            n.next_due_ms = n
                .next_due_ms
                .saturating_add(interval)
                .max(now_ms.saturating_add(1));
            n.open = Some(issued.clone());
            self.store.issue_audit(n, &issued)?;
        }
        Ok(())
    }

    /// Every node's schedule at `now_ms` (the daemon calls it every interval, so a node that
    /// stops asking still has its challenges issued and failed).
    pub fn sweep(&mut self, now_ms: i64) -> Result<(), SweepError> {
        let nodes: Vec<String> = self.nodes.keys().cloned().collect();
        for node in nodes {
            self.step(&node, now_ms)?;
        }
        Ok(())
    }

    /// The open challenge `answer` must answer, and the key to judge it with (outside the
    /// lock); a late answer fails the challenge here.
    pub fn to_judge(
        &mut self,
        node: &str,
        answer: &Answer,
        now_ms: i64,
    ) -> Result<(Challenge, FillKey), Refusal> {
        let open = self.nodes.get(node).and_then(|n| {
            n.open
                .as_ref()
                .map(|o| (o.challenge.clone(), n.fill_key.clone()))
        });
        let Some((challenge, key)) = open else {
            return Err(self.refuse(Refusal::NoOpenChallenge));
        };
        if !answer.nonce.eq_ignore_ascii_case(&challenge.nonce) {
            return Err(self.refuse(Refusal::WrongChallenge));
        }
        if now_ms > challenge.deadline_ms {
            self.close(
                node,
                &challenge.nonce,
                Verdict::Failed(Failure::Late),
                now_ms,
            )?;
            return Err(Refusal::Late);
        }
        Ok((challenge, key))
    }

    /// Records the verdict on `node`'s challenge `nonce` (if it is still the open one).
    pub fn close(
        &mut self,
        node: &str,
        nonce: &str,
        verdict: Verdict,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let Some(n) = self.nodes.get_mut(node) else {
            return Err(self.refuse(Refusal::NoOpenChallenge));
        };
        if n.open.as_ref().is_none_or(|o| o.challenge.nonce != nonce) {
            return Err(self.refuse(Refusal::NoOpenChallenge));
        }
        let failure = match verdict {
            Verdict::Passed => None,
            Verdict::Failed(f) => Some(failure_code(f)),
        };
        n.open = None;
        n.score.record(verdict.passed());
        let closed = Closed {
            nonce: nonce.to_owned(),
            failure,
            at_ms: now_ms,
        };
        let n = n.clone();
        self.store
            .close_audit(&n, &closed)
            .map_err(|e| Refusal::Store(e.to_string()))?;
        let session = self.sessions.entry(node.to_owned()).or_default();
        if let Some(code) = failure {
            session.failed += 1;
            *self.refusals.entry(code).or_default() += 1;
        } else {
            session.passed += 1;
        }
        Ok(())
    }

    /// Per-node figures for the metrics.
    pub fn figures(&self) -> BTreeMap<String, NodeFigures> {
        self.nodes
            .values()
            .map(|n| {
                let s = self.sessions.get(&n.node).copied().unwrap_or_default();
                (
                    n.node.clone(),
                    NodeFigures {
                        passed: s.passed,
                        failed: s.failed,
                        score: n.score.value(),
                        disqualified: n.score.standing == Standing::Disqualified,
                        filled_chunks: n.filled,
                        total_chunks: n.total,
                        fill_bytes_served: s.served_bytes,
                    },
                )
            })
            .collect()
    }
}

/// The fill chunks `from .. from + count` of `key`, concatenated (the fill answer's body).
pub fn fill_chunks(key: &FillKey, from: u64, count: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(count as usize * CHUNK_BYTES);
    for i in from..from.saturating_add(u64::from(count)) {
        out.extend_from_slice(&key.chunk(i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn book(dir: &std::path::Path) -> AuditBook {
        let config = AuditConfig {
            interval_secs: 60,
            deadline_secs: 10,
            fill_bytes_per_sec: 64 * CHUNK_BYTES as u64,
            max_skew_secs: 300,
        };
        AuditBook::open(config, Store::open(dir).unwrap()).unwrap()
    }

    fn answer(key: &FillKey, c: &Challenge) -> Answer {
        key.answer(c).unwrap()
    }

    #[test]
    fn requests_are_checked_the_schedule_runs_and_the_state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = book(dir.path());
        let storage = 1000 * CHUNK_BYTES as u64;
        assert_eq!(b.admit("pi", 100, T0, T0), Err(Refusal::NoStorage));
        b.admit("pi", storage, T0, T0).unwrap();
        // The same at_ms again, or an older one: a replay.
        assert_eq!(
            b.admit("pi", storage, T0, T0).unwrap_err().code(),
            "replayed"
        );
        assert_eq!(
            b.admit("pi", storage, T0 - 1, T0).unwrap_err().code(),
            "replayed"
        );
        assert_eq!(
            b.admit("pi", storage, T0 + 301_000, T0).unwrap_err().code(),
            "clock_skew"
        );
        // Nothing held: no challenge yet.
        assert_eq!(b.due("pi", 0, T0).unwrap(), (None, 0, 1000));
        assert_eq!(b.fill("pi", 64, 1, T0).unwrap_err().code(), "ahead_of_fill");
        assert_eq!(b.fill("pi", 0, 65, T0).unwrap_err().code(), "chunk_range");
        assert_eq!(b.fill("pi", 990, 20, T0).unwrap_err().code(), "chunk_range");
        let key = b.fill("pi", 0, 64, T0).unwrap();
        // The bucket held one request; the next waits a second's worth.
        assert_eq!(b.fill("pi", 64, 64, T0).unwrap_err().code(), "throttled");
        b.fill("pi", 64, 64, T0 + 1000).unwrap();
        // Holding more than was sent counts only what was sent.
        let (c, filled, _) = b.due("pi", 500, T0 + 1000).unwrap();
        assert_eq!(filled, 128);
        let c = c.unwrap();
        assert!(c.chunks.iter().all(|&i| i < 128));
        // Asked again, the same challenge.
        assert_eq!(b.due("pi", 128, T0 + 1001).unwrap().0, Some(c.clone()));
        // Another nonce is not this challenge; the right answer passes once.
        let mut other = answer(&key, &c);
        other.nonce = hex::encode([1u8; 32]);
        assert_eq!(
            b.to_judge("pi", &other, T0 + 2000).unwrap_err().code(),
            "wrong_challenge"
        );
        let good = answer(&key, &c);
        let (challenge, k) = b.to_judge("pi", &good, T0 + 2000).unwrap();
        let verdict = k.judge(&challenge, &good, T0 + 2000);
        b.close("pi", &c.nonce, verdict, T0 + 2000).unwrap();
        assert_eq!(
            b.to_judge("pi", &good, T0 + 2001).unwrap_err().code(),
            "no_open_challenge"
        );
        // The next is due a minute after the first; unanswered, the sweep fails it once its
        // deadline and a grace of one more have passed.
        assert_eq!(b.due("pi", 128, T0 + 59_000).unwrap().0, None);
        let next = b.due("pi", 128, T0 + 61_000).unwrap().0.unwrap();
        b.sweep(T0 + 61_000 + 20_000).unwrap();
        assert!(b.nodes["pi"].open.is_some(), "within the grace");
        b.sweep(T0 + 61_000 + 20_001).unwrap();
        assert!(b.nodes["pi"].open.is_none());
        assert_eq!(b.refusals["unanswered"], 1);
        assert_ne!(next.nonce, c.nonce);
        // The store has it all: a new book (a restarted daemon) knows the key and tallies.
        let b2 = book(dir.path());
        assert_eq!(b2.nodes["pi"].fill_key, key);
        assert_eq!(b2.nodes["pi"].filled, 128);
        let tally = b2
            .store
            .audit_tally("pi", T0, T0 + 120_000)
            .unwrap()
            .unwrap();
        assert_eq!(
            tally,
            AuditTally {
                due: 2,
                passed: 1,
                filled_chunks: 128,
                disqualified: false
            }
        );
        assert_eq!(b2.store.audit_tally("ghost", 0, i64::MAX).unwrap(), None);
    }

    #[test]
    fn storage_is_credited_by_the_audits_of_the_period_with_its_reason() {
        let full = AuditTally {
            due: 4,
            passed: 4,
            filled_chunks: 1000,
            disqualified: false,
        };
        let claim = 1000 * CHUNK_BYTES as u64 * 60;
        assert_eq!(full.credit(claim, 60), (claim, None));
        assert_eq!(
            AuditTally { passed: 3, ..full }.credit(claim, 60),
            (claim / 4 * 3, Some(StorageReduction::AuditsFailed))
        );
        assert_eq!(
            AuditTally {
                due: 0,
                passed: 0,
                ..full
            }
            .credit(claim, 60),
            (0, Some(StorageReduction::NoAuditDue))
        );
        assert_eq!(
            AuditTally {
                disqualified: true,
                ..full
            }
            .credit(claim, 60),
            (0, Some(StorageReduction::Disqualified))
        );
        assert_eq!(
            AuditTally {
                filled_chunks: 500,
                ..full
            }
            .credit(claim, 60),
            (claim / 2, Some(StorageReduction::BeyondFill))
        );
    }
}
