//! What `quid run` and `quid check` both refuse before the kernel is touched: a bad table,
//! nodes file, report limits, tariff, TLS certificate or operator token. One function, so the
//! two commands can never disagree.

use anyhow::{anyhow, bail};

use crate::{config::Config, subscribers::table::Table};

/// The files `quid run` reads and checks before it touches the kernel.
pub struct Preflight {
    /// The subscriber table to install.
    pub table: Table,
    /// The registered nodes, when the report intake runs.
    pub nodes: Option<crate::settlement::nodes::Nodes>,
    /// The TLS acceptor for the intake and operator API, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The operator token, when the operator API runs.
    pub token: Option<crate::http::operator::Token>,
    /// The RADIUS clients and their secrets, when `[radius]` is configured.
    pub radius_clients: Option<crate::radius::config::Clients>,
    /// The accounting server and its secret, when `[accounting_out]` is configured.
    pub accounting_out: Option<crate::radius::accounting_out::config::AccountingOut>,
}

/// Reads and checks everything `quid run` can refuse without the kernel: the table, the nodes
/// file, the TLS certificate and key, the operator token (`quid check` runs the same).
pub fn preflight(config: &Config) -> anyhow::Result<Preflight> {
    let table = Table::load(
        &config.subscribers.file,
        &config.subscribers.table_format(),
        config.subscribers.allow_empty,
    )
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
    // Interval rows must outlive every report that may still arrive for them.
    let window = r
        .max_period_secs
        .saturating_add(r.max_skew_secs)
        .saturating_add(i64::try_from(config.daemon.interval_secs).unwrap_or(i64::MAX));
    config
        .store
        .keep
        .check(window)
        .map_err(|e| anyhow!("{e}; quid refuses to start with this [store] section"))?;
    // Every amount must stay an exact i64: refuse a tariff that could carry one beyond.
    config
        .tariff
        .check(nodes.as_ref(), r.max_period_secs)
        .map_err(|e| anyhow!("{e}; quid refuses to start on this tariff"))?;
    if let Some(dhcp) = &config.dhcp {
        dhcp.check()?;
    }
    let tls = config.tls.acceptor()?;
    let token = if config.operator.listen.is_empty() {
        None
    } else {
        Some(crate::http::operator::Token::load(
            &config.operator.token_file,
        )?)
    };
    let radius_clients = match &config.radius {
        Some(r) => Some(
            crate::radius::config::Clients::load(r)
                .map_err(|e| anyhow!("{e}; quid refuses to start with this [radius] section"))?,
        ),
        None => None,
    };
    let accounting_out = match &config.accounting_out {
        Some(a) => Some(a.load().map_err(|e| {
            anyhow!("accounting_out: {e}; quid refuses to start with this [accounting_out] section")
        })?),
        None => None,
    };
    Ok(Preflight {
        table,
        nodes,
        tls,
        token,
        radius_clients,
        accounting_out,
    })
}
