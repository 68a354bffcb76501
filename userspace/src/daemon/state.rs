//! Everything the running daemon owns, and the two steps every other part builds on:
//! installing a table (kernel and books together) and reading one interval into the books.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    path::Path,
    sync::{Arc, Mutex, RwLock},
    time::SystemTime,
};

use log::{info, warn};
use quid_common::{
    BUCKET_ATTRIBUTED, BUCKET_MALFORMED, BUCKET_NON_IP, BUCKET_PPPOE_DISCOVERY, BUCKET_UNKNOWN,
    DIR_DOWNLOAD, DIR_UPLOAD,
};
use tokio::sync::mpsc;

use crate::{
    bindings::{request::BindingRequest, set::Bindings},
    clock::Clock,
    config::Config,
    http::operator::{Control, Token},
    kernel::counters,
    kernel::loader::Datapath,
    kernel::subscriber_maps::{self as registry, Registry},
    metering::interval::{self as books, Books},
    metering::snapshot::{ByClass, DaemonState, InterfaceTotals, Snapshot, SubscriberTotals},
    metrics::{exposition::Exposition, route::Published, status::DaemonStatus},
    settlement::intake::Intake,
    store::Status,
    subscribers::{reload_result::ReloadResult, table::Table},
};

use super::{kernel_setup::Kernel, services::Services};

/// Modification time and length of a watched file: a change means "reload".
pub(super) type Stamp = Option<(SystemTime, u64)>;

/// The stamp of the file at `path` now (`None` while it cannot be read).
pub(super) fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Everything the running daemon owns.
pub(super) struct State<'a> {
    /// The report intake, when it runs.
    pub intake: Option<Arc<Mutex<Intake>>>,
    /// The storage audits, when configured.
    pub audits: Option<Arc<Mutex<crate::settlement::audits::AuditBook>>>,
    /// The shipper to the shared store, when one is configured.
    pub shipper: Option<super::shipping::Shipper>,
    /// Renders the exposition; kept for the daemon's life, so its counters are too.
    pub exposition: Exposition,
    /// The exposition `/metrics` serves, rendered once per interval.
    pub published: Published,
    /// The operator API's token, when the API runs (reloaded on SIGHUP).
    pub token: Option<Arc<RwLock<Token>>>,
    /// A table change waiting for the store to take writes again.
    pub reload_pending: bool,
    /// Configured interfaces that are gone (said once, until they are back).
    pub missing: BTreeSet<String>,
    /// Requests from the operator API.
    pub control: mpsc::Receiver<Control>,
    /// What the metrics say about the daemon itself.
    pub status: DaemonStatus,
    pub config: &'a Config,
    pub dp: Datapath,
    pub registry: Registry,
    pub books: Books,
    pub table_stamp: Stamp,
    pub nodes_stamp: Stamp,
    /// Reloads so far, carried on from the last daemon's count.
    pub reloads: u64,
    pub clock: Clock,
    /// The books must record the next installed table whole (at start, or after they missed
    /// a change).
    pub books_whole: bool,
    /// Subscribers removed from the table, with when, whose books close after the next read.
    pub retiring: Vec<(String, u64)>,
    /// The RADIUS accounting client to the billing server, when configured.
    pub accounting_out: Option<super::accounting_out::AccountingOutThread>,
    /// The live bindings and the queue their sources send to, when a source runs.
    pub bindings: Option<(Bindings, mpsc::Receiver<BindingRequest>)>,
}

