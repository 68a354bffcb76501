//! The intake's signature checks, in parallel and off the async runtime: one thread per core
//! reads report bodies, verifies the node's signature, charges the rate budgets, and hands
//! each verified report straight to the group commit, whose writer answers the request.
//!
//! Threads of their own rather than the runtime's blocking pool: under load a verifier
//! drains its queue without sleeping between reports, and a report goes from verifier to
//! writer without passing back through the async runtime, so it costs no thread wake-up on
//! its way (on a 2-core virtual machine a wake-up costs about as much as the rest of the
//! intake's work for the report).

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
};

use axum::body::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::{
    settlement::admission::{self as admit, Rejection},
    settlement::group_commit::{GroupCommit, Verdict, Verified},
    settlement::nodes::Nodes,
    settlement::rate_budget::RateBudgets,
};

/// Bodies queued for the verifiers at most; beyond it, requests wait for room.
const QUEUE: usize = 4096;

/// A request body to read and verify.
pub struct Unread {
    /// The body as received.
    pub body: Bytes,
    /// Who sent it: what an unauthenticated body is charged to.
    pub source: IpAddr,
    /// Unix time the request arrived.
    pub now: i64,
    /// The registered nodes when it arrived.
    pub nodes: Arc<Nodes>,
}

/// What became of a body.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Refused before it reached the group commit (unreadable, unknown node, bad
    /// signature), with the node and sequence number when it could be read.
    Refused(Option<(String, u64)>, Rejection),
    /// The node's budget is spent.
    RateLimited,
    /// The verifiers have stopped: nothing was recorded.
    Unavailable,
    /// What the group commit decided for report `seq` of `node`.
    Decided {
        /// The report's node.
        node: String,
        /// Its sequence number.
        seq: u64,
        /// The decision, known once its batch was committed.
        verdict: Verdict,
    },
}

struct Job {
    unread: Unread,
    reply: oneshot::Sender<Outcome>,
}

/// The queue to the verifier threads; every request holds a clone.
#[derive(Clone)]
pub struct Verifiers {
    queue: mpsc::Sender<Job>,
}

impl Verifiers {
    /// Starts `threads` verifiers charging `budgets` and handing verified reports to
    /// `commits`; they stop when every [`Verifiers`] is dropped.
    pub fn start(
        threads: usize,
        budgets: Arc<Mutex<RateBudgets>>,
        commits: GroupCommit,
    ) -> std::io::Result<Verifiers> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let (rx, budgets, commits) = (rx.clone(), budgets.clone(), commits.clone());
            std::thread::Builder::new()
                .name(format!("quid-verify-{i}"))
                .spawn(move || run(&rx, &budgets, &commits))?;
        }
        Ok(Verifiers { queue: tx })
    }

    /// Reads and verifies `unread`, and for a verified report waits until the group commit
    /// has decided it.
    pub async fn check(&self, unread: Unread) -> Outcome {
        let (reply, answer) = oneshot::channel();
        // A closed queue or a verifier gone drops `reply`: nothing was recorded.
        let _ = self.queue.send(Job { unread, reply }).await;
        answer.await.unwrap_or(Outcome::Unavailable)
    }
}

/// One verifier: takes bodies until the queue closes.
fn run(queue: &Mutex<mpsc::Receiver<Job>>, budgets: &Mutex<RateBudgets>, commits: &GroupCommit) {
    loop {
        // One verifier waits on the queue while the others wait for the lock; a panic
        // elsewhere leaves the receiver intact, so a poisoned lock is still usable.
        let job = queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .blocking_recv();
        let Some(Job { unread, reply }) = job else {
            return;
        };
        let budgets = || budgets.lock().unwrap_or_else(PoisonError::into_inner);
        match read_and_verify(&unread.body, &unread.nodes, unread.now) {
            Err((who, rejection)) => {
                budgets().charge_source(unread.source);
                let _ = reply.send(Outcome::Refused(who, rejection));
            }
            Ok(item) => {
                // Only now, with the signature verified, may the node's own budget be spent.
                if !budgets().allow_node(&item.report.node) {
                    let _ = reply.send(Outcome::RateLimited);
                    continue;
                }
                let (node, seq) = (item.report.node.clone(), item.report.seq);
                commits.blocking_enqueue(
                    item,
                    Box::new(move |verdict| {
                        // The requester may have given up; the verdict stands either way.
                        let _ = reply.send(Outcome::Decided { node, seq, verdict });
                    }),
                );
            }
        }
    }
}

/// Reads `body` and checks it names a registered node and carries that node's signature.
/// A refusal carries the node and sequence number when the body could be read, for the log.
fn read_and_verify(
    body: &[u8],
    nodes: &Nodes,
    now: i64,
) -> Result<Verified, (Option<(String, u64)>, Rejection)> {
    let report = crate::settlement::report::parse(body)
        .map_err(|e| (None, Rejection::Malformed(e.to_string())))?;
    match admit::authenticate(&report, nodes) {
        Ok((node, period)) => Ok(Verified {
            node: node.clone(),
            period,
            now,
            report,
        }),
        Err(rejection) => Err((Some((report.node, report.seq)), rejection)),
    }
}
