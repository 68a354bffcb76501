//! `POST /v1/reports`: the report intake. Each request is size-limited (by the HTTP layer),
//! put through the admission rules, and acknowledged only once the report is durable in the
//! store. Refusals answer 4xx with a machine-readable reason, are counted per reason and
//! logged (briefly, and at most a few lines a second), and change nothing. The budgets per
//! source and per node are in `rate_budget.rs`.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, State},
    http::{Extensions, StatusCode},
    routing::post,
};
use log::warn;
use serde_json::json;

use crate::{
    clock::Clock,
    settlement::admission::{self as admit, Admission, History, Limits, Reason, Rejection},
    settlement::nodes::Nodes,
    settlement::rate_budget::RateBudgets,
    settlement::report::{Report, quote},
    store::Store,
};

pub use crate::settlement::rate_budget::Budget;

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

/// Everything the intake needs; shared behind a mutex (admission and the durable insert of one
/// report happen as one step, so two copies of a report can never both be accepted).
pub struct Intake {
    /// Shared, so settlement can use the registered nodes without copying them.
    nodes: Arc<Nodes>,
    histories: HashMap<String, History>,
    store: Store,
    limits: Limits,
    budgets: RateBudgets,
    log: LogLimit,
    /// Outcomes and rejection reasons so far.
    pub counts: Counts,
    clock: Clock,
}

