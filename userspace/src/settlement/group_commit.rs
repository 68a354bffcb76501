//! Group commit for node reports. Requests verify their signatures in parallel and queue here;
//! one writer thread takes every report queued while it was busy (at most [`MAX_BATCH`]),
//! decides the rules that depend on stored state for them in arrival order, each seeing the
//! batch's earlier reports, inserts the accepted ones in one transaction, and only after that
//! commit answers each request. One fsync then covers a whole batch instead of one report.
//!
//! No linger: the writer commits as soon as it has taken what is queued. While one commit
//! is on disk the next requests queue behind it, so batches grow with the load by themselves
//! (one report when the intake is idle, hundreds under a flood), and an idle intake answers
//! within one fsync instead of one fsync plus a wait for company that may not come. A linger
//! would only add latency: when reports arrive faster than the writer commits, the queue is
//! never empty when it looks.
//!
//! A batch is all or nothing: when any store operation in it fails, it is rolled back, every
//! request in it is answered [`Verdict::Unavailable`] (never a false acceptance), and unless
//! the batch could not even begin, the writer re-reads the histories from the store before
//! the next one, so what it remembers is what is durable.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use log::warn;
use tokio::sync::{mpsc, oneshot};

use crate::{
    settlement::admission::{self as admit, Admission, History, Limits, Rejection},
    settlement::nodes::Node,
    settlement::report::{Period, Report},
    store::{ReportBatch, Store, StoreError},
};

/// Most reports one transaction holds: enough to amortise the fsync many times over, small
/// enough that one batch's answers are not held back long by its own writing.
pub const MAX_BATCH: usize = 1024;

/// Reports queued for the writer at most; beyond it, requests wait for room (their HTTP
/// request timeout still applies), so a flood is held in the listener's connection limits
/// rather than in memory.
const QUEUE: usize = 4 * MAX_BATCH;

/// A report whose signature verified, ready for the rules that depend on stored state.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The report as received.
    pub report: Report,
    /// The registered node that signed it (its capacity and subscriber).
    pub node: Node,
    /// Its period, already read.
    pub period: Period,
    /// Unix time the request arrived: the clock of the rules and the report's `received_at`.
    pub now: i64,
}

/// What the writer decided for one report; it is told only once the batch is durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// New, and now in the store.
    Accepted,
    /// Exactly this report is in the store already (perhaps from earlier in the same batch).
    AlreadyRecorded,
    /// Refused by an admission rule; nothing recorded.
    Rejected(Rejection),
    /// Nothing recorded: the store failed (the reason is logged); the node should retry.
    Unavailable,
}

/// Where a verdict goes: called once, by the writer, after the batch's commit (or failure).
pub type Reply = Box<dyn FnOnce(Verdict) + Send>;

struct Job {
    item: Verified,
    reply: Reply,
}

/// What the writer has done and has to do, for tuning, the benchmark and tests.
#[derive(Debug, Default)]
struct BatchStats {
    /// Batches written (committed or failed).
    batches: AtomicU64,
    /// Reports in those batches.
    reports: AtomicU64,
    /// Reports queued or in the batch being written, not answered yet.
    waiting: AtomicU64,
}

/// A reading of the writer's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Batches written (committed or failed).
    pub batches: u64,
    /// Reports in those batches.
    pub reports: u64,
    /// Reports queued or in the batch being written, not answered yet.
    pub waiting: u64,
}

/// The submitting side of the group commit; every request holds a clone.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
    stats: Arc<BatchStats>,
}

/// The writing side: the only one that decides on stored state. [`Writer::run`] it on its
/// own thread.
pub struct Writer {
    queue: mpsc::Receiver<Job>,
    store: Arc<Mutex<Store>>,
    /// What is durable of each node's history (never a report of an uncommitted batch).
    histories: HashMap<String, History>,
    /// Set when a failed batch left `histories` unsure: they are read again from the store
    /// before anything else is decided.
    stale: bool,
    /// Failed batches since the last warning, and when that was.
    failures: u64,
    last_warning: Option<Instant>,
    limits: Limits,
    stats: Arc<BatchStats>,
}

