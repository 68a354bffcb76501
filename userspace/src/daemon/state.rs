//! Everything the running daemon owns, and the two steps every other part builds on:
//! installing a table (kernel and books together) and reading one interval into the books.

use std::{
    collections::BTreeSet,
    path::Path,
    sync::{Arc, Mutex, RwLock},
    time::SystemTime,
};

use log::info;
use quid_common::{
    BUCKET_ATTRIBUTED, BUCKET_MALFORMED, BUCKET_NON_IP, BUCKET_UNKNOWN, DIR_DOWNLOAD, DIR_UPLOAD,
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
                ..DaemonStatus::default()
            },
            shipper: services.shipper,
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
    pub fn install_first(&mut self, table: Table) -> anyhow::Result<()> {
        self.restore_bindings()?;
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

    /// Installs `table`: the kernel change, the books, the final reads of removed subscribers.
    pub fn install(&mut self, table: Table) -> anyhow::Result<registry::Change> {
        let (change, baselines) = self.registry.apply(&mut self.dp, table)?;
        let table = self.registry.table();
        self.books
            .install(table, self.registry.slots(), &baselines)?;
        // The removed subscribers' prefixes are gone from both generations: one more read
        // gives their final counts, then their slots can be reused.
        self.read_interval()?;
        let gone = self.books.retire(self.registry.table())?;
        self.registry.release(&gone);
        Ok(change)
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
