//! The agent's work, one step at a time so a test can drive it with a manual clock: sample the
//! meters, close every period whose end has passed (commit to the outbox), deliver the outbox
//! in order with backoff. `run` in `main.rs` only sleeps between steps.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use quid_report::{
    clock::Clock,
    delivery::{Delivery, post_once},
    report::{Report, rfc3339},
};

use crate::{
    backoff::Backoff,
    config::{Config, MAX_PERIOD_SECS},
    meters::Meters,
    outbox::{Entry, Outbox, OutboxError},
    period, storage,
};

/// Why a step failed: the state cannot be kept, or a report cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The outbox cannot be read or written.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The report cannot be formed (a period out of range).
    #[error("cannot sign the report for seq {seq}: {message}")]
    Sign { seq: u64, message: String },
    /// The system clock cannot be read.
    #[error(transparent)]
    Clock(#[from] quid_report::clock::ClockError),
    /// The period length does not fit the clock's arithmetic.
    #[error("period_secs does not fit: {0}")]
    Period(u64),
}

/// The running agent.
pub struct Agent {
    config: Config,
    key: SigningKey,
    clock: Clock,
    outbox: Outbox,
    http: ureq::Agent,
    meters: Meters,
    latest: Entry,
    backoff: Backoff,
    next_attempt: i64,
    /// What the last sample could not read, for the log.
    pub problems: Vec<String>,
}

/// What one delivery pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Sequence numbers the router acknowledged.
    pub acknowledged: Vec<u64>,
    /// Sequence numbers it refused for good, with why.
    pub refused: Vec<(u64, String)>,
    /// Why the rest waits, if it does.
    pub waiting: Option<String>,
}

impl Agent {
    /// Opens the state folder and takes the first sample. With no state yet, now is the
    /// anchor: the first period starts here, and what the meters counted before is not
    /// claimed.
    pub fn open(config: Config, key: SigningKey, clock: Clock) -> Result<Agent, AgentError> {
        let outbox = Outbox::open(&config.state_dir)?;
        let http = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build();
        let latest = match outbox.latest()? {
            Some(e) => e,
            None => {
                let mut meters = Meters::default();
                // The first reading of each meter is its baseline.
                meters.sample(&config, &http);
                let anchor = Entry {
                    seq: 0,
                    period_end: clock.now_i64()?,
                    meters,
                    energy_source: config.energy.name().to_owned(),
                    report: None,
                    refused: None,
                };
                outbox.anchor(&anchor)?;
                anchor
            }
        };
        let mut agent = Agent {
            meters: latest.meters,
            latest,
            config,
            key,
            clock,
            outbox,
            http,
            backoff: Backoff::default(),
            next_attempt: 0,
            problems: Vec::new(),
        };
        agent.sample();
        Ok(agent)
    }

    fn period_secs(&self) -> Result<i64, AgentError> {
        i64::try_from(self.config.period_secs)
            .map_err(|_| AgentError::Period(self.config.period_secs))
    }

    /// Reads every meter now.
    pub fn sample(&mut self) {
        self.problems = self.meters.sample(&self.config, &self.http);
    }

    /// Where the next period ends.
    pub fn next_end(&self) -> Result<i64, AgentError> {
        let p = self.period_secs()?;
        Ok(period::boundary_at_or_before(self.latest.period_end, p).saturating_add(p))
    }

    /// Closes every period that has ended by now into one report (several when the gap is
    /// longer than a report may cover); returns the sequence numbers committed.
    pub fn close_due(&mut self) -> Result<Vec<u64>, AgentError> {
        let now = self.clock.now_i64()?;
        let end = period::boundary_at_or_before(now, self.period_secs()?);
        if end <= self.latest.period_end {
            return Ok(Vec::new());
        }
        self.sample();
        let start = self.latest.period_end;
        let whole = end.saturating_sub(start);
        let measured = self.meters.since(&self.latest.meters);
        let allocated = self
            .config
            .storage
            .as_ref()
            .map_or(0, |s| storage::allocated(&s.dir, s.reserve_bytes));
        let max =
            i64::try_from(MAX_PERIOD_SECS).map_err(|_| AgentError::Period(MAX_PERIOD_SECS))?;
        let pieces = period::split(start, end, max);
        let mut given = [0u64; 4];
        let mut committed = Vec::new();
        for (i, &(from, to)) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            let mut figures = [0u64; 4];
            for (k, f) in figures.iter_mut().enumerate() {
                *f = if last {
                    measured[k].saturating_sub(given[k])
                } else {
                    period::share(measured[k], to - from, whole)
                };
                given[k] = given[k].saturating_add(*f);
            }
            let seq = self.latest.seq.saturating_add(1);
            let secs = u64::try_from(to - from).unwrap_or(0);
            let mut report = Report {
                node: self.config.node.clone(),
                seq,
                period_start: rfc3339(from),
                period_end: rfc3339(to),
                cpu_core_micros: figures[0],
                storage_byte_seconds: allocated.saturating_mul(secs),
                energy_microjoules: figures[1],
                energy_source: Some(self.config.energy.reported()),
                grid_bytes_sent: figures[2],
                grid_bytes_received: figures[3],
                signature: String::new(),
            };
            report.sign(&self.key).map_err(|e| AgentError::Sign {
                seq,
                message: e.to_string(),
            })?;
            // Earlier pieces keep the baselines of the start, so only the last piece's entry
            // carries totals that a restart may continue from.
            let entry = Entry {
                seq,
                period_end: to,
                meters: if last {
                    self.meters
                } else {
                    self.latest.meters
                },
                energy_source: self.config.energy.name().to_owned(),
                report: Some(report),
                refused: None,
            };
            self.outbox.push(&entry)?;
            committed.push(seq);
            self.latest = entry;
        }
        Ok(committed)
    }

    /// Sends the outbox in order until it is empty or the router does not acknowledge; a
    /// failure sets when to try again (backoff with jitter).
    pub fn deliver(&mut self) -> Result<Delivered, AgentError> {
        let mut out = Delivered::default();
        let now = self.clock.now_i64()?;
        if now < self.next_attempt {
            out.waiting = Some("backing off".to_owned());
            return Ok(out);
        }
        for mut entry in self.outbox.pending()? {
            let Some(report) = &entry.report else {
                continue;
            };
            match post_once(&self.http, &self.config.router, report) {
                Delivery::Acknowledged(_) => {
                    self.outbox.settle(&entry)?;
                    self.backoff.reset();
                    out.acknowledged.push(entry.seq);
                }
                Delivery::Refused(why) => {
                    // Resending cannot help, and holding it would block every later period.
                    entry.refused = Some(why.clone());
                    self.outbox.settle(&entry)?;
                    out.refused.push((entry.seq, why));
                }
                Delivery::Retry(why) => {
                    let wait = i64::try_from(self.backoff.next_delay()).unwrap_or(300);
                    self.next_attempt = now.saturating_add(wait);
                    out.waiting = Some(why);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// When something is next due: a period end, a sample, or a retry.
    pub fn next_wake(&self) -> Result<i64, AgentError> {
        let now = self.clock.now_i64()?;
        let sample = now.saturating_add(i64::try_from(self.config.sample_secs).unwrap_or(60));
        let mut at = self.next_end()?.min(sample);
        if self.next_attempt > now {
            at = at.min(self.next_attempt);
        }
        Ok(at.max(now.saturating_add(1)))
    }
}
