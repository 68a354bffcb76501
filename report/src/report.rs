//! Node contribution reports: the JSON a node sends, the canonical bytes its signature covers,
//! and signing and verifying them with ed25519.
//!
//! Canonical encoding, versions 2 and 3 (all integers big-endian):
//!
//! | field | encoding |
//! |---|---|
//! | magic | the 15 bytes `quid-report-v2` (`-v3` for version 3) and a 0 byte |
//! | node | u16 length, then the id's UTF-8 bytes |
//! | seq | u64 |
//! | period_start, period_end | i64 unix seconds (UTC) |
//! | cpu_core_micros, storage_byte_seconds, energy_microjoules | u64 |
//! | grid_bytes_sent, grid_bytes_received | u64 |
//! | energy_source (version 3 only) | u8: 0 none, 1 RAPL, 2 Shelly, 3 Tasmota |
//!
//! A report with `energy_source` is version 3, one without is version 2: the magic differs, so
//! adding, removing or changing the source of a signed report breaks its signature.
//!
//! Every figure is an integer in base units (core-microseconds, byte-seconds, microjoules): a
//! JSON integer parses to exactly one u64 in every implementation, so the bytes the daemon
//! re-encodes are the bytes the node signed. Version 1 carried f64 figures, and a decimal that
//! needs 17 significant digits does not survive every parser's round trip, which turned honest
//! reports into `bad_signature`.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The magic prefix of the canonical encoding of a version 2 report.
pub const MAGIC: &[u8; 15] = b"quid-report-v2\0";

/// The magic prefix of the canonical encoding of a version 3 report.
pub const MAGIC_V3: &[u8; 15] = b"quid-report-v3\0";

/// Where a report's energy figure comes from (version 3): the router's tariff can price a
/// meter (an ISP-supplied plug) differently from the CPU package's own estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergySource {
    /// No energy is claimed (the figure must be 0).
    None,
    /// RAPL, the CPU package's estimate (`/sys/class/powercap/intel-rapl:*`).
    Rapl,
    /// A Shelly Gen2 metering plug (`Switch.GetStatus` `aenergy.total`).
    Shelly,
    /// A Tasmota metering plug (`Status 8` `ENERGY.Total`).
    Tasmota,
}

impl EnergySource {
    /// Every source, in the order of their codes.
    pub const ALL: [EnergySource; 4] = [
        EnergySource::None,
        EnergySource::Rapl,
        EnergySource::Shelly,
        EnergySource::Tasmota,
    ];

    /// The byte the canonical encoding carries.
    pub fn code(self) -> u8 {
        match self {
            EnergySource::None => 0,
            EnergySource::Rapl => 1,
            EnergySource::Shelly => 2,
            EnergySource::Tasmota => 3,
        }
    }

    /// The name in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            EnergySource::None => "none",
            EnergySource::Rapl => "rapl",
            EnergySource::Shelly => "shelly",
            EnergySource::Tasmota => "tasmota",
        }
    }

    /// The source named `text` (as [`EnergySource::as_str`] writes it).
    pub fn from_name(text: &str) -> Option<EnergySource> {
        EnergySource::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// The largest figure a report may carry: the store keeps figures as SQLite INTEGER (i64),
/// and a larger u64 would not read back as the number that was signed.
pub const MAX_FIGURE: u64 = i64::MAX.unsigned_abs();

/// A report as sent to `POST /v1/reports`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The registered node id.
    pub node: String,
    /// Rises with every report of the node.
    pub seq: u64,
    /// RFC 3339 in UTC (`2026-11-24T10:00:00Z`).
    pub period_start: String,
    /// RFC 3339 in UTC, after `period_start`.
    pub period_end: String,
    /// CPU time supplied, in core-microseconds (cgroup v2 `cpu.stat` `usage_usec`).
    pub cpu_core_micros: u64,
    /// Storage supplied, in byte-seconds.
    pub storage_byte_seconds: u64,
    /// Electricity supplied, in microjoules (RAPL `energy_uj`).
    pub energy_microjoules: u64,
    /// Where the energy figure comes from: present in a version 3 report, absent in a
    /// version 2 one (whose source nobody stated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_source: Option<EnergySource>,
    /// Bytes the node sent on behalf of the grid in the period, as its own meter saw them.
    pub grid_bytes_sent: u64,
    /// Bytes the node received on behalf of the grid.
    pub grid_bytes_received: u64,
    /// Hex ed25519 signature over [`Report::canonical`] (either case; stored lowercase).
    #[serde(default)]
    pub signature: String,
}

