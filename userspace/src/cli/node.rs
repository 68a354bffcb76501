//! `quid node keygen|report|reports`: what a grid node runs to make its key and to sign and
//! submit its contribution reports, and the reports the router recorded for a node.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use quid::{
    config::Config,
    settlement::{node_client, report},
    store::Store,
};

use super::secret_file::write_secret;

/// `quid node keygen`: the secret to `out`, the public key to stdout.
pub fn keygen(out: &Path) -> anyhow::Result<()> {
    let key = report::keygen()?;
    write_secret(out, 0o600, &hex::encode(key.to_bytes()))?;
    println!("{}", hex::encode(key.verifying_key().to_bytes()));
    Ok(())
}

/// One `quid node report` as given on the command line.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The daemon's report intake, e.g. http://192.0.2.1:9465.
    #[arg(long)]
    pub url: String,
    /// The node's secret key file (from `quid node keygen`).
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub node: String,
    #[arg(long)]
    pub seq: u64,
    /// Period start and end, RFC 3339 UTC (2026-11-24T10:00:00Z).
    #[arg(long)]
    pub from: String,
    #[arg(long)]
    pub to: String,
    /// CPU supplied in core-microseconds (cgroup v2 `cpu.stat` `usage_usec` delta).
    #[arg(long, conflicts_with = "cpu_core_seconds")]
    pub cpu_core_micros: Option<u64>,
    /// CPU supplied in core-seconds, a decimal with at most 6 places (exact, no rounding).
    #[arg(long)]
    pub cpu_core_seconds: Option<String>,
    /// Storage supplied in byte-seconds.
    #[arg(long, default_value_t = 0)]
    pub storage_byte_seconds: u64,
    /// Energy supplied in microjoules (RAPL `energy_uj` delta).
    #[arg(long, conflicts_with = "energy_joules")]
    pub energy_microjoules: Option<u64>,
    /// Energy supplied in joules, a decimal with at most 6 places (exact, no rounding).
    #[arg(long)]
    pub energy_joules: Option<String>,
    /// Where the energy figure comes from (none, rapl, shelly, tasmota): sends a version 3
    /// report; without it, a version 2 report that states no source.
    #[arg(long, value_parser = energy_source)]
    pub energy_source: Option<report::EnergySource>,
    #[arg(long, default_value_t = 0)]
    pub grid_bytes_sent: u64,
    #[arg(long, default_value_t = 0)]
    pub grid_bytes_received: u64,
    #[arg(long, default_value_t = 5)]
    pub attempts: u32,
    /// Trust the certificates in this PEM file (a router with a private certificate).
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// `quid node report`: signs the report and submits it, printing the daemon's status.
pub fn submit(a: ReportArgs) -> anyhow::Result<()> {
    let key = node_client::read_key(&a.key)?;
    let micros = |exact: Option<u64>, decimal: Option<String>, flag: &str| match (exact, decimal) {
        (Some(v), _) => Ok(v),
        (None, Some(d)) => node_client::decimal_micros(&d)
            .with_context(|| format!("--{flag} {}", report::quote(&d))),
        (None, None) => Ok(0),
    };
    let r = report::Report {
        node: a.node,
        seq: a.seq,
        period_start: a.from,
        period_end: a.to,
        cpu_core_micros: micros(a.cpu_core_micros, a.cpu_core_seconds, "cpu-core-seconds")?,
        storage_byte_seconds: a.storage_byte_seconds,
        energy_microjoules: micros(a.energy_microjoules, a.energy_joules, "energy-joules")?,
        energy_source: a.energy_source,
        grid_bytes_sent: a.grid_bytes_sent,
        grid_bytes_received: a.grid_bytes_received,
        signature: String::new(),
    };
    let status = node_client::submit(r, &key, &a.url, a.attempts, a.ca.as_deref())?;
    println!("{status}");
    Ok(())
}

fn energy_source(text: &str) -> Result<report::EnergySource, String> {
    report::EnergySource::from_name(text).ok_or_else(|| {
        format!("`{text}` is not an energy source: use none, rapl, shelly or tasmota")
    })
}

/// `quid node reports NODE`: the node's recorded reports, oldest first, with the energy
/// source each names (`unstated` for a version 2 report).
pub fn reports(config: &Config, node: &str, json: bool) -> anyhow::Result<()> {
    let store = Store::open(&config.daemon.state_dir)?;
    let rows = store.node_reports(node)?;
    if json {
        let lines: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "seq": r.seq,
                    "period_start": report::rfc3339(r.period.start),
                    "period_end": report::rfc3339(r.period.end),
                    "cpu_core_micros": r.cpu_core_micros,
                    "storage_byte_seconds": r.storage_byte_seconds,
                    "energy_microjoules": r.energy_microjoules,
                    "energy_source": r.energy_source.name(),
                    "grid_bytes_sent": r.grid_bytes[0],
                    "grid_bytes_received": r.grid_bytes[1],
                    "outcome": r.outcome,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "node": node, "reports": lines }));
        return Ok(());
    }
    if rows.is_empty() {
        anyhow::bail!(
            "no report of node {} is recorded (check the id against the nodes file)",
            report::quote(node)
        );
    }
    println!(
        "{:>8}  {:<20}  {:<20}  {:>16}  {:>20}  {:>16}  {:<8}  outcome",
        "seq",
        "from",
        "to",
        "cpu_core_micros",
        "storage_byte_seconds",
        "energy_microjoules",
        "source"
    );
    for r in rows {
        println!(
            "{:>8}  {:<20}  {:<20}  {:>16}  {:>20}  {:>16}  {:<8}  {}",
            r.seq,
            report::rfc3339(r.period.start),
            report::rfc3339(r.period.end),
            r.cpu_core_micros,
            r.storage_byte_seconds,
            r.energy_microjoules,
            r.energy_source.name(),
            r.outcome
        );
    }
    Ok(())
}
