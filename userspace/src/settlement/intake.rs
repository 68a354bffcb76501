//! `POST /v1/reports`: the report intake. Each request is size-limited (by the HTTP layer),
//! charged to its source's and then its node's budget (`rate_budget.rs`), read and its
//! signature verified by the verifier threads, many at once (`verifiers.rs`), then queued to
//! the group commit (`group_commit.rs`), which decides the rules that depend on stored state
//! and answers only once the transaction holding the report is durable. Refusals answer 4xx
//! with a machine-readable reason, are counted per reason and logged (briefly, and at most a
//! few lines a second), and change nothing; a report the store could not record answers 503
//! with `Retry-After`.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, State},
    http::{Extensions, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use log::warn;
use serde_json::json;

use crate::{
    clock::Clock,
    settlement::admission::{Limits, Reason, Rejection},
    settlement::group_commit::{GroupCommit, Stats, Verdict},
    settlement::nodes::Nodes,
    settlement::rate_budget::RateBudgets,
    settlement::report::quote,
    settlement::verifiers::{Outcome, Unread, Verifiers},
    store::{Store, StoreError},
};

pub use crate::settlement::rate_budget::Budget;

/// Seconds a node is asked to wait before resending a report the store could not record.
const RETRY_AFTER_SECS: &str = "1";

/// Why the intake could not start.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Reading what the store holds, or recording the registered nodes, failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The clock is unusable.
    #[error(transparent)]
    Clock(#[from] crate::clock::ClockError),
    /// The writer or verifier threads could not be started.
    #[error(
        "cannot start the report intake's threads: {0}; check the process and memory limits \
         (ulimit -u, systemd TasksMax)"
    )]
    Threads(std::io::Error),
}

/// Outcomes so far, for the metrics.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Per outcome: accepted, already_recorded, rejected, rate_limited, store_error.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Per rejection reason.
    pub rejections: BTreeMap<&'static str, u64>,
}

/// Refusal log lines written per second at most; the rest are counted and summarised.
const LOG_LINES_PER_SEC: u32 = 10;

/// Refusal logging with a ceiling: at most [`LOG_LINES_PER_SEC`] lines a second, then one
/// line saying how many were suppressed.
#[derive(Debug)]
struct LogLimit {
    window: Instant,
    written: u32,
    suppressed: u64,
}

impl LogLimit {
    fn new() -> LogLimit {
        LogLimit {
            window: Instant::now(),
            written: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be written now (a summary of suppressed lines goes first).
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                warn!(
                    "{} more report refusal log lines suppressed (at most {LOG_LINES_PER_SEC} a second); \
                     quid_report_rejections_total counts every refusal",
                    self.suppressed
                );
            }
            self.window = now;
            self.written = 0;
            self.suppressed = 0;
        }
        if self.written < LOG_LINES_PER_SEC {
            self.written += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Everything the intake needs; shared behind a mutex that is held only for the budgets and
/// the counts, never while a signature is verified or a batch is written.
pub struct Intake {
    /// Shared, so settlement can use the registered nodes without copying them.
    nodes: Arc<Nodes>,
    /// Shared with the group commit's writer; here only to record nodes as seen.
    store: Arc<Mutex<Store>>,
    /// Held for its counts; the verifiers hand reports to it.
    commits: GroupCommit,
    verifiers: Verifiers,
    /// Shared with the verifiers, which charge them once a body is read.
    budgets: Arc<Mutex<RateBudgets>>,
    log: LogLimit,
    /// Outcomes and rejection reasons so far.
    pub counts: Counts,
    clock: Clock,
}

/// An answer: the status and the JSON body.
type Answer = (StatusCode, serde_json::Value);

impl Intake {
    /// An intake resuming from what the store already holds; starts the group commit's
    /// writer thread.
    pub fn new(
        nodes: Nodes,
        mut store: Store,
        limits: Limits,
        per_node: Budget,
        per_source: Budget,
    ) -> Result<Intake, IntakeError> {
        let histories = store.report_histories()?;
        store.nodes_seen(
            nodes.by_id.keys().map(String::as_str),
            Clock::system().now_i64()?,
        )?;
        let mut counts = Counts::default();
        for outcome in [
            "accepted",
            "already_recorded",
            "rejected",
            "rate_limited",
            "store_error",
        ] {
            counts.outcomes.insert(outcome, 0);
        }
        for code in Reason::ALL.map(Reason::as_str) {
            counts.rejections.insert(code, 0);
        }
        let store = Arc::new(Mutex::new(store));
        let commits =
            GroupCommit::start(store.clone(), histories, limits).map_err(IntakeError::Threads)?;
        let budgets = Arc::new(Mutex::new(RateBudgets::new(per_node, per_source)));
        // One verifier per core: signature checks are the intake's main CPU work.
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let verifiers = Verifiers::start(cores, budgets.clone(), commits.clone())
            .map_err(IntakeError::Threads)?;
        Ok(Intake {
            nodes: Arc::new(nodes),
            store,
            commits,
            verifiers,
            budgets,
            log: LogLimit::new(),
            counts,
            clock: Clock::system(),
        })
    }

    /// The same intake reading time from `clock` (tests run it on a manual clock).
    pub fn with_clock(mut self, clock: Clock) -> Intake {
        self.clock = clock;
        self
    }

    /// Replaces the registered nodes (a reloaded nodes file); histories are kept. A node new
    /// to the store is recorded as seen now: it cannot report for earlier time.
    pub fn set_nodes(&mut self, nodes: Nodes) -> Result<(), StoreError> {
        let now = self.clock.now_i64()?;
        // A thread that panicked holding the store left no transaction open: still usable.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .nodes_seen(nodes.by_id.keys().map(String::as_str), now)?;
        self.nodes = Arc::new(nodes);
        Ok(())
    }

    /// The registered nodes.
    pub fn nodes(&self) -> Arc<Nodes> {
        self.nodes.clone()
    }

    /// Batches the group commit has written, the reports they held, and the reports
    /// waiting for it now.
    pub fn batch_stats(&self) -> Stats {
        self.commits.stats()
    }

    fn count(&mut self, outcome: &'static str) {
        *self.counts.outcomes.entry(outcome).or_default() += 1;
    }

    fn rate_limited(&mut self, message: &str) -> Answer {
        self.count("rate_limited");
        (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"status": "refused", "reason": "rate_limited", "message": message}),
        )
    }

