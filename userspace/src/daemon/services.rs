//! The daemon's HTTP services: binds each configured listener and starts `/metrics`, the
//! operator API and the report intake on it, before anything is attached, so a taken port
//! stops `quid run` at once.

use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context as _;
use log::info;
use tokio::sync::mpsc;

use crate::{
    bindings::request::{self as binding, BindingRequest},
    clock::Clock,
    config::Config,
    http::{
        operator::{self, Control, Token},
        serve,
    },
    metrics::route::{self as metrics_route, Published},
    settlement::{
        admission::Limits,
        audit_routes::{self, AuditApi},
        audits::AuditBook,
        intake,
        nodes::Nodes,
    },
    store::Store,
};

/// Each HTTP listener's name and counts, for the metrics.
pub(super) type Listeners = Vec<(&'static str, Arc<serve::ListenerStats>)>;

/// What the running services share with the main loop.
pub(super) struct Services {
    /// Every listener's counts.
    pub http: Listeners,
    /// The operator API's request counts, when it runs.
    pub operator_counts: Option<operator::Counts>,
    /// The operator API's token, when it runs (the main loop reloads it on SIGHUP).
    pub token: Option<Arc<RwLock<Token>>>,
    /// Requests from the operator API.
    pub control: mpsc::Receiver<Control>,
    /// The report intake, when it runs.
    pub intake: Option<Arc<Mutex<intake::Intake>>>,
    /// The storage audits, when `[audits]` is configured beside the intake.
    pub audits: Option<Arc<Mutex<AuditBook>>>,
    /// The shipper to the shared store, when one is configured.
    pub shipper: Option<super::shipping::Shipper>,
    /// Requests from the binding sources (RADIUS accounting, DHCP leases), when any runs.
    pub bindings: Option<mpsc::Receiver<BindingRequest>>,
    /// The RADIUS accounting listener's counts, when it runs.
    pub radius: Option<Arc<crate::radius::outcome::Counts>>,
    /// The DHCP lease follower's figures, when it runs.
    pub dhcp: Option<Arc<crate::bindings::dhcp::figures::DhcpFigures>>,
    /// The RADIUS accounting client to the billing server, when configured.
    pub accounting_out: Option<super::accounting_out::AccountingOutThread>,
}

/// Starts every configured service; `published` is what `/metrics` serves.
pub(super) async fn start(
    config: &Config,
    nodes: Option<Nodes>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    token: Option<Token>,
    mut sources: SourceInputs,
    published: Published,
    clock: &Clock,
) -> anyhow::Result<Services> {
    let state_dir = &config.daemon.state_dir;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut http = Listeners::new();
    if !config.metrics.listen.is_empty() {
        // Plain HTTP: read-only, and Prometheus scrapes it from the management side.
        let app = metrics_route::router(published);
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
    let (control_tx, control) = mpsc::channel(4);
    let mut operator_counts = None;
    let token = token.map(|t| Arc::new(RwLock::new(t)));
    if let Some(token) = token.clone() {
        let counts = operator::Counts::default();
        operator_counts = Some(counts.clone());
        let api = operator::Api {
            token,
            control: control_tx.clone(),
            store: Arc::new(Mutex::new(Store::connect(state_dir)?)),
            operator_key: config.settlement.operator_key.clone(),
            counts,
            clock: clock.clone(),
        };
        let app = operator::router(api);
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
    let mut audits = None;
    let intake = if let Some(nodes) = nodes {
        let r = &config.reports;
        let limits = Limits {
            max_period_secs: r.max_period_secs,
            max_skew_secs: r.max_skew_secs,
        };
        let intake = Arc::new(Mutex::new(
            intake::Intake::new(
                nodes,
                Store::connect(state_dir)?,
                limits,
                intake::Budget {
                    rate: r.rate_per_node,
                    burst: r.burst_per_node,
                },
                intake::Budget {
                    rate: r.rate_per_source,
                    burst: r.burst_per_source,
                },
            )?
            .with_clock(clock.clone()),
        ));
        let mut app = intake::router(intake.clone(), r.max_body_bytes);
        if let Some(audit) = &config.audits {
            let book = Arc::new(Mutex::new(AuditBook::open(
                *audit,
                Store::connect(state_dir)?.audit_connection()?,
            )?));
            let nodes_of = intake.clone();
            app = app.merge(audit_routes::router(AuditApi {
                book: book.clone(),
                nodes: Arc::new(move || nodes_of.lock().ok().map(|i| i.nodes())),
                clock: clock.clone(),
            }));
            audits = Some(book);
            info!(
                "auditing node storage: a challenge per node every {} s, {} s to answer, fill at {} bytes/s",
                audit.interval_secs, audit.deadline_secs, audit.fill_bytes_per_sec
            );
        }
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
    let shipper = match &config.store.shared {
        Some(shared) => {
            let tls = shared.tls().context("store.ca_file")?;
            info!(
                "shipping the books to the shared store {} as router {}",
                shared.url, shared.router_id
            );
            // With shared tables, the configured files are written from the shared store.
            let mut files = Vec::new();
            if shared.tables == crate::cluster::config::TableSource::Shared {
                use crate::cluster::tables::SharedTable;
                files.push((SharedTable::Subscribers, config.subscribers.file.clone()));
                if !config.reports.listen.is_empty() {
                    files.push((SharedTable::Nodes, config.reports.nodes.clone()));
                }
            }
            Some(super::shipping::Shipper::start(
                shared.clone(),
                tls,
                state_dir.clone(),
                super::table_follower::TableFollower::new(files, config.subscribers.table_format()),
                clock.clone(),
            )?)
        }
        None => None,
    };
    let accounting_out = match sources.accounting_out.take() {
        Some(out) => {
            info!(
                "RADIUS accounting out to {} as NAS {} (Interim-Update every {} s)",
                out.config.server, out.config.nas_identifier, out.config.interval_secs
            );
            Some(super::accounting_out::AccountingOutThread::start(
                out,
                state_dir.clone(),
            )?)
        }
        None => None,
    };
    let BindingSources {
        requests: bindings,
        dhcp,
        radius,
    } = start_binding_sources(config, sources, clock).await?;
    Ok(Services {
        http,
        operator_counts,
        token,
        control,
        intake,
        audits,
        shipper,
        bindings,
        radius,
        dhcp,
        accounting_out,
    })
}

/// What the binding sources start from.
pub(super) struct SourceInputs {
    /// The RADIUS clients and their secrets, read by the preflight.
    pub radius_clients: Option<crate::radius::config::Clients>,
    /// The sessions the last run stored: each source settles its own.
    pub held: Vec<crate::store::StoredSession>,
    /// The accounting server and its secret, read by the preflight.
    pub accounting_out: Option<crate::radius::accounting_out::config::AccountingOut>,
}

/// The binding sources started: the queue their requests arrive on (when any runs), the
/// RADIUS listener's counts and the DHCP follower's figures.
struct BindingSources {
    requests: Option<mpsc::Receiver<BindingRequest>>,
    radius: Option<Arc<crate::radius::outcome::Counts>>,
    dhcp: Option<Arc<crate::bindings::dhcp::figures::DhcpFigures>>,
}

/// Starts every configured binding source (RADIUS accounting, DHCP leases) with a sender of
/// one queue, whose other end the main loop reads; `None` when none is configured (the table
/// file alone binds addresses).
async fn start_binding_sources(
    config: &Config,
    SourceInputs {
        radius_clients,
        held,
        ..
    }: SourceInputs,
    clock: &Clock,
) -> anyhow::Result<BindingSources> {
    let (sender, requests) = binding::channel();
    let mut started = 0_usize;
    let mut radius = None;
    if let (Some(r), Some(clients)) = (&config.radius, radius_clients) {
        let counts = Arc::new(crate::radius::outcome::Counts::default());
        let listener = crate::radius::listener::Listener::bind(
            r,
            clients,
            sender.clone(),
            Arc::clone(&counts),
            clock.clone(),
        )
        .await?;
        info!(
            "RADIUS accounting on udp {} (subscribers by {})",
            r.listen,
            r.subscriber_attribute.name()
        );
        tokio::spawn(async move {
            if let Err(e) = listener.run().await {
                log::error!("the RADIUS accounting listener stopped: {e}");
            }
        });
        radius = Some(counts);
        started += 1;
    }
    let mut dhcp_figures = None;
    if let Some(dhcp) = &config.dhcp {
        let held = held
            .into_iter()
            .filter(|s| s.session.source == binding::BindingSource::Dhcp)
            .filter_map(|s| Some((s.session.id, s.subscriber, *s.prefixes.first()?)))
            .collect();
        dhcp_figures = Some(crate::bindings::dhcp::start(
            dhcp,
            sender.clone(),
            clock.clone(),
            held,
        )?);
        started += 1;
    }
    drop(sender);
    Ok(BindingSources {
        requests: (started > 0).then_some(requests),
        radius,
        dhcp: dhcp_figures,
    })
}

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