impl GroupCommit {
    /// A queue and its writer, not started (tests fill the queue before a batch is written).
    pub fn new(
        store: Arc<Mutex<Store>>,
        histories: HashMap<String, History>,
        limits: Limits,
    ) -> (GroupCommit, Writer) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(BatchStats::default());
        (
            GroupCommit {
                queue: tx,
                stats: stats.clone(),
            },
            Writer {
                queue: rx,
                store,
                histories,
                stale: false,
                failures: 0,
                last_warning: None,
                limits,
                stats,
            },
        )
    }

    /// A queue whose writer runs on its own thread until every [`GroupCommit`] is dropped.
    pub fn start(
        store: Arc<Mutex<Store>>,
        histories: HashMap<String, History>,
        limits: Limits,
    ) -> std::io::Result<GroupCommit> {
        let (commits, writer) = GroupCommit::new(store, histories, limits);
        std::thread::Builder::new()
            .name("quid-reports".into())
            .spawn(move || writer.run())?;
        Ok(commits)
    }

    /// Queues `item` from a thread that may block (a verifier): `reply` is called once the
    /// batch holding it is committed (or has failed), or at once with
    /// [`Verdict::Unavailable`] if the writer is gone. Waits while the queue is full.
    pub fn blocking_enqueue(&self, item: Verified, reply: Reply) {
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(job)) = self.queue.blocking_send(Job { item, reply }) {
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            (job.reply)(Verdict::Unavailable);
        }
    }

    /// Queues `item` from async code and waits for its verdict.
    pub async fn submit(&self, item: Verified) -> Verdict {
        let (reply, answer) = oneshot::channel();
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            item,
            reply: Box::new(move |v| {
                // The requester may have given up; the verdict stands either way.
                let _ = reply.send(v);
            }),
        };
        if let Err(mpsc::error::SendError(job)) = self.queue.send(job).await {
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            (job.reply)(Verdict::Unavailable);
        }
        // No verdict means the writer stopped before deciding: nothing was recorded.
        answer.await.unwrap_or(Verdict::Unavailable)
    }

    /// Batches written, the reports they held, and the reports waiting now.
    pub fn stats(&self) -> Stats {
        Stats {
            batches: self.stats.batches.load(Ordering::Relaxed),
            reports: self.stats.reports.load(Ordering::Relaxed),
            waiting: self.stats.waiting.load(Ordering::Relaxed),
        }
    }
}

impl Writer {
    /// Writes batches until every [`GroupCommit`] is dropped.
    pub fn run(mut self) {
        while self.next_batch() {}
    }

