//! The node's side of the storage audits, as the initiator (the router cannot reach a device
//! behind its subscriber's NAT): tell the router how much of the fill is held and take the
//! challenge due, answer it from the reservation, and fetch the next chunks of the fill, paced
//! by the router's rate. Progress (`fill.json`: chunks `0..held` stored and synced) survives
//! restarts, so the fill resumes where it stopped.

use std::{path::PathBuf, time::Duration};

use ed25519_dalek::SigningKey;
use quid_report::{
    audit::CHUNK_BYTES,
    audit_request::{AnswerRequest, Due, DueRequest, FillRequest, RequestError, post_signed},
    clock::Clock,
};
use serde::{Deserialize, Serialize};

use crate::fill::{Fill, FillError};

/// Most chunks fetched per request (the router's limit).
pub const CHUNKS_PER_FETCH: u32 = 64;

/// Why an audit step failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditorError {
    /// The router did not answer, or refused.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The reservation cannot be read or written.
    #[error(transparent)]
    Fill(#[from] FillError),
    /// The progress file cannot be written.
    #[error("cannot record the fill's progress in {path}: {message}")]
    Progress { path: String, message: String },
    /// The clock is unusable.
    #[error(transparent)]
    Clock(#[from] quid_report::clock::ClockError),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    held: u64,
}

/// What one step did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Whether a challenge was answered, and its verdict from the router.
    pub answered: Option<Result<(), String>>,
    /// Chunks fetched and stored.
    pub fetched: u32,
    /// The fill is complete (as far as the reservation holds it).
    pub filled: bool,
    /// How long to wait before the next step.
    pub wait: Duration,
}

/// The node's auditor.
pub struct Auditor {
    node: String,
    router: String,
    key: SigningKey,
    clock: Clock,
    http: ureq::Agent,
    fill: Fill,
    progress: PathBuf,
    held: u64,
    last_at_ms: i64,
    poll: Duration,
}

impl Auditor {
    /// The auditor of the reservation in `storage_dir`, its progress kept in `state_dir`.
    pub fn open(
        node: &str,
        router: &str,
        key: SigningKey,
        clock: Clock,
        storage_dir: &std::path::Path,
        state_dir: &std::path::Path,
        poll: Duration,
    ) -> Result<Auditor, AuditorError> {
        let fill = Fill::open(storage_dir)?;
        let progress = state_dir.join("fill.json");
        let held = std::fs::read(&progress)
            .ok()
            .and_then(|b| serde_json::from_slice::<Progress>(&b).ok())
            .map_or(0, |p| p.held.min(fill.capacity()));
        Ok(Auditor {
            node: node.to_owned(),
            router: router.to_owned(),
            key,
            clock,
            http: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build(),
            fill,
            progress,
            held,
            last_at_ms: 0,
            poll,
        })
    }

    /// Chunks held so far.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// A request time that rises with every request, as the router's replay guard wants.
    fn at_ms(&mut self) -> Result<i64, AuditorError> {
        let now = self.clock.now_ms()?.max(self.last_at_ms.saturating_add(1));
        self.last_at_ms = now;
        Ok(now)
    }

    fn post<T: Serialize>(&self, path: &str, body: &T) -> Result<Vec<u8>, RequestError> {
        post_signed(&self.http, &self.router, path, &self.node, &self.key, body)
    }

    fn save_progress(&self) -> Result<(), AuditorError> {
        let err = |e: std::io::Error| AuditorError::Progress {
            path: self.progress.display().to_string(),
            message: e.to_string(),
        };
        let tmp = self.progress.with_extension("json.tmp");
        let body = serde_json::to_vec(&Progress { held: self.held }).unwrap_or_default();
        std::fs::write(&tmp, body).map_err(err)?;
        std::fs::rename(&tmp, &self.progress).map_err(err)
    }

    /// One step: report what is held and answer a due challenge, then fetch the next chunks.
    pub fn step(&mut self) -> Result<Step, AuditorError> {
        let mut step = Step::default();
        let request = DueRequest {
            node: self.node.clone(),
            at_ms: self.at_ms()?,
            held: self.held,
        };
        let due: Due = serde_json::from_slice(&self.post("/v1/audits/due", &request)?)
            .map_err(|e| RequestError::Answer(e.to_string()))?;
        if let Some(challenge) = &due.challenge {
            let answer = AnswerRequest {
                node: self.node.clone(),
                at_ms: self.at_ms()?,
                answer: self.fill.answer(challenge)?,
            };
            step.answered = Some(match self.post("/v1/audits/answer", &answer) {
                Ok(_) => Ok(()),
                Err(RequestError::Retry(e)) => return Err(RequestError::Retry(e).into()),
                Err(e) => Err(e.to_string()),
            });
        }
        // The router's fill may be smaller than the reservation, never larger.
        let total = due.total.min(self.fill.capacity());
        // A router that lost its store starts a new fill: begin again.
        if due.filled == 0 && self.held > 0 && due.challenge.is_none() {
            self.held = 0;
        }
        let count = u32::try_from(
            total
                .saturating_sub(self.held)
                .min(u64::from(CHUNKS_PER_FETCH)),
        )
        .unwrap_or(CHUNKS_PER_FETCH);
        if count > 0 {
            let request = FillRequest {
                node: self.node.clone(),
                at_ms: self.at_ms()?,
                from: self.held,
                count,
            };
            match self.post("/v1/audits/fill", &request) {
                Ok(bytes) => {
                    if bytes.len() != count as usize * CHUNK_BYTES {
                        return Err(RequestError::Answer(format!(
                            "{} fill bytes for {count} chunks",
                            bytes.len()
                        ))
                        .into());
                    }
                    for (i, chunk) in bytes.chunks_exact(CHUNK_BYTES).enumerate() {
                        self.fill.write(self.held + i as u64, chunk)?;
                    }
                    // On disk before the router is told they are held.
                    self.fill.sync()?;
                    self.held += u64::from(count);
                    self.save_progress()?;
                    step.fetched = count;
                }
                // Throttled: the pacing below waits it out.
                Err(RequestError::Retry(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        step.filled = self.held >= total;
        step.wait = if step.filled {
            self.poll
        } else {
            // Paced by the router's rate, so the fill never asks for more than it may have.
            let bytes = u64::from(CHUNKS_PER_FETCH) * CHUNK_BYTES as u64;
            Duration::from_millis(bytes * 1000 / due.fill_bytes_per_sec.max(1)).min(self.poll)
        };
        Ok(step)
    }
}