/// Why a report could not even be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A period bound is not RFC 3339 UTC.
    #[error("`{field}` is not an RFC 3339 UTC time: {value}")]
    Time { field: &'static str, value: String },
    /// The node id is empty, too long or has other characters.
    #[error("node id must be 1 to 64 letters, digits, '.', '_' or '-'")]
    NodeId,
    /// The signature is not 64 bytes of hex.
    #[error("signature must be 128 hex digits")]
    SignatureFormat,
    /// The JSON is not a version 2 or 3 report.
    #[error("{0}")]
    Json(String),
    /// A version 1 report (float figures), which this daemon no longer takes.
    #[error(
        "this is a version 1 report with float figures; send version 2: integers in base units \
         `cpu_core_micros`, `storage_byte_seconds` and `energy_microjoules` (upgrade the node's quid)"
    )]
    Version1,
}

/// The longest text of a request that an answer or a log line repeats: the rest is cut, so a
/// hostile body cannot make the daemon write more than it was sent.
pub const QUOTE_CHARS: usize = 64;

/// `text` cut to [`QUOTE_CHARS`] characters, with control characters escaped, for logs and
/// answers that repeat what a client sent.
pub fn quote(text: &str) -> String {
    quote_n(text, QUOTE_CHARS)
}

/// `text` cut to `max` characters (then `...`), with control characters escaped.
pub fn quote_n(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads a request body as a report; the error says what to fix, and never repeats more than
/// a few dozen characters of the body.
pub fn parse(body: &[u8]) -> Result<Report, DecodeError> {
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        // serde names the first unknown field: a v1 figure means an old node.
        if ["`cpu_core_seconds`", "`energy_joules`"]
            .iter()
            .any(|f| text.starts_with(&format!("unknown field {f}")))
        {
            DecodeError::Version1
        } else {
            // A parser's message quotes the body: room for the message, not for the body.
            DecodeError::Json(quote_n(&text, 4 * QUOTE_CHARS))
        }
    })
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
        self.end.saturating_sub(self.start)
    }
}

