//! `quid node keygen|report`: what a grid node runs to make its key and to sign and submit
//! its contribution reports.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use quid::settlement::{node_client, report};

use super::secret_file::write_secret;

/// `quid node keygen`: the secret to `out`, the public key to stdout.
pub fn keygen(out: &Path) -> anyhow::Result<()> {
    let key = report::keygen()?;
    write_secret(out, 0o600, &hex::encode(key.to_bytes()))?;
    println!("{}", hex::encode(key.verifying_key().to_bytes()));
    Ok(())
}

/// One `quid node report` as given on the command line.
pub struct ReportArgs {
    pub url: String,
    pub key: PathBuf,
    pub node: String,
    pub seq: u64,
    pub from: String,
    pub to: String,
    pub cpu_core_micros: Option<u64>,
    pub cpu_core_seconds: Option<String>,
    pub storage_byte_seconds: u64,
    pub energy_microjoules: Option<u64>,
    pub energy_joules: Option<String>,
    pub grid_bytes_sent: u64,
    pub grid_bytes_received: u64,
    pub attempts: u32,
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
        grid_bytes_sent: a.grid_bytes_sent,
        grid_bytes_received: a.grid_bytes_received,
        signature: String::new(),
    };
    let status = node_client::submit(r, &key, &a.url, a.attempts, a.ca.as_deref())?;
    println!("{status}");
    Ok(())
}
