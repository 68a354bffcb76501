//! `[accounting_out]`: the billing server quid reports its counts to, the shared secret (read
//! from a file: never in quid.toml), how quid names itself, and the Interim-Update cadence
//! and retransmissions.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer, de};

use crate::radius::config::{SecretError, read_secret};

/// `[accounting_out]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountingOutConfig {
    /// The accounting server's UDP address (`"192.0.2.10:1813"`).
    pub server: SocketAddr,
    /// File holding the shared secret (its first line); relative to the config file.
    pub secret_file: PathBuf,
    /// NAS-Identifier in every request: how the billing server knows this router.
    #[serde(deserialize_with = "nas_identifier")]
    pub nas_identifier: String,
    /// Seconds between a session's Interim-Updates.
    #[serde(default = "default_interval", deserialize_with = "interval")]
    pub interval_secs: u64,
    /// Seconds before the first retransmission (doubled for each next one, up to 8 times).
    #[serde(default = "default_timeout", deserialize_with = "timeout")]
    pub timeout_secs: u64,
    /// Sends of one request in all (the first and its retransmissions) before it is given up.
    #[serde(default = "default_attempts", deserialize_with = "attempts")]
    pub attempts: u32,
    /// Add a Message-Authenticator (RFC 3579) to every request.
    #[serde(default)]
    pub message_authenticator: bool,
}

fn default_interval() -> u64 {
    300
}

fn default_timeout() -> u64 {
    3
}

fn default_attempts() -> u32 {
    5
}

fn ranged<'de, D: Deserializer<'de>>(d: D, lo: u64, hi: u64, what: &str) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if !(lo..=hi).contains(&v) {
        return Err(de::Error::custom(format!(
            "must be between {lo} and {hi} {what}, got {v}"
        )));
    }
    Ok(v)
}

fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, 1, 86_400, "seconds (a day)")
}

fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ranged(d, 1, 60, "seconds")
}

fn attempts<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, 1, 20, "sends").map(|v| u32::try_from(v).unwrap_or(20))
}

fn nas_identifier<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() || s.len() > 253 {
        return Err(de::Error::custom(format!(
            "must be 1 to 253 bytes (the name the billing server knows this router by), got {}",
            s.len()
        )));
    }
    Ok(s)
}

/// The loaded configuration: the section and its secret.
#[derive(Clone)]
pub struct AccountingOut {
    pub config: AccountingOutConfig,
    /// The shared secret with the accounting server.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for AccountingOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of every log line.
        f.debug_struct("AccountingOut")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AccountingOutConfig {
    /// Makes a relative `secret_file` relative to `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.secret_file.is_relative() {
            self.secret_file = base.join(&self.secret_file);
        }
    }

    /// Reads the secret file.
    pub fn load(&self) -> Result<AccountingOut, SecretError> {
        Ok(AccountingOut {
            config: self.clone(),
            secret: read_secret(&self.secret_file)?,
        })
    }

    /// The wait before retransmission `n` (1 for the first): doubled each time, at most 8
    /// times the first.
    pub fn backoff(&self, n: u32) -> Duration {
        Duration::from_secs(self.timeout_secs << n.saturating_sub(1).min(3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn parse(text: &str) -> Result<AccountingOutConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    const GOOD: &str = "server = \"192.0.2.10:1813\"\nsecret_file = \"billing.secret\"\nnas_identifier = \"edge-1\"\n";

    #[test]
    fn defaults_and_a_secret_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("billing.secret");
        std::fs::write(&secret, "b1lling\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut c = parse(GOOD).unwrap();
        c.resolve_paths(dir.path());
        assert_eq!((c.interval_secs, c.timeout_secs, c.attempts), (300, 3, 5));
        assert_eq!(
            [1, 2, 3, 4, 5].map(|n| c.backoff(n).as_secs()),
            [3, 6, 12, 24, 24]
        );
        let loaded = c.load().unwrap();
        assert_eq!(loaded.secret, b"b1lling");
        assert!(!format!("{loaded:?}").contains("b1lling"));
    }

    #[test]
    fn mistakes_are_refused_with_what_to_do() {
        for (extra, want) in [
            ("secret = \"x\"\n", "unknown field `secret`"),
            ("interval_secs = 0\n", "between 1 and 86400"),
            ("timeout_secs = 61\n", "between 1 and 60"),
            ("attempts = 0\n", "between 1 and 20"),
        ] {
            let err = parse(&format!("{GOOD}{extra}")).unwrap_err();
            assert!(err.contains(want), "{extra}: {err}");
        }
        let err = parse(&GOOD.replace("edge-1", "")).unwrap_err();
        assert!(err.contains("1 to 253 bytes"), "{err}");
        let err = parse(&GOOD.replace("192.0.2.10:1813", "billing")).unwrap_err();
        assert!(err.contains("server"), "{err}");
        let mut c = parse(GOOD).unwrap();
        c.resolve_paths(Path::new("/nonexistent"));
        assert!(
            c.load()
                .unwrap_err()
                .to_string()
                .contains("cannot read secret_file /nonexistent/billing.secret")
        );
    }
}