fn time(field: &'static str, value: &str) -> Result<i64, DecodeError> {
    let err = || DecodeError::Time {
        field,
        value: quote(value),
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
        let mut out = Vec::with_capacity(16 + 2 + id.len() + 8 * 8 + 1);
        out.extend_from_slice(match self.energy_source {
            None => MAGIC,
            Some(_) => MAGIC_V3,
        });
        let len = u16::try_from(id.len()).map_err(|_| DecodeError::NodeId)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&p.start.to_be_bytes());
        out.extend_from_slice(&p.end.to_be_bytes());
        for figure in self.figures().map(|(_, v)| v).into_iter().skip(1) {
            out.extend_from_slice(&figure.to_be_bytes());
        }
        if let Some(source) = self.energy_source {
            out.push(source.code());
        }
        Ok(out)
    }

    /// Signs the report in place with the node's key.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), DecodeError> {
        let sig = key.sign(&self.canonical()?);
        self.signature = hex::encode(sig.to_bytes());
        Ok(())
    }

    /// Every integer the report carries, by its field name, in canonical order after `seq`
    /// (`seq` first): what admission checks against [`MAX_FIGURE`].
    pub fn figures(&self) -> [(&'static str, u64); 6] {
        [
            ("seq", self.seq),
            ("cpu_core_micros", self.cpu_core_micros),
            ("storage_byte_seconds", self.storage_byte_seconds),
            ("energy_microjoules", self.energy_microjoules),
            ("grid_bytes_sent", self.grid_bytes_sent),
            ("grid_bytes_received", self.grid_bytes_received),
        ]
    }

    /// The signature's 64 bytes: hex in either case reads the same, so the case of a letter
    /// never makes two copies of one report differ.
    pub fn signature_bytes(&self) -> Result<[u8; 64], DecodeError> {
        hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError::SignatureFormat)
    }

    /// Whether the signature is the node's over the canonical bytes.
    pub fn verify(&self, key: &VerifyingKey) -> Result<bool, DecodeError> {
        let bytes = self.signature_bytes()?;
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
            cpu_core_micros: 7_200_500_000,
            storage_byte_seconds: 3_600_000_000_000,
            energy_microjoules: 90_000_000_000,
            energy_source: None,
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
            format!("717569642d7265706f72742d763200{TEST_VECTOR_FIELDS}")
        );
        r.sign(&key).unwrap();
        assert_eq!(r.signature, TEST_VECTOR_SIGNATURE);
        assert_eq!(
            hex::encode(key.verifying_key().to_bytes()),
            "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
        );
        assert!(r.verify(&key.verifying_key()).unwrap());
    }

    /// The test vector's bytes after the magic, up to the last figure.
    const TEST_VECTOR_FIELDS: &str = "0009\
                                      6661726d2d70692d31\
                                      0000000000000007\
                                      000000006b056020\
                                      000000006b056e30\
                                      00000001ad2ee920\
                                      0000034630b8a000\
                                      00000014f46b0400\
                                      00000000000f4240\
                                      000000000003d090";

    /// Computed independently (Python's `cryptography`, Ed25519PrivateKey over the bytes above).
    const TEST_VECTOR_SIGNATURE: &str = "16c391b4ed0a933a69df7cd816abdb664a9bcc9643104f67b3b8bf4bf984d313\
                                         e90fccfaff529a8d2688d7b7b51bf1280348fd3f10109b8837155b2cb18a4c0b";

    /// The version 3 test vector: the report above from a Shelly plug (source byte 2).
    #[test]
    fn a_version_3_report_matches_its_test_vector() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut r = sample();
        r.energy_source = Some(EnergySource::Shelly);
        assert_eq!(
            hex::encode(r.canonical().unwrap()),
            format!("717569642d7265706f72742d763300{TEST_VECTOR_FIELDS}02")
        );
        r.sign(&key).unwrap();
        // Computed independently (Python's `cryptography`, Ed25519PrivateKey over the bytes).
        assert_eq!(
            r.signature,
            "79c4acd4e4483c4aefee5610d9a77466110ffdbdee000a9c2305c49d6ab556fc\
             a5374493e527511e94410b3e75d9e071a06030f06e743bf4eff869e35087590f"
        );
        let json = String::from_utf8(serde_json::to_vec(&r).unwrap()).unwrap();
        assert!(json.contains("\"energy_source\":\"shelly\""), "{json}");
        assert_eq!(parse(json.as_bytes()).unwrap(), r);
    }

    /// The source is signed: changing it, dropping it (a version 2 report of the same
    /// figures) or adding one to a signed version 2 report breaks the signature.
    #[test]
    fn the_energy_source_is_signed_both_ways() {
        let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let signing = SigningKey::from_bytes(&[7u8; 32]);
        for source in EnergySource::ALL {
            let mut r = sample();
            r.energy_source = Some(source);
            r.sign(&signing).unwrap();
            assert!(r.verify(&key).unwrap());
            for other in EnergySource::ALL.into_iter().filter(|&o| o != source) {
                let mut forged = r.clone();
                forged.energy_source = Some(other);
                assert!(!forged.verify(&key).unwrap(), "{source:?} as {other:?}");
            }
            let mut dropped = r.clone();
            dropped.energy_source = None;
            assert!(!dropped.verify(&key).unwrap());
            assert_eq!(EnergySource::from_name(source.as_str()), Some(source));
        }
        let mut v2 = sample();
        v2.sign(&signing).unwrap();
        // A version 2 report reads and verifies as before, without the field in its JSON.
        let json = serde_json::to_vec(&v2).unwrap();
        assert!(!String::from_utf8_lossy(&json).contains("energy_source"));
        assert!(parse(&json).unwrap().verify(&key).unwrap());
        let mut added = v2.clone();
        added.energy_source = Some(EnergySource::None);
        assert!(!added.verify(&key).unwrap());
        // An unknown source is refused by the decoder.
        let text = String::from_utf8(json)
            .unwrap()
            .replace("\"signature\"", "\"energy_source\":\"solar\",\"signature\"");
        assert!(matches!(parse(text.as_bytes()), Err(DecodeError::Json(_))));
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut r = sample();
        r.sign(&key).unwrap();
        let edits: [fn(&mut Report); 7] = [
            |r| r.seq += 1,
            |r| r.cpu_core_micros += 1,
            |r| r.storage_byte_seconds += 1,
            |r| r.energy_microjoules += 1,
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
        // The case of a hex letter is not part of the signature.
        let mut upper = r.clone();
        upper.signature = r.signature.to_uppercase();
        assert!(upper.verify(&key.verifying_key()).unwrap());
        assert_eq!(upper.signature_bytes(), r.signature_bytes());
    }

    /// What a node signs is what the daemon re-encodes, for every figure up to the largest
    /// the store holds (v1's floats failed this for about 8% of random doubles).
    #[test]
    fn every_figure_survives_the_json_round_trip() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..2_000u64 {
            // xorshift: many magnitudes, including 17+ significant digits.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut r = sample();
            let v = (x >> (i % 64)) & MAX_FIGURE;
            r.cpu_core_micros = v;
            r.storage_byte_seconds = MAX_FIGURE - v;
            r.energy_microjoules = v / 3;
            r.sign(&key).unwrap();
            let back = parse(&serde_json::to_vec(&r).unwrap()).unwrap();
            assert_eq!(back, r);
            assert!(back.verify(&key.verifying_key()).unwrap(), "{v}");
        }
    }

    #[test]
    fn a_version_1_report_is_refused_naming_the_version_2_fields() {
        let v1 = br#"{"node":"pi","seq":1,"period_start":"2026-11-24T10:00:00Z",
            "period_end":"2026-11-24T11:00:00Z","cpu_core_seconds":7200.5,
            "storage_byte_seconds":3.6e12,"energy_joules":90000.0,"grid_bytes_sent":1,
            "grid_bytes_received":2,"signature":""}"#;
        let err = parse(v1).unwrap_err();
        assert_eq!(err, DecodeError::Version1);
        assert!(err.to_string().contains("`cpu_core_micros`"), "{err}");
        // A figure that is not a u64 is refused by the decoder: negative, fractional, too big.
        for bad in ["-1", "1.5", "18446744073709551616", "1e3"] {
            let text = String::from_utf8(serde_json::to_vec(&sample()).unwrap())
                .unwrap()
                .replace(
                    "\"cpu_core_micros\":7200500000",
                    &format!("\"cpu_core_micros\":{bad}"),
                );
            assert!(
                matches!(parse(text.as_bytes()), Err(DecodeError::Json(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn quoted_text_is_bounded_and_escaped() {
        let long = "x".repeat(15_000);
        assert_eq!(quote(&long).len(), QUOTE_CHARS + 3);
        assert_eq!(quote("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        let err = parse(format!("{{\"{long}\":1}}").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.len() < 4 * QUOTE_CHARS + 8, "{}", err.len());
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
