//! Node contribution reports: the JSON a node sends, the canonical bytes its signature covers,
//! and signing and verifying them with ed25519.
//!
//! Canonical encoding, version 1 (all integers big-endian):
//!
//! | field | encoding |
//! |---|---|
//! | magic | the 15 bytes `quid-report-v1` and a 0 byte |
//! | node | u16 length, then the id's UTF-8 bytes |
//! | seq | u64 |
//! | period_start, period_end | i64 unix seconds (UTC) |
//! | cpu_core_seconds, storage_byte_seconds, energy_joules | f64, IEEE 754 binary64 bits |
//! | grid_bytes_sent, grid_bytes_received | u64 |
//!
//! Floats are encoded by their bits, not their decimal text, so every implementation signs
//! the same bytes; a non-finite or negative figure still encodes, and is refused by the
//! admission rules, not by the decoder.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The magic prefix of the canonical encoding.
pub const MAGIC: &[u8; 15] = b"quid-report-v1\0";

/// A report as sent to `POST /v1/reports`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub node: String,
    pub seq: u64,
    /// RFC 3339 in UTC (`2026-11-24T10:00:00Z`).
    pub period_start: String,
    pub period_end: String,
    pub cpu_core_seconds: f64,
    pub storage_byte_seconds: f64,
    pub energy_joules: f64,
    /// Bytes the node sent on behalf of the grid in the period, as its own meter saw them.
    pub grid_bytes_sent: u64,
    /// Bytes the node received on behalf of the grid.
    pub grid_bytes_received: u64,
    /// Hex ed25519 signature over [`Report::canonical`].
    #[serde(default)]
    pub signature: String,
}

/// Why a report could not even be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("`{field}` is not an RFC 3339 UTC time: {value}")]
    Time { field: &'static str, value: String },
    #[error("node id must be 1 to 64 letters, digits, '.', '_' or '-'")]
    NodeId,
    #[error("signature must be 128 hex digits")]
    SignatureFormat,
}

/// A report's period in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

impl Period {
    /// Length in seconds (0 or negative when the period is empty or reversed).
    pub fn seconds(&self) -> i64 {
        self.end - self.start
    }
}

fn time(field: &'static str, value: &str) -> Result<i64, DecodeError> {
    let err = || DecodeError::Time {
        field,
        value: value.to_owned(),
    };
    // UTC only: a report names one instant, whatever the node's local zone.
    if !value.ends_with('Z') {
        return Err(err());
    }
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| err())
}

/// Formats unix seconds as the RFC 3339 UTC text reports use.
pub fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

impl Report {
    /// The period, checked to be readable.
    pub fn period(&self) -> Result<Period, DecodeError> {
        Ok(Period {
            start: time("period_start", &self.period_start)?,
            end: time("period_end", &self.period_end)?,
        })
    }

    /// The canonical bytes the signature covers (see the module documentation).
    pub fn canonical(&self) -> Result<Vec<u8>, DecodeError> {
        let id = self.node.as_bytes();
        if id.is_empty()
            || id.len() > 64
            || !id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(DecodeError::NodeId);
        }
        let p = self.period()?;
        let mut out = Vec::with_capacity(16 + 2 + id.len() + 8 * 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&p.start.to_be_bytes());
        out.extend_from_slice(&p.end.to_be_bytes());
        for f in [
            self.cpu_core_seconds,
            self.storage_byte_seconds,
            self.energy_joules,
        ] {
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        out.extend_from_slice(&self.grid_bytes_sent.to_be_bytes());
        out.extend_from_slice(&self.grid_bytes_received.to_be_bytes());
        Ok(out)
    }

    /// Signs the report in place with the node's key.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), DecodeError> {
        let sig = key.sign(&self.canonical()?);
        self.signature = hex::encode(sig.to_bytes());
        Ok(())
    }

    /// Whether the signature is the node's over the canonical bytes.
    pub fn verify(&self, key: &VerifyingKey) -> Result<bool, DecodeError> {
        let bytes: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError::SignatureFormat)?;
        let sig = Signature::from_bytes(&bytes);
        Ok(key.verify_strict(&self.canonical()?, &sig).is_ok())
    }
}

/// A new random node key.
pub fn keygen() -> std::io::Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            node: "farm-pi-1".into(),
            seq: 7,
            period_start: "2026-11-24T10:00:00Z".into(),
            period_end: "2026-11-24T11:00:00Z".into(),
            cpu_core_seconds: 7200.5,
            storage_byte_seconds: 3.6e12,
            energy_joules: 90000.0,
            grid_bytes_sent: 1_000_000,
            grid_bytes_received: 250_000,
            signature: String::new(),
        }
    }

    /// The documented test vector: a fixed key, a fixed report, its bytes and signature.
    #[test]
    fn canonical_encoding_and_signature_match_the_test_vector() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut r = sample();
        assert_eq!(
            hex::encode(r.canonical().unwrap()),
            "717569642d7265706f72742d763100\
             0009\
             6661726d2d70692d31\
             0000000000000007\
             000000006b056020\
             000000006b056e30\
             40bc208000000000\
             428a3185c5000000\
             40f5f90000000000\
             00000000000f4240\
             000000000003d090"
        );
        r.sign(&key).unwrap();
        assert_eq!(r.signature, TEST_VECTOR_SIGNATURE);
        assert_eq!(
            hex::encode(key.verifying_key().to_bytes()),
            "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
        );
        assert!(r.verify(&key.verifying_key()).unwrap());
    }

    /// Computed independently (Python's `cryptography`, Ed25519PrivateKey over the bytes above).
    const TEST_VECTOR_SIGNATURE: &str = "8d7f6ace48a6fea0328d4ffc151987cb139d24e44186ff5e3fc5b04f3700b53a\
                                         9a441c8c48bd23dbd7849931883aeef44f4073da00ad6312870cf960825b5409";

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut r = sample();
        r.sign(&key).unwrap();
        let edits: [fn(&mut Report); 5] = [
            |r| r.seq += 1,
            |r| r.cpu_core_seconds += 0.5,
            |r| r.grid_bytes_sent += 1,
            |r| r.period_end = "2026-11-24T11:00:01Z".into(),
            |r| r.node = "farm-pi-2".into(),
        ];
        for edit in edits {
            let mut forged = r.clone();
            edit(&mut forged);
            assert!(!forged.verify(&key.verifying_key()).unwrap());
        }
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(!r.verify(&other.verifying_key()).unwrap());
    }

    #[test]
    fn unreadable_fields_are_named() {
        let mut r = sample();
        r.period_start = "2026-11-24T10:00:00+01:00".into();
        assert_eq!(
            r.canonical().unwrap_err().to_string(),
            "`period_start` is not an RFC 3339 UTC time: 2026-11-24T10:00:00+01:00"
        );
        let mut r = sample();
        r.node = "a b".into();
        assert_eq!(r.canonical().unwrap_err(), DecodeError::NodeId);
        let mut r = sample();
        r.signature = "zz".into();
        let key = SigningKey::from_bytes(&[7u8; 32]);
        assert_eq!(
            r.verify(&key.verifying_key()).unwrap_err(),
            DecodeError::SignatureFormat
        );
    }
}
