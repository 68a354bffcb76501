//! `quid run`: load (or adopt the pinned maps), install the table, attach, read the counters
//! every interval into the books, apply table changes live, and on SIGINT/SIGTERM make a final
//! read and either leave the programs counting (`on_stop = "keep"`) or detach them.

use std::{
    path::Path,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use log::{error, info, warn};
use quid_common::{
    BUCKET_ATTRIBUTED, BUCKET_MALFORMED, BUCKET_NON_IP, BUCKET_UNKNOWN, DIR_DOWNLOAD, DIR_UPLOAD,
};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    clock::Clock,
    config::{Config, KernelLog, OnStop},
    http::serve,
    kernel::counters,
    kernel::loader::Datapath,
    kernel::subscriber_maps::{self as registry, Registry},
    ledger::statement_issue::{self, IssueError},
    metering::interval::{self as books, Books},
    metering::snapshot::{InterfaceTotals, Snapshot, SubscriberTotals},
    metrics::exposition::{DaemonStatus, Exposition},
    metrics::route::{self as metrics_route, Published},
    store::{Status, Store},
    subscribers::reload_result::ReloadResult,
    subscribers::table::Table,
};

/// The files `quid run` reads and checks before it touches the kernel.
pub struct Preflight {
    pub table: Table,
    /// The registered nodes, when the report intake runs.
    pub nodes: Option<crate::settlement::nodes::Nodes>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The operator token, when the operator API runs.
    pub token: Option<crate::http::operator::Token>,
}