    /// The answer for what the group commit decided about report `seq` of `node`.
    fn verdict(&mut self, node: &str, seq: u64, verdict: Verdict) -> Answer {
        match verdict {
            Verdict::Accepted => {
                self.count("accepted");
                (
                    StatusCode::OK,
                    json!({"status": "accepted", "node": node, "seq": seq}),
                )
            }
            Verdict::AlreadyRecorded => {
                self.count("already_recorded");
                (
                    StatusCode::OK,
                    json!({"status": "already_recorded", "node": node, "seq": seq}),
                )
            }
            Verdict::Rejected(rejection) => self.reject(Some((node, seq)), rejection),
            // The writer logged why, once per batch rather than once per report.
            Verdict::Unavailable => self.store_unavailable(),
        }
    }

    /// The answer when the report could not be recorded: nothing recorded, retry.
    fn store_unavailable(&mut self) -> Answer {
        self.count("store_error");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "refused", "reason": "store_unavailable",
                   "message": "the report could not be recorded; send it again after the Retry-After delay"}),
        )
    }

    /// The answer for a refusal of report `who` (node, seq; `None` when unreadable).
    fn reject(&mut self, who: Option<(&str, u64)>, rejection: Rejection) -> Answer {
        let code = rejection.code();
        self.count("rejected");
        *self.counts.rejections.entry(code).or_default() += 1;
        if self.log.allow() {
            // The id is quoted short: a hostile body must not write more log than it sent.
            let who = who.map_or("?".to_owned(), |(node, seq)| {
                format!("{}#{seq}", quote(node))
            });
            warn!("report {who} refused ({code}): {rejection}");
        }
        let status = match rejection {
            Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
            Rejection::BadSignature => StatusCode::UNAUTHORIZED,
            Rejection::UnknownNode(_) => StatusCode::FORBIDDEN,
            Rejection::StaleSequence { .. } | Rejection::OverlappingPeriod => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        (
            status,
            json!({"status": "refused", "reason": code, "message": rejection.to_string()}),
        )
    }
}

/// The intake's routes, with the body limit.
pub fn router(intake: Arc<Mutex<Intake>>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/reports", post(receive))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(intake)
}

async fn receive(
    State(intake): State<Arc<Mutex<Intake>>>,
    extensions: Extensions,
    body: Bytes,
) -> Response {
    // serve.rs puts the peer address on every request; without one (a router used on its
    // own), all requests share the unspecified address's budget.
    let source = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |c| c.0.ip());
    let (status, answer) = handle(&intake, body, source).await;
    let mut response = (status, axum::Json(answer)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    response
}

/// One request: the source's budget, the verifiers (signature, node budget, group commit),
/// the answer. The intake's lock is taken only for short steps and never held across an
/// await.
async fn handle(intake: &Mutex<Intake>, body: Bytes, source: IpAddr) -> Answer {
    // A poisoned lock or a failed step: nothing was recorded, so the node may retry.
    let unavailable = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "refused", "reason": "unavailable",
                   "message": "the intake is unavailable; send the report again after the Retry-After delay"}),
        )
    };
    let (unread, verifiers) = {
        let Ok(mut i) = intake.lock() else {
            return unavailable();
        };
        // A source that keeps sending what does not authenticate is refused before any
        // parsing or signature check: its flood costs little and costs nobody else.
        let has_budget = i
            .budgets
            .lock()
            .is_ok_and(|mut b| b.source_has_budget(source));
        if !has_budget {
            return i.rate_limited(
                "too many unauthenticated or refused requests from this address; retry later",
            );
        }
        let now = match i.clock.now_i64() {
            Ok(now) => now,
            Err(e) => {
                warn!("report intake: {e}");
                return unavailable();
            }
        };
        let unread = Unread {
            body,
            source,
            now,
            nodes: i.nodes.clone(),
        };
        (unread, i.verifiers.clone())
    };
    let outcome = verifiers.check(unread).await;
    // A lock poisoned since then answers 503 even for a recorded report: the resend is
    // answered `already_recorded`, never the other way round.
    let Ok(mut i) = intake.lock() else {
        return unavailable();
    };
    match outcome {
        Outcome::Refused(who, rejection) => {
            i.reject(who.as_ref().map(|(n, s)| (n.as_str(), *s)), rejection)
        }
        Outcome::RateLimited => i.rate_limited("too many reports from this node; retry later"),
        Outcome::Unavailable => i.store_unavailable(),
        Outcome::Decided { node, seq, verdict } => i.verdict(&node, seq, verdict),
    }
}
