//! `quid node report`: builds a report, signs it with the node's key and submits it, retrying
//! when the answer says to (no answer, 408, 429, 503). Resubmitting is safe: the daemon recognises
//! an identical report and answers `already_recorded`.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use ed25519_dalek::SigningKey;

use crate::settlement::report::Report;

/// Reads a secret key written by `quid node keygen`.
pub fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the node key {}", path.display()))?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{} is not a node key (64 hex digits)", path.display()))?;
    Ok(SigningKey::from_bytes(&bytes))
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
    let body = serde_json::to_string(&report)?;
    let endpoint = format!("{}/v1/reports", url.trim_end_matches('/'));
    let mut delay = Duration::from_millis(200);
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        let answer = agent
            .post(&endpoint)
            .set("Content-Type", "application/json")
            .send_string(&body);
        let (retry, text) = match answer {
            Ok(resp) => {
                let v: serde_json::Value = resp
                    .into_string()
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                return Ok(v["status"].as_str().unwrap_or("accepted").to_owned());
            }
            Err(ureq::Error::Status(code, resp)) => {
                let v: serde_json::Value = resp
                    .into_string()
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                let reason = v["reason"].as_str().unwrap_or("?").to_owned();
                let message = v["message"].as_str().unwrap_or("").to_owned();
                (
                    code == 408 || code == 429 || code == 503,
                    format!("{code} {reason}: {message}"),
                )
            }
            Err(e) => (true, e.to_string()),
        };
        if !retry {
            bail!("report refused: {text}");
        }
        last = text;
        if attempt < attempts {
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
    bail!(
        "report not acknowledged after {attempts} attempts (last: {last}); it is safe to send it again"
    )
}