impl<'a> State<'a> {
    /// The state of a daemon about to install its first table.
    pub fn new(
        config: &'a Config,
        kernel: Kernel,
        services: Services,
        published: Published,
        clock: Clock,
    ) -> State<'a> {
        State {
            intake: services.intake,
            audits: services.audits,
            exposition: Exposition::new(),
            published,
            status: DaemonStatus {
                http: services.http,
                operator: services.operator_counts,
                cluster: services.shipper.as_ref().map(|s| Arc::clone(&s.stats)),
                bindings: services.bindings.as_ref().map(|_| Default::default()),
                radius: services.radius.clone(),
                dhcp: services.dhcp.clone(),
                accounting_out: services
                    .accounting_out
                    .as_ref()
                    .map(|a| Arc::clone(&a.counts)),
                ..DaemonStatus::default()
            },
            shipper: services.shipper,
            accounting_out: services.accounting_out,
            control: services.control,
            token: services.token,
            missing: BTreeSet::new(),
            reload_pending: false,
            config,
            dp: kernel.dp,
            registry: kernel.registry,
            books: kernel.books,
            table_stamp: stamp(&config.subscribers.file),
            nodes_stamp: stamp(&config.reports.nodes),
            // Carry on from the last daemon's count, so a waiting `quid subscribers reload`
            // never mistakes our first result for the one it already saw.
            reloads: ReloadResult::read(&config.daemon.state_dir).map_or(0, |r| r.seq),
            clock,
            books_whole: true,
            retiring: Vec::new(),
            // A session per kernel prefix entry at most: each holds at least one.
            bindings: services.bindings.map(|requests| {
                (
                    Bindings::new(config.subscribers.prefix_capacity as usize),
                    requests,
                )
            }),
        }
    }

    /// Installs the table the daemon starts with, and says what the lookup looks like.
    /// `held`: the live bindings the last run stored, taken up before the table is laid.
    pub fn install_first(
        &mut self,
        table: Table,
        held: Vec<crate::store::StoredSession>,
    ) -> anyhow::Result<()> {
        self.restore_bindings(held);
        let change = self.install_file(table)?;
        self.status.last_reload_ok = true;
        let plan = *self.registry.active_plan();
        let table = self.registry.table();
        let (v4, v6) = table.prefix_counts();
        info!(
            "installed {} subscribers ({v4} IPv4, {v6} IPv6 prefixes; {} added, {} removed, {} changed); probes: {} IPv4 (pool /{}), {} IPv6 (pool /{}); trie fallback: {}",
            table.subscribers.len(),
            change.added.len(),
            change.removed.len(),
            change.changed.len(),
            plan.v4_probes,
            plan.v4_pool.prefix_len,
            plan.v6_probes,
            plan.v6_pool.prefix_len,
            if plan.v4_trie_max + plan.v6_trie_max > 0 {
                "in use"
            } else {
                "empty"
            }
        );
        Ok(())
    }

    /// Installs `table`: the kernel change and the books. The first install (and any after
    /// the books missed a change) records the whole table, reads once more and closes the
    /// books of everyone not in it; later ones record only what changed, and the removed
    /// subscribers' books are closed after the next interval's read has their final counts
    /// ([`State::retire_removed`]), so a change costs what it touches, not the table.
    pub fn install(&mut self, table: Table) -> anyhow::Result<registry::Change> {
        let (change, baselines) = self.registry.apply(&mut self.dp, table)?;
        let table = self.registry.table();
        let slots = self.registry.slots();
        if self.books_whole {
            self.books.install(table, slots, &baselines)?;
            self.books_whole = false;
            self.retiring.clear();
            // The removed subscribers' prefixes are gone from both generations: one more
            // read gives their final counts, then their slots can be reused.
            self.read_interval()?;
            let gone = self.books.retire(self.registry.table())?;
            self.registry.release(&gone);
            return Ok(change);
        }
        if let Err(e) = self
            .books
            .install_change(table, &change.rows, slots, &baselines)
        {
            self.books_whole = true;
            return Err(e.into());
        }
        let back: HashSet<&str> = change.added.iter().map(String::as_str).collect();
        self.retiring.retain(|(id, _)| !back.contains(id.as_str()));
        let now = self.clock.now()?;
        self.retiring
            .extend(change.removed.iter().map(|id| (id.clone(), now)));
        Ok(change)
    }

    /// Closes the books of the subscribers removed since the last read, which had their final
    /// counts (their prefixes were gone from both generations before it), and frees their
    /// slots. Called after each interval's read.
    pub fn retire_removed(&mut self) {
        let retiring = std::mem::take(&mut self.retiring);
        let mut by_time: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (id, at) in retiring {
            by_time.entry(at).or_default().push(id);
        }
        for (at, ids) in by_time {
            match self.books.retire_ids(ids.clone(), at) {
                Ok(gone) => {
                    self.registry.release(&gone);
                }
                Err(e) => {
                    warn!(
                        "cannot close the books of removed subscribers (retried next interval): {e}"
                    );
                    self.retiring.extend(ids.into_iter().map(|id| (id, at)));
                }
            }
        }
    }

    /// Reads every subscriber's counters into the books.
    pub fn read_interval(&mut self) -> anyhow::Result<books::IntervalSummary> {
        let end = self.clock.now()?;
        let summary = self
            .books
            .interval(|s| self.dp.counters.slot(s), end)
            .inspect_err(|_| self.status.commit_failures += 1)?;
        self.exposition
            .interval(summary.read_seconds, summary.write_seconds, end);
        Ok(summary)
    }

    /// The books' totals and the interfaces' buckets.
    pub fn snapshot(&self, state: DaemonState) -> anyhow::Result<Snapshot> {
        let subscribers = self
            .books
            .records()
            .map(|r| SubscriberTotals {
                id: r.id.clone(),
                name: r.name.clone(),
                plan: r.plan.clone(),
                removed: r.status == Status::Removed,
                upload: counters::direction(&r.total, DIR_UPLOAD).into(),
                download: counters::direction(&r.total, DIR_DOWNLOAD).into(),
                by_class: Some(ByClass::of(&r.total)),
            })
            .collect();
        let interfaces = self
            .dp
            .attachments
            .iter()
            .map(|a| {
                let b = counters::interface(&self.dp, a.ifindex)?;
                Ok(InterfaceTotals {
                    attachment: a.clone(),
                    attributed: b.buckets[BUCKET_ATTRIBUTED].into(),
                    non_ip: b.buckets[BUCKET_NON_IP].into(),
                    unknown: b.buckets[BUCKET_UNKNOWN].into(),
                    malformed: b.buckets[BUCKET_MALFORMED].into(),
                    pppoe_discovery: b.buckets[BUCKET_PPPOE_DISCOVERY].into(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Snapshot {
            state,
            pid: std::process::id(),
            taken_at_unix: self.clock.now()?,
            interval_secs: self.config.daemon.interval_secs,
            generation: self.registry.active(),
            subscribers,
            interfaces,
        })
    }
}
