//! `quid node report`: builds a report, signs it with the node's key and submits it, retrying
//! when the answer says to (no answer, 408, 429, 503). Resubmitting is safe: the daemon recognises
//! an identical report and answers `already_recorded`.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use ed25519_dalek::SigningKey;

use crate::settlement::report::Report;

/// Why a decimal figure cannot be sent exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not digits with at most one '.'.
    #[error("not a decimal number: use digits and at most one '.', like 3600.25")]
    Syntax,
    /// More than 6 decimal places: a report carries whole millionths.
    #[error(
        "more than 6 decimal places: a report carries whole millionths; round it, or give the \
         exact integer with --cpu-core-micros / --energy-microjoules"
    )]
    Precision,
    /// Larger than a report may carry.
    #[error(
        "too large: at most {} millionths",
        crate::settlement::report::MAX_FIGURE
    )]
    Range,
}

/// A non-negative decimal (`3600`, `0.5`, `21487.558`) as an exact number of millionths,
/// parsed as text: no float rounding can change what is signed.
pub fn decimal_micros(text: &str) -> Result<u64, DecimalError> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(DecimalError::Syntax);
    }
    if frac.len() > 6 {
        return Err(DecimalError::Precision);
    }
    let mut value: u64 = 0;
    for b in int
        .bytes()
        .chain(frac.bytes())
        .chain("000000".bytes().skip(frac.len()))
    {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(DecimalError::Range)?;
    }
    if value > crate::settlement::report::MAX_FIGURE {
        return Err(DecimalError::Range);
    }
    Ok(value)
}

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
                // The report is in the books (whoever delivered it first): that is success,
                // whatever status a daemon answers it with.
                if reason == "already_recorded" || v["status"] == "already_recorded" {
                    return Ok("already_recorded".to_owned());
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_become_exact_millionths_or_a_clear_error() {
        assert_eq!(decimal_micros("3600"), Ok(3_600_000_000));
        assert_eq!(decimal_micros("21487.558"), Ok(21_487_558_000));
        assert_eq!(decimal_micros(".5"), Ok(500_000));
        assert_eq!(decimal_micros("100.000001"), Ok(100_000_001));
        assert_eq!(
            decimal_micros("100.00000000000001"),
            Err(DecimalError::Precision)
        );
        for bad in ["", ".", "-1", "1e3", "1.2.3", " 1", "NaN"] {
            assert_eq!(decimal_micros(bad), Err(DecimalError::Syntax), "{bad}");
        }
        assert_eq!(
            decimal_micros("9223372036854.775807"),
            Ok(i64::MAX.unsigned_abs())
        );
        assert_eq!(
            decimal_micros("9223372036854.775808"),
            Err(DecimalError::Range)
        );
        assert_eq!(
            decimal_micros("99999999999999999999"),
            Err(DecimalError::Range)
        );
    }
}
