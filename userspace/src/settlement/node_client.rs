//! `quid node report`: builds a report, signs it with the node's key and submits it, retrying
//! when the answer says to (no answer, 408, 429, 503). Resubmitting is safe: the daemon recognises
//! an identical report and answers `already_recorded`. The report format, key file, exact
//! decimals and one delivery attempt live in the `quid-report` crate, shared with `quid-node`.

use std::{path::Path, time::Duration};

use anyhow::bail;
use ed25519_dalek::SigningKey;
pub use quid_report::decimal::{DecimalError, decimal_micros};
use quid_report::delivery::{Delivery, post_once};

use crate::settlement::report::Report;

/// Reads a secret key written by `quid node keygen`.
pub fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    Ok(quid_report::key::read_key(path)?)
}

/// Signs `report` and posts it to `url` (`http://host:port` or `https://host:port`), trying
/// up to `attempts` times; `ca` is a PEM file of certificates to trust instead of the public
/// roots. Returns the daemon's status (`accepted` or `already_recorded`).
pub fn submit(
    mut report: Report,
    key: &SigningKey,
    url: &str,
    attempts: u32,
    ca: Option<&Path>,
) -> anyhow::Result<String> {
    report.sign(key)?;
    let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        agent = agent.tls_config(crate::http::tls::client_trusting(ca)?);
    }
    let agent = agent.build();
    let mut delay = Duration::from_millis(200);
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        match post_once(&agent, url, &report) {
            Delivery::Acknowledged(status) => return Ok(status),
            Delivery::Refused(text) => bail!("report refused: {text}"),
            Delivery::Retry(text) => last = text,
        }
        if attempt < attempts {
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
    bail!(
        "report not acknowledged after {attempts} attempts (last: {last}); it is safe to send it again"
    )
}