    /// Waits for a report, takes every report queued behind it (up to [`MAX_BATCH`]), writes
    /// them as one batch and answers each; `false` once the queue is closed and empty. Must
    /// not be called from async code (it blocks).
    pub fn next_batch(&mut self) -> bool {
        let Some(first) = self.queue.blocking_recv() else {
            return false;
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match self.queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let verdicts = self.write(&jobs);
        let n = u64::try_from(jobs.len()).unwrap_or(u64::MAX);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.reports.fetch_add(n, Ordering::Relaxed);
        for (job, verdict) in jobs.into_iter().zip(verdicts) {
            // A requester that gave up (its request timed out) is no longer listening; its
            // report stays recorded and a resend is answered `already_recorded`.
            (job.reply)(verdict);
        }
        self.stats.waiting.fetch_sub(n, Ordering::Relaxed);
        true
    }

    /// Decides, inserts and commits one batch: one verdict per job, in order.
    fn write(&mut self, jobs: &[Job]) -> Vec<Verdict> {
        // A thread that panicked while holding the store left no transaction open (a dropped
        // transaction rolls back), so the store is still usable.
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        if self.stale {
            match store.report_histories() {
                Ok(h) => {
                    self.histories = h;
                    self.stale = false;
                }
                Err(e) => {
                    warn!(
                        "{} reports not recorded: the report histories cannot be read from the \
                         store ({e}); nodes will retry",
                        jobs.len()
                    );
                    return vec![Verdict::Unavailable; jobs.len()];
                }
            }
        }
        match decide_and_commit(&store, &self.histories, self.limits, jobs) {
            Ok((verdicts, touched)) => {
                self.histories.extend(touched);
                verdicts
            }
            Err(failed) => {
                self.failures += 1;
                let now = Instant::now();
                // One line a second at most: a store that keeps failing under a flood of
                // retries must not fill the log.
                if self
                    .last_warning
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                {
                    warn!(
                        "{} batch(es) of reports not recorded, each report answered 503, the \
                         last one of {} reports: {}; nodes will retry (check the disk and the \
                         store file if this repeats)",
                        self.failures,
                        jobs.len(),
                        failed.error
                    );
                    self.last_warning = Some(now);
                    self.failures = 0;
                }
                // Once the transaction was open, the failure may have come anywhere, even in
                // a commit that reached the disk after all: read back what is durable before
                // deciding anything else. (A batch that could not even begin changed nothing.)
                if failed.began {
                    self.stale = true;
                }
                vec![Verdict::Unavailable; jobs.len()]
            }
        }
    }
}

/// Why a batch failed, and whether its transaction had begun.
struct Failed {
    error: StoreError,
    began: bool,
}

/// The batch's verdicts and the histories of the nodes it changed, or the error that failed
/// it (the transaction is then rolled back as it drops).
fn decide_and_commit(
    store: &Store,
    committed: &HashMap<String, History>,
    limits: Limits,
    jobs: &[Job],
) -> Result<(Vec<Verdict>, HashMap<String, History>), Failed> {
    let batch = store.begin_reports().map_err(|error| Failed {
        error,
        began: false,
    })?;
    let failed = |error| Failed { error, began: true };
    // The histories as this batch leaves them, over the committed ones: a report sees the
    // reports before it in the same batch.
    let mut touched: HashMap<String, History> = HashMap::new();
    let mut verdicts = Vec::with_capacity(jobs.len());
    for job in jobs {
        verdicts.push(
            decide(store, &batch, committed, &mut touched, limits, &job.item).map_err(failed)?,
        );
    }
    batch.commit().map_err(failed)?;
    Ok((verdicts, touched))
}

/// The rules that depend on stored state for one verified report, and its insert if it is
/// admitted.
fn decide(
    store: &Store,
    batch: &ReportBatch<'_>,
    committed: &HashMap<String, History>,
    touched: &mut HashMap<String, History>,
    limits: Limits,
    item: &Verified,
) -> Result<Verdict, StoreError> {
    let r = &item.report;
    let history = touched.get(&r.node).or_else(|| committed.get(&r.node));
    let metered_from = metered_from(store, &item.node)?;
    match admit::check(
        r,
        &item.node,
        item.period,
        history,
        item.now,
        limits,
        metered_from,
    ) {
        // An older report resent: the same signature bytes under its sequence number (the
        // look-up sees this batch's own inserts too).
        Err(Rejection::StaleSequence { .. }) if recorded(store, r)? => Ok(Verdict::AlreadyRecorded),
        Err(rejection) => Ok(Verdict::Rejected(rejection)),
        Ok(Admission::AlreadyRecorded) => Ok(Verdict::AlreadyRecorded),
        Ok(Admission::Accept(period)) => {
            batch.insert(r, period, item.now, &item.node.subscriber)?;
            let mut h = history.cloned().unwrap_or_default();
            h.accept(r, period);
            touched.insert(r.node.clone(), h);
            Ok(Verdict::Accepted)
        }
    }
}

/// Whether exactly this report is in the store (or earlier in the batch): the same signature
/// bytes under its sequence number, whatever the case of its hex letters.
fn recorded(store: &Store, r: &Report) -> Result<bool, StoreError> {
    let Ok(mine) = r.signature_bytes() else {
        return Ok(false);
    };
    Ok(store.report_signature(&r.node, r.seq)? == Some(mine))
}

/// The earliest time the books back for `node`: the later of when quid first saw it and
/// when its subscriber was first metered (`None`: never metered).
fn metered_from(store: &Store, node: &Node) -> Result<Option<i64>, StoreError> {
    let seen = store.node_first_seen(&node.id)?;
    let since = store.metered_since(&node.subscriber)?;
    Ok(seen.zip(since).map(|(a, b)| a.max(b)))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::{settlement::nodes::Nodes, settlement::report::rfc3339, store::Changes};

    const NOW: i64 = 1_795_600_000;
    /// When the books started metering both nodes' subscribers.
    const SINCE: i64 = NOW - 86_400;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn nodes() -> Nodes {
        Nodes::from_iter(["a", "b"].into_iter().zip([1u8, 2]).map(|(id, seed)| Node {
            id: id.into(),
            subscriber: format!("sub-{id}"),
            key: key(seed).verifying_key(),
            cpu_cores: 4,
            storage_bytes: 1_000,
            max_watts: 10,
        }))
    }

    /// A store in which both nodes were seen and their subscribers metered since SINCE.
    fn store(dir: &std::path::Path) -> Store {
        let mut s = Store::open(dir).unwrap();
        s.nodes_seen(["a", "b"].into_iter(), SINCE).unwrap();
        let started = ["sub-a".to_owned(), "sub-b".to_owned()];
        s.commit_with(
            &[],
            &[],
            &Changes {
                started: &started,
                at: u64::try_from(SINCE).unwrap(),
                ..Changes::default()
            },
        )
        .unwrap();
        s
    }

    /// Report `seq` of `node` covering hour `hour` after SINCE, signed; `cpu` tells copies
    /// with the same sequence number apart.
    fn report(node: &str, seq: u64, hour: i64, cpu: u64) -> Report {
        let start = SINCE + hour * 3600;
        let mut r = Report {
            node: node.into(),
            seq,
            period_start: rfc3339(start),
            period_end: rfc3339(start + 3600),
            cpu_core_micros: cpu,
            storage_byte_seconds: 0,
            energy_microjoules: 0,
            energy_source: None,
            grid_bytes_sent: 1,
            grid_bytes_received: 2,
            signature: String::new(),
        };
        r.sign(&key(if node == "a" { 1 } else { 2 })).unwrap();
        r
    }

    fn verified(nodes: &Nodes, r: &Report) -> Verified {
        let (node, period) = admit::authenticate(r, nodes).unwrap();
        Verified {
            report: r.clone(),
            node: node.clone(),
            period,
            now: NOW,
        }
    }

    /// Queues every report, then writes exactly one batch (all of them: the queue holds
    /// nothing else) and returns the verdicts in order.
    fn one_batch(
        commits: &GroupCommit,
        writer: &mut Writer,
        nodes: &Nodes,
        reports: &[Report],
    ) -> Vec<Verdict> {
        let answers: Vec<_> = reports
            .iter()
            .map(|r| {
                let (tx, rx) = std::sync::mpsc::channel();
                commits
                    .blocking_enqueue(verified(nodes, r), Box::new(move |v| tx.send(v).unwrap()));
                rx
            })
            .collect();
        let before = commits.stats();
        assert!(writer.next_batch());
        let after = commits.stats();
        assert_eq!(after.batches, before.batches + 1, "one batch");
        assert_eq!(
            after.reports,
            before.reports + u64::try_from(reports.len()).unwrap()
        );
        assert_eq!(after.waiting, 0);
        answers.into_iter().map(|a| a.recv().unwrap()).collect()
    }

    fn code(v: &Verdict) -> &'static str {
        match v {
            Verdict::Accepted => "accepted",
            Verdict::AlreadyRecorded => "already_recorded",
            Verdict::Rejected(r) => r.code(),
            Verdict::Unavailable => "unavailable",
        }
    }