/// Reads and checks everything `quid run` can refuse without the kernel: the table, the nodes
/// file, the TLS certificate and key, the operator token (`quid check` runs the same).
pub fn preflight(config: &Config) -> anyhow::Result<Preflight> {
    let table = Table::load(&config.subscribers.file)
        .map_err(|e| anyhow!("{e}quid refuses to start on a bad table"))?;
    let nodes = if config.reports.listen.is_empty() {
        None
    } else {
        Some(
            crate::settlement::nodes::Nodes::load(&config.reports.nodes)
                .map_err(|e| anyhow!("{e}quid refuses to start on a bad nodes file"))?,
        )
    };
    let r = &config.reports;
    if r.max_period_secs <= 0 || r.max_skew_secs < 0 {
        bail!(
            "reports.max_period_secs must be above 0 and reports.max_skew_secs at least 0 \
             (they are {} and {})",
            r.max_period_secs,
            r.max_skew_secs
        );
    }
    // Every amount must stay an exact i64: refuse a tariff that could carry one beyond.
    config
        .tariff
        .check(nodes.as_ref(), r.max_period_secs)
        .map_err(|e| anyhow!("{e}; quid refuses to start on this tariff"))?;
    let tls = config.tls.acceptor()?;
    let token = if config.operator.listen.is_empty() {
        None
    } else {
        Some(crate::http::operator::Token::load(
            &config.operator.token_file,
        )?)
    };
    Ok(Preflight {
        table,
        nodes,
        tls,
        token,
    })
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    crate::kernel::capabilities::check(&[
        &config.metrics.listen,
        &config.reports.listen,
        &config.operator.listen,
    ])?;
    let Preflight {
        table,
        nodes,
        tls,
        token,
    } = preflight(&config)?;
    let sizes = config.subscribers.sizes();
    registry::check_fits(&table, sizes)?;
    let state_dir = &config.daemon.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let clock = Clock::system();
    let store = Store::open(state_dir)?;

    let mut dp = Datapath::load_pinned(
        sizes,
        config.daemon.kernel_log,
        Some(&config.daemon.pin_dir),
    )?;
    let kernel_log = match config.daemon.kernel_log {
        KernelLog::Off => None,
        _ => {
            let logger =
                aya_log::EbpfLogger::init(&mut dp.ebpf).context("kernel log setup failed")?;
            // SAFETY: the logger owns its ring buffer fd, which lives as long as the AsyncFd.
            Some(unsafe { AsyncFd::register(logger) }.map_err(|e| anyhow!("kernel log: {e}"))?)
        }
    };
    crate::kernel::grid_prefixes::install(&mut dp, &config.grid.nets())?;
    let (mut books, adopted) = Books::open(store, dp.meta.instance, dp.adopted, clock.clone())?;
    books.tariff = config.tariff.clone();
    let registry = match adopted {
        Some((installed, slots)) => {
            info!(
                "adopted the maps pinned in {} ({} subscribers installed); counting never stopped",
                config.daemon.pin_dir.display(),
                installed.subscribers.len()
            );
            let active = registry::active_generation(&dp)?;
            Registry::adopt(
                &dp,
                config.subscribers.hash_lengths,
                installed,
                slots,
                active,
            )
        }
        None => Registry::new(config.subscribers.hash_lengths),
    };
    let published = Published::default();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut http = Listeners::new();
    if !config.metrics.listen.is_empty() {
        // Plain HTTP: read-only, and Prometheus scrapes it from the management side.
        let app = metrics_route::router(published.clone());
        let addr = &config.metrics.listen;
        listen(
            &mut http,
            "metrics",
            "metrics.listen",
            addr,
            app,
            config.http,
            None,
        )
        .await?;
        info!("serving /metrics on http://{addr}");
    }
    let (control_tx, control) = tokio::sync::mpsc::channel(4);
    let mut operator_counts = None;
    let token = token.map(|t| Arc::new(RwLock::new(t)));
    if let Some(token) = token.clone() {
        let counts = crate::http::operator::Counts::default();
        operator_counts = Some(counts.clone());
        let api = crate::http::operator::Api {
            token,
            control: control_tx.clone(),
            store: Arc::new(std::sync::Mutex::new(Store::connect(state_dir)?)),
            operator_key: config.settlement.operator_key.clone(),
            counts,
            clock: clock.clone(),
        };
        let app = crate::http::operator::router(api);
        let addr = &config.operator.listen;
        listen(
            &mut http,
            "operator",
            "operator.listen",
            addr,
            app,
            config.http,
            tls.clone(),
        )
        .await?;
        info!(
            "operator API on {scheme}://{addr}/v1/operator/ (token from {})",
            config.operator.token_file.display()
        );
    }
    let intake = if let Some(nodes) = nodes {
        let r = &config.reports;
        let limits = crate::settlement::admission::Limits {
            max_period_secs: r.max_period_secs,
            max_skew_secs: r.max_skew_secs,
        };
        let intake = Arc::new(std::sync::Mutex::new(
            crate::settlement::intake::Intake::new(
                nodes,
                Store::connect(state_dir)?,
                limits,
                crate::settlement::intake::Budget {
                    rate: r.rate_per_node,
                    burst: r.burst_per_node,
                },
                crate::settlement::intake::Budget {
                    rate: r.rate_per_source,
                    burst: r.burst_per_source,
                },
            )?
            .with_clock(clock.clone()),
        ));
        let app = crate::settlement::intake::router(intake.clone(), r.max_body_bytes);
        listen(
            &mut http,
            "reports",
            "reports.listen",
            &r.listen,
            app,
            config.http,
            tls.clone(),
        )
        .await?;
        info!(
            "accepting node reports on {scheme}://{}/v1/reports",
            r.listen
        );
        Some(intake)
    } else {
        None
    };
    let mut state = State {
        intake,
        exposition: Exposition::new(),
        published,
        status: DaemonStatus {
            http,
            operator: operator_counts,
            ..DaemonStatus::default()
        },
        control,
        token,
        missing: Default::default(),
        reload_pending: false,
        config: &config,
        dp,
        registry,
        books,
        table_stamp: stamp(&config.subscribers.file),
        nodes_stamp: stamp(&config.reports.nodes),
        // Carry on from the last daemon's count, so a waiting `quid subscribers reload` never
        // mistakes our first result for the one it already saw.
        reloads: ReloadResult::read(state_dir).map_or(0, |r| r.seq),
        clock: clock.clone(),
    };
    let change = state.install(&table)?;
    state.status.last_reload_ok = true;
    let plan = *state.registry.active_plan();
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
    let names: Vec<String> = config
        .interfaces
        .iter()
        .map(|i| i.name.get_ref().0.clone())
        .collect();
    for gone in state.dp.drop_stale_links(&names)? {
        info!("detached from {gone}: no longer in the config");
    }
    for iface in &config.interfaces {
        let a = state
            .dp
            .attach(&iface.name.get_ref().0, iface.role, iface.xdp_mode)?;
        info!(
            "attached to {} (ifindex {}) as {} in {} mode",
            a.name, a.ifindex, a.role, a.mode
        );
    }

    let result = state.count_until_signal(kernel_log).await;
    match config.daemon.on_stop {
        OnStop::Keep => {
            state.read_interval()?;
            state.snapshot("stopped")?.write(state_dir)?;
            info!(
                "stopped; the programs stay attached and keep counting into the maps pinned in {} (`quid detach` removes them)",
                config.daemon.pin_dir.display()
            );
        }
        OnStop::Detach => {
            // Detach first, then read: every packet the programs saw is in the final totals.
            state.dp.detach_all()?;
            state.read_interval()?;
            state.snapshot("stopped")?.write(state_dir)?;
            state.dp.unpin_all()?;
            info!(
                "detached from {} interfaces and removed the pins; final totals in {}",
                state.dp.attachments.len(),
                state_dir.join(crate::metering::snapshot::FILE).display()
            );
        }
    }
    result
}