impl Intake {
    /// An intake resuming from what the store already holds.
    pub fn new(
        nodes: Nodes,
        store: Store,
        limits: Limits,
        per_node: Budget,
        per_source: Budget,
    ) -> Result<Intake, crate::store::StoreError> {
        let mut store = store;
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
        Ok(Intake {
            nodes: Arc::new(nodes),
            histories,
            store,
            limits,
            budgets: RateBudgets::new(per_node, per_source),
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
    pub fn set_nodes(&mut self, nodes: Nodes) -> Result<(), crate::store::StoreError> {
        self.store.nodes_seen(
            nodes.by_id.keys().map(String::as_str),
            self.clock.now_i64()?,
        )?;
        self.nodes = Arc::new(nodes);
        Ok(())
    }

    /// The earliest time the books back for `node`: the later of when quid first saw it and
    /// when its subscriber was first metered (`Ok(None)`: never metered or not registered).
    fn metered_from(&self, node: &str) -> Result<Option<i64>, crate::store::StoreError> {
        let Some(n) = self.nodes.by_id.get(node) else {
            return Ok(None);
        };
        let seen = self.store.node_first_seen(node)?;
        let since = self.store.metered_since(&n.subscriber)?;
        Ok(seen.zip(since).map(|(a, b)| a.max(b)))
    }

    /// The registered nodes.
    pub fn nodes(&self) -> Arc<Nodes> {
        self.nodes.clone()
    }

    fn count(&mut self, outcome: &'static str) {
        *self.counts.outcomes.entry(outcome).or_default() += 1;
    }

    fn rate_limited(&mut self, message: &str) -> (StatusCode, serde_json::Value) {
        self.count("rate_limited");
        (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"status": "refused", "reason": "rate_limited", "message": message}),
        )
    }

    /// Handles one request body from `source` at unix time `now`: the status and the JSON
    /// answer.
    pub fn handle(
        &mut self,
        body: &[u8],
        now: i64,
        source: IpAddr,
    ) -> (StatusCode, serde_json::Value) {
        // A source that keeps sending what does not authenticate is refused before any
        // parsing or signature check: its flood costs little and costs nobody else.
        if !self.budgets.source_has_budget(source) {
            return self.rate_limited(
                "too many unauthenticated or refused requests from this address; retry later",
            );
        }
        let report = match crate::settlement::report::parse(body) {
            Ok(r) => r,
            Err(e) => {
                self.budgets.charge_source(source);
                return self.reject(None, Rejection::Malformed(e.to_string()));
            }
        };
        let (node, period) = match admit::authenticate(&report, &self.nodes) {
            Ok((node, period)) => (node.clone(), period),
            Err(rejection) => {
                self.budgets.charge_source(source);
                return self.reject(Some(&report), rejection);
            }
        };
        if !self.budgets.allow_node(&report.node) {
            return self.rate_limited("too many reports from this node; retry later");
        }
        let metered_from = match self.metered_from(&report.node) {
            Ok(t) => t,
            Err(e) => return self.store_unavailable(&report, &e),
        };
        let history = self.histories.get(&report.node);
        match admit::check(
            &report,
            &node,
            period,
            history,
            now,
            self.limits,
            metered_from,
        ) {
            Err(Rejection::StaleSequence { .. }) if self.recorded(&report) => {
                self.count("already_recorded");
                (
                    StatusCode::OK,
                    json!({"status": "already_recorded", "node": report.node, "seq": report.seq}),
                )
            }
            Err(rejection) => self.reject(Some(&report), rejection),
            Ok(Admission::AlreadyRecorded) => {
                self.count("already_recorded");
                (
                    StatusCode::OK,
                    json!({"status": "already_recorded", "node": report.node, "seq": report.seq}),
                )
            }
            Ok(Admission::Accept(period)) => {
                let subscriber = self
                    .nodes
                    .by_id
                    .get(&report.node)
                    .map(|n| n.subscriber.clone())
                    .unwrap_or_default();
                if let Err(e) = self.store.insert_report(&report, period, now, &subscriber) {
                    // Not durable, so not acknowledged: the node retries the same report.
                    return self.store_unavailable(&report, &e);
                }
                self.histories
                    .entry(report.node.clone())
                    .or_default()
                    .accept(&report, period);
                self.count("accepted");
                (
                    StatusCode::OK,
                    json!({"status": "accepted", "node": report.node, "seq": report.seq}),
                )
            }
        }
    }

    /// The answer when the store cannot be read or written: nothing recorded, retry.
    fn store_unavailable(
        &mut self,
        report: &Report,
        e: &crate::store::StoreError,
    ) -> (StatusCode, serde_json::Value) {
        warn!(
            "report {}#{} not recorded: {e}",
            quote(&report.node),
            report.seq
        );
        self.count("store_error");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "refused", "reason": "store_unavailable",
                   "message": "the report could not be recorded; retry later"}),
        )
    }

    /// Whether exactly this report (an older one, resent) is in the store: the same
    /// signature bytes, whatever the case of its hex letters.
    fn recorded(&self, report: &Report) -> bool {
        let Ok(mine) = report.signature_bytes() else {
            return false;
        };
        self.store
            .report_signature(&report.node, report.seq)
            .is_ok_and(|s| s == Some(mine))
    }

    fn reject(
        &mut self,
        report: Option<&Report>,
        rejection: Rejection,
    ) -> (StatusCode, serde_json::Value) {
        let code = rejection.code();
        self.count("rejected");
        *self.counts.rejections.entry(code).or_default() += 1;
        if self.log.allow() {
            // The id is quoted short: a hostile body must not write more log than it sent.
            let who = report.map_or("?".to_owned(), |r| format!("{}#{}", quote(&r.node), r.seq));
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
) -> (StatusCode, axum::Json<serde_json::Value>) {
    // serve.rs puts the peer address on every request; without one (a router used on its
    // own), all requests share the unspecified address's budget.
    let source = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |c| c.0.ip());
    // The commit blocks: keep it off the async workers.
    // A poisoned lock or a failed task: nothing was recorded, so the node may retry.
    let unavailable = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "refused", "reason": "unavailable", "message": "retry later"}),
        )
    };
    let answer = tokio::task::spawn_blocking(move || match intake.lock() {
        Ok(mut i) => match i.clock.now_i64() {
            Ok(now) => i.handle(&body, now, source),
            Err(e) => {
                warn!("report intake: {e}");
                unavailable()
            }
        },
        Err(_) => unavailable(),
    })
    .await
    .unwrap_or_else(|_| unavailable());
    (answer.0, axum::Json(answer.1))
}