    #[test]
    fn one_batch_decides_copies_replays_and_order_as_if_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = nodes();
        let store = Arc::new(Mutex::new(store(dir.path())));
        let (commits, mut writer) =
            GroupCommit::new(store.clone(), HashMap::new(), Limits::default());
        let a1 = report("a", 1, 0, 10);
        let mut a1_shouted = a1.clone();
        a1_shouted.signature = a1.signature.to_uppercase();
        let batch = [
            a1.clone(),
            // The same report again, and with its signature in capitals: one report.
            a1.clone(),
            a1_shouted,
            // Another report under the accepted sequence number: a conflict, not a copy.
            report("a", 1, 0, 11),
            report("a", 2, 1, 10),
            // The older report resent after a newer one: found in the batch's own inserts.
            a1.clone(),
            // Overlapping the period just accepted in this batch.
            report("a", 3, 1, 10),
            report("b", 1, 0, 10),
            report("b", 1, 0, 10),
            // Capacity is per report: 4 cores for an hour, and one microsecond more.
            report("b", 2, 1, 4 * 3_600_000_000),
            report("b", 3, 2, 4 * 3_600_000_000 + 1),
        ];
        let verdicts = one_batch(&commits, &mut writer, &nodes, &batch);
        assert_eq!(
            verdicts.iter().map(code).collect::<Vec<_>>(),
            [
                "accepted",
                "already_recorded",
                "already_recorded",
                "stale_sequence",
                "accepted",
                "already_recorded",
                "overlapping_period",
                "accepted",
                "already_recorded",
                "accepted",
                "exceeds_capacity",
            ]
        );
        // Stored exactly once each: a#1, a#2, b#1, b#2.
        let s = store.lock().unwrap();
        assert_eq!(s.report_count().unwrap(), 4);
        assert_eq!(
            s.report_signature("a", 1).unwrap(),
            Some(a1.signature_bytes().unwrap())
        );
        drop(s);
        // The next batch starts from what the last one committed.
        let verdicts = one_batch(
            &commits,
            &mut writer,
            &nodes,
            &[
                report("a", 2, 1, 10),
                report("a", 2, 5, 10),
                report("b", 3, 2, 1),
            ],
        );
        assert_eq!(
            verdicts.iter().map(code).collect::<Vec<_>>(),
            ["already_recorded", "stale_sequence", "accepted"]
        );
    }

    #[test]
    fn a_failed_batch_answers_every_report_unavailable_records_none_and_relearns_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = nodes();
        let mut s = store(dir.path());
        // The store holds a#1, but the writer starts without knowing it: its insert of
        // another a#1 then fails on the table's key, half-way through the batch.
        let a1 = report("a", 1, 0, 10);
        s.insert_report(&a1, a1.period().unwrap(), NOW, "sub-a")
            .unwrap();
        let store = Arc::new(Mutex::new(s));
        let (commits, mut writer) =
            GroupCommit::new(store.clone(), HashMap::new(), Limits::default());
        let b1 = report("b", 1, 0, 10);
        let verdicts = one_batch(
            &commits,
            &mut writer,
            &nodes,
            &[b1.clone(), report("a", 1, 0, 11), report("b", 2, 1, 10)],
        );
        assert_eq!(verdicts, vec![Verdict::Unavailable; 3]);
        assert_eq!(store.lock().unwrap().report_count().unwrap(), 1);
        // Resent, b#1 is accepted (it was never recorded, so never `already_recorded`), and
        // the writer now knows a#1 from the store.
        let verdicts = one_batch(
            &commits,
            &mut writer,
            &nodes,
            &[b1, report("a", 1, 0, 11), a1],
        );
        assert_eq!(
            verdicts.iter().map(code).collect::<Vec<_>>(),
            ["accepted", "stale_sequence", "already_recorded"]
        );
        assert_eq!(store.lock().unwrap().report_count().unwrap(), 2);
    }

    #[test]
    fn the_writer_stops_when_the_intake_is_gone_and_a_late_request_is_answered_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = nodes();
        let store = Arc::new(Mutex::new(store(dir.path())));
        let (commits, writer) = GroupCommit::new(store, HashMap::new(), Limits::default());
        drop(writer);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let v = rt.block_on(commits.submit(verified(&nodes, &report("a", 1, 0, 10))));
        assert_eq!(v, Verdict::Unavailable);
    }
}