/// Modification time and length of the table file: a change means "reload".
fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Everything the running daemon owns.
struct State<'a> {
    /// The report intake, when it runs.
    intake: Option<Arc<std::sync::Mutex<crate::settlement::intake::Intake>>>,
    /// Renders the exposition; kept for the daemon's life, so its counters are too.
    exposition: Exposition,
    /// The exposition `/metrics` serves, rendered once per interval.
    published: Published,
    /// The operator API's token, when the API runs (reloaded on SIGHUP).
    token: Option<Arc<RwLock<crate::http::operator::Token>>>,
    /// A table change waiting for the store to take writes again.
    reload_pending: bool,
    /// Configured interfaces that are gone (said once, until they are back).
    missing: std::collections::BTreeSet<String>,
    /// Requests from the operator API.
    control: tokio::sync::mpsc::Receiver<crate::http::operator::Control>,
    status: DaemonStatus,
    config: &'a Config,
    dp: Datapath,
    registry: Registry,
    books: Books,
    table_stamp: Option<(std::time::SystemTime, u64)>,
    nodes_stamp: Option<(std::time::SystemTime, u64)>,
    reloads: u64,
    clock: Clock,
}

impl State<'_> {
    /// Installs `table`: the kernel change, the books, the final reads of removed subscribers.
    fn install(&mut self, table: &Table) -> anyhow::Result<registry::Change> {
        let (change, baselines) = self.registry.apply(&mut self.dp, table)?;
        self.books
            .install(table, self.registry.slots(), &baselines)?;
        // The removed subscribers' prefixes are gone from both generations: one more read
        // gives their final counts, then their slots can be reused.
        self.read_interval()?;
        let gone = self.books.retire(table)?;
        self.registry.release(&gone);
        Ok(change)
    }

    fn read_interval(&mut self) -> anyhow::Result<books::IntervalSummary> {
        let summary = self
            .books
            .interval(|s| self.dp.counters.slot(s), self.clock.now()?)
            .inspect_err(|_| self.status.commit_failures += 1)?;
        self.status.read_seconds = summary.read_seconds;
        self.status.write_seconds = summary.write_seconds;
        Ok(summary)
    }

    /// Settles the reports the books now cover.
    fn settle(&mut self) {
        let Some(intake) = &self.intake else { return };
        let Ok(nodes) = intake.lock().map(|i| i.nodes()) else {
            return;
        };
        match self.books.settle(&nodes, &self.config.settlement) {
            Ok(settled) => {
                for s in settled {
                    info!(
                        "report {}#{} of {} {}: reported {} grid bytes, metered {}; credit {} µcr",
                        s.node, s.seq, s.subscriber, s.outcome, s.reported, s.measured, s.credit
                    );
                }
            }
            Err(e) => error!("settling reports failed (will retry next interval): {e:#}"),
        }
    }

    /// Issues the statements of the month just ended, once (with an operator key).
    fn issue_statements(&mut self) {
        let Some(key_path) = &self.config.settlement.operator_key else {
            return;
        };
        let issued = self
            .clock
            .now_i64()
            .map_err(IssueError::from)
            .and_then(|now| {
                statement_issue::issue_due(
                    self.books.store(),
                    self.books.records().map(|r| r.id.as_str()),
                    key_path,
                    &self.config.daemon.state_dir,
                    now,
                )
            });
        match issued {
            Ok(None) => {}
            Ok(Some(i)) => info!(
                "issued {} statements for {} in {}",
                i.count,
                i.period,
                i.dir.display()
            ),
            Err(e) => error!("{e}"),
        }
    }

    /// Renders the exposition from the books and `snap` for the next scrapes.
    fn publish(&mut self, snap: &Snapshot) {
        self.status.generation = self.registry.active();
        self.status.maps = self.registry.map_usage(self.dp.sizes);
        self.status.attachments = self
            .dp
            .attachments
            .iter()
            .map(|a| {
                // Attached means the kernel has the link on the interface of that name now.
                let attached = nix::net::if_::if_nametoindex(a.name.as_str())
                    .is_ok_and(|i| self.dp.attached_to(&a.name, i));
                (a.name.clone(), a.role.to_string(), a.mode.clone(), attached)
            })
            .collect();
        self.status.reports = self
            .intake
            .as_ref()
            .and_then(|i| i.lock().ok().map(|i| i.counts.clone()));
        let store = self.books.store();
        // Each read stands alone, and a bad balance row skips only its subscriber: one broken
        // figure never freezes everyone else's.
        match store.running_balances() {
            Ok((balances, bad)) => {
                if !bad.is_empty() && bad.len() != self.status.bad_balances {
                    error!(
                        "balances of {} are not exact integers and are left out of the \
                         metrics: recompute them from the ledger",
                        bad.join(", ")
                    );
                }
                self.status.bad_balances = bad.len();
                self.status.balances = balances;
            }
            Err(e) => error!("cannot read balances for the metrics: {e}"),
        }
        match store.contributions() {
            Ok(c) => self.status.contributions = c,
            Err(e) => error!("cannot read contributions for the metrics: {e}"),
        }
        match store.plan_contributions() {
            Ok(p) => self.status.plan_contributions = p,
            Err(e) => error!("cannot read plan contributions for the metrics: {e}"),
        }
        let records: Vec<&crate::store::Record> = self.books.records().collect();
        let text = self.exposition.render(
            &records,
            &snap.interfaces,
            &self.status,
            self.config.metrics.subscribers,
        );
        if let Ok(mut e) = self.published.write() {
            *e = text;
        }
    }

    /// Re-attaches to configured interfaces that were deleted and created again (a new
    /// ifindex), and says when one disappears. Subscriber counts carry on; the interface's
    /// own buckets start again from zero, as they belong to the new ifindex.
    fn follow_interfaces(&mut self) {
        for iface in &self.config.interfaces {
            let name = &iface.name.get_ref().0;
            let now = nix::net::if_::if_nametoindex(name.as_str()).ok();
            let was = self
                .dp
                .attachments
                .iter()
                .find(|a| &a.name == name)
                .map(|a| a.ifindex);
            match (was, now) {
                (Some(old), Some(new)) if old == new && self.dp.attached_to(name, new) => {
                    self.missing.remove(name);
                }
                (_, None) => {
                    if self.missing.insert(name.clone()) {
                        warn!("{name} disappeared: nothing is counted on it until it is back");
                    }
                }
                (_, Some(new)) => {
                    let attached = self
                        .dp
                        .release(name)
                        .and_then(|()| self.dp.attach(name, iface.role, iface.xdp_mode).cloned());
                    match attached {
                        Ok(a) => {
                            self.missing.remove(name);
                            self.status.reattachments += 1;
                            info!(
                                "{name} is back (ifindex {new}): re-attached in {} mode",
                                a.mode
                            );
                        }
                        Err(e) => {
                            error!("{name} is back but re-attaching failed (will retry): {e}")
                        }
                    }
                }
            }
        }
    }

    /// Reloads the table and the nodes file, as asked by a signal or the operator API.
    fn reload_files(&mut self, why: &str) -> ReloadResult {
        let result = self.reload(why);
        self.reload_nodes();
        result
    }

    /// Rereads the operator token file (rotation); a bad file keeps the current token.
    fn reload_token(&mut self) {
        let Some(token) = &self.token else { return };
        match crate::http::operator::Token::load(&self.config.operator.token_file) {
            Ok(t) => {
                if let Ok(mut current) = token.write() {
                    *current = t;
                    info!("reloaded the operator token");
                }
            }
            Err(e) => warn!("operator token reload refused, the current token stays: {e}"),
        }
    }

    /// Reloads the nodes file; a bad file leaves the registered nodes untouched.
    fn reload_nodes(&mut self) {
        self.nodes_stamp = stamp(&self.config.reports.nodes);
        let Some(intake) = &self.intake else { return };
        match crate::settlement::nodes::Nodes::load(&self.config.reports.nodes) {
            Ok(nodes) => {
                let n = nodes.by_id.len();
                let max_period = self.config.reports.max_period_secs;
                if let Err(e) = self.config.tariff.check(Some(&nodes), max_period) {
                    warn!("nodes file reload refused, the registered nodes are unchanged: {e}");
                    return;
                }
                match intake.lock().map(|mut i| i.set_nodes(nodes)) {
                    Ok(Ok(())) => info!("reloaded the nodes file: {n} nodes"),
                    Ok(Err(e)) => {
                        warn!("nodes file reload refused, the registered nodes are unchanged: {e}")
                    }
                    Err(_) => warn!("nodes file reload refused: the intake is unavailable"),
                }
            }
            Err(errors) => {
                warn!("nodes file reload refused, the registered nodes are unchanged: {errors}")
            }
        }
    }

    /// Reloads the table file; a bad file leaves the running table untouched.
    fn reload(&mut self, why: &str) -> ReloadResult {
        self.reloads += 1;
        self.table_stamp = stamp(&self.config.subscribers.file);
        let mut result = ReloadResult {
            seq: self.reloads,
            at_unix: 0,
            ok: false,
            errors: Vec::new(),
            change: registry::Change::default(),
        };
        // The kernel and the books change together: with a store that cannot take the books'
        // side (disk full), the change waits, and is retried after the next good commit.
        let writable = self.clock.now().map_err(|e| e.to_string()).and_then(|now| {
            result.at_unix = now;
            self.books
                .store()
                .check_writable(now)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = writable {
            self.reload_pending = true;
            self.status.reloads_failed += 1;
            self.status.last_reload_ok = false;
            result.errors = vec![format!(
                "the store cannot be written ({e}); the change is applied once it can"
            )];
            warn!("reload ({why}) postponed, the running table is unchanged: {e}");
            return result;
        }
        self.reload_pending = false;
        match Table::load(&self.config.subscribers.file) {
            Err(errors) => {
                self.status.reloads_failed += 1;
                self.status.last_reload_ok = false;
                result.errors = errors.0.iter().map(|e| e.to_string()).collect();
                warn!("reload ({why}) refused, the running table is unchanged: {errors}");
            }
            Ok(table) => match self.install(&table) {
                Ok(change) => {
                    self.status.reloads_ok += 1;
                    self.status.last_reload_ok = true;
                    info!(
                        "reloaded ({why}): {} added, {} removed, {} changed, {} subscribers in all",
                        change.added.len(),
                        change.removed.len(),
                        change.changed.len(),
                        table.subscribers.len()
                    );
                    result.ok = true;
                    result.change = change;
                }
                Err(e) => {
                    self.status.reloads_failed += 1;
                    self.status.last_reload_ok = false;
                    result.errors = vec![format!("{e:#}")];
                    warn!("reload ({why}) failed, the running table is unchanged: {e:#}");
                }
            },
        }
        if let Err(e) = result.write(&self.config.daemon.state_dir) {
            error!("cannot write the reload result: {e}");
        }
        result
    }

    async fn count_until_signal(
        &mut self,
        mut kernel_log: Option<AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>,
    ) -> anyhow::Result<()> {
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let secs = self.config.daemon.interval_secs;
        let mut tick = tokio::time::interval(Duration::from_secs(secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match self.read_interval() {
                        Ok(summary) => {
                            log_summary(&summary, secs);
                            if self.reload_pending {
                                self.reload("postponed until the store took writes again");
                            }
                        }
                        Err(e) => error!("reading the counters failed (the kernel keeps them; will retry next interval): {e:#}"),
                    }
                    self.settle();
                    self.issue_statements();
                    match self.snapshot("running") {
                        Ok(snap) => {
                            if let Err(e) = snap.write(&self.config.daemon.state_dir) {
                                error!("cannot write the totals snapshot: {e}");
                            }
                            self.publish(&snap);
                        }
                        Err(e) => error!("cannot read the interface counters: {e:#}"),
                    }
                }
                _ = watch.tick() => {
                    self.follow_interfaces();
                    if stamp(&self.config.subscribers.file) != self.table_stamp {
                        self.reload("the table file changed");
                    }
                    if self.intake.is_some() && stamp(&self.config.reports.nodes) != self.nodes_stamp {
                        self.reload_nodes();
                    }
                }
                Some(crate::http::operator::Control::Reload(reply)) = self.control.recv() => {
                    let _ = reply.send(self.reload_files("operator API"));
                }
                _ = sighup.recv() => {
                    self.reload_files("SIGHUP");
                    self.reload_token();
                }
                ready = readable(&mut kernel_log) => match ready {
                    Ok(mut guard) => {
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                    Err(e) => {
                        warn!("kernel log unavailable: {e}");
                        kernel_log = None;
                    }
                },
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); return Ok(()) }
                _ = sigint.recv() => { info!("SIGINT: stopping"); return Ok(()) }
            }
        }
    }

    /// The books' totals and the interfaces' buckets.
    fn snapshot(&self, state: &str) -> anyhow::Result<Snapshot> {
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
            state: state.into(),
            pid: std::process::id(),
            taken_at_unix: self.clock.now()?,
            interval_secs: self.config.daemon.interval_secs,
            generation: self.registry.active(),
            subscribers,
            interfaces,
        })
    }
}

/// Each HTTP listener's name and counts, for the metrics.
type Listeners = Vec<(&'static str, Arc<serve::ListenerStats>)>;

/// Binds `addr` (configured as `key`) and serves `app` there under the `[http]` limits; the
/// listener's counts join `listeners`.
async fn listen(
    listeners: &mut Listeners,
    name: &'static str,
    key: &str,
    addr: &str,
    app: axum::Router,
    limits: serve::HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {key} = {addr}"))?;
    let stats = Arc::default();
    listeners.push((name, Arc::clone(&stats)));
    tokio::spawn(serve::serve(name, listener, app, limits, tls, stats));
    Ok(())
}

async fn readable<T: std::os::fd::AsRawFd>(
    fd: &mut Option<AsyncFd<T>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, T>> {
    match fd {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

fn log_summary(s: &books::IntervalSummary, secs: u64) {
    let up = counters::direction(&s.delta, DIR_UPLOAD);
    let down = counters::direction(&s.delta, DIR_DOWNLOAD);
    info!(
        "last {secs}s: {} active subscribers; upload {} pkts {} B, download {} pkts {} B",
        s.active, up.packets, up.bytes, down.packets, down.bytes
    );
}
