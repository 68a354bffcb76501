//! `[store] url = "postgresql://…"` and its companions: where the shared store is, who this
//! router is, and how it authenticates. A password never sits in the config file.

use std::{fmt, path::PathBuf, str::FromStr};

use serde::{Deserialize, Deserializer, de};

/// The keys of `[store]` that belong to the shared store (the others are the retention's).
pub const KEYS: [&str; 6] = [
    "url",
    "router_id",
    "password_file",
    "ca_file",
    "ship_rows",
    "tables",
];

/// Environment variable read for the database password when `password_file` is not set.
pub const PASSWORD_ENV: &str = "QUID_STORE_PASSWORD";

/// The shared store of several routers (`[store] url`, `router_id`, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedConfig {
    /// `postgresql://user@host:port/database[?options]`, without a password.
    pub url: SharedUrl,
    /// This router's name in the fleet; every router needs its own.
    pub router_id: RouterId,
    /// A file holding the database password (else [`PASSWORD_ENV`], else none: trust,
    /// peer or certificate authentication).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA certificate(s), PEM: TLS to the database, the server's name checked against them.
    /// Without it the connection is plain TCP (a private link or loopback only).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The most usage rows one shipment carries (default 500,000).
    #[serde(default = "default_ship_rows")]
    pub ship_rows: usize,
    /// Where the subscriber table and the nodes file come from (default: the files).
    #[serde(default)]
    pub tables: TableSource,
}

/// Where a router's subscriber table and nodes file come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableSource {
    /// The files the config names, edited on each router.
    #[default]
    Files,
    /// The shared store: `quid cluster push-table` changes them once for every router, which
    /// writes them to its configured files and reloads.
    Shared,
}

fn default_ship_rows() -> usize {
    500_000
}

/// A router's id: 1 to 64 letters, digits, `.`, `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouterId(String);

impl RouterId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RouterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a router id or a store url is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedConfigError {
    #[error(
        "store.router_id {0:?} is not a router id: use 1 to 64 letters, digits, '.', '-' or '_'"
    )]
    RouterId(String),
    #[error("store.url is not a PostgreSQL connection URL ({0}): write postgresql://user@host/db")]
    Url(String),
    #[error(
        "store.url carries a password: remove it, and put it in the file store.password_file \
         names (or in the environment variable QUID_STORE_PASSWORD)"
    )]
    PasswordInUrl,
    #[error("store.ship_rows must be at least 1000 (it is {0})")]
    ShipRows(usize),
}

impl FromStr for RouterId {
    type Err = SharedConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if ok {
            Ok(RouterId(s.to_owned()))
        } else {
            Err(SharedConfigError::RouterId(s.to_owned()))
        }
    }
}

impl<'de> Deserialize<'de> for RouterId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// A PostgreSQL URL without a password, parsed once.
#[derive(Clone)]
pub struct SharedUrl {
    text: String,
    parsed: tokio_postgres::Config,
}

impl SharedUrl {
    /// The parsed connection settings (a copy: the password is added to it at connect).
    pub fn settings(&self) -> tokio_postgres::Config {
        self.parsed.clone()
    }
}

impl fmt::Debug for SharedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for SharedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for SharedUrl {
    type Err = SharedConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !(s.starts_with("postgresql://") || s.starts_with("postgres://")) {
            return Err(SharedConfigError::Url(
                "it must start with postgresql://".into(),
            ));
        }
        let parsed = tokio_postgres::Config::from_str(s)
            .map_err(|e| SharedConfigError::Url(e.to_string()))?;
        if parsed.get_password().is_some() {
            return Err(SharedConfigError::PasswordInUrl);
        }
        Ok(SharedUrl {
            text: s.to_owned(),
            parsed,
        })
    }
}

impl<'de> Deserialize<'de> for SharedUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl SharedConfig {
    /// Checks what serde cannot: the shipment size.
    pub fn check(&self) -> Result<(), SharedConfigError> {
        if self.ship_rows < 1000 {
            return Err(SharedConfigError::ShipRows(self.ship_rows));
        }
        Ok(())
    }

    /// The TLS client config for the database: trusting `ca_file`'s certificates, or `None`
    /// (plain TCP) without one.
    pub fn tls(
        &self,
    ) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, crate::http::tls::TlsError> {
        self.ca_file
            .as_deref()
            .map(crate::http::tls::client_trusting)
            .transpose()
    }

    /// The database password: `password_file`'s first line, else [`PASSWORD_ENV`], else none.
    pub fn password(&self) -> std::io::Result<Option<String>> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("store.password_file {}: {e}", path.display()),
                )
            })?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
        }
        Ok(std::env::var(PASSWORD_ENV).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_ids_and_urls_are_checked() {
        assert!("pop-north.1_a".parse::<RouterId>().is_ok());
        for bad in ["", "a b", "x/y", "é", &"r".repeat(65)] {
            assert!(bad.parse::<RouterId>().is_err(), "{bad:?}");
        }
        assert!(
            "postgresql://quid@db.example.net:5433/books?sslmode=require"
                .parse::<SharedUrl>()
                .is_ok()
        );
        assert_eq!(
            "postgresql://quid:secret@db/books"
                .parse::<SharedUrl>()
                .err(),
            Some(SharedConfigError::PasswordInUrl)
        );
        assert!(matches!(
            "mysql://db/books".parse::<SharedUrl>(),
            Err(SharedConfigError::Url(_))
        ));
        assert!(matches!(
            "postgresql://db/books?sslmode=sometimes".parse::<SharedUrl>(),
            Err(SharedConfigError::Url(_))
        ));
    }
}
