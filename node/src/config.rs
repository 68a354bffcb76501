//! The agent's TOML config (`/etc/quid-node/config.toml`): who the node is, where the router
//! is, and which meter measures each contribution. Every key is checked when the file is
//! read, and a bad one is named with its path.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::energy::EnergySource;

/// The shortest period: the router keeps one row per report, and shorter periods only add
/// rows and signatures.
pub const MIN_PERIOD_SECS: u64 = 60;
/// The longest period one report may cover (the router's `max_period_secs`).
pub const MAX_PERIOD_SECS: u64 = 86_400;

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The node id registered in the router's nodes file.
    pub node: String,
    /// The router's report intake, `http://192.0.2.1:9465`.
    pub router: String,
    /// The node's secret key (written by `quid-node init`).
    pub key: PathBuf,
    /// Where the outbox and the last acknowledged report live.
    pub state_dir: PathBuf,
    /// Seconds per report; periods start on multiples of it (UTC).
    #[serde(default = "default_period")]
    pub period_secs: u64,
    /// Seconds between readings of the meters: shorter than the time RAPL takes to wrap.
    #[serde(default = "default_sample")]
    pub sample_secs: u64,
    /// CPU: the grid workload's cgroup.
    pub cpu: Option<CpuConfig>,
    /// Energy: the meter, or none.
    #[serde(default = "no_energy")]
    pub energy: EnergySource,
    /// Storage: the contributed directory and its reservation.
    pub storage: Option<StorageConfig>,
    /// Grid bytes: the interface the grid workload is confined to.
    pub grid: Option<GridConfig>,
    /// Seconds between asking the router for a due storage audit (below its deadline).
    #[serde(default = "default_audit_poll")]
    pub audit_poll_secs: u64,
}

fn default_audit_poll() -> u64 {
    5
}

/// `[cpu]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuConfig {
    /// The cgroup v2 directory, `/sys/fs/cgroup/grid.slice` (or under
    /// `/sys/fs/cgroup/unified` on a hybrid host).
    pub cgroup: PathBuf,
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The contributed directory.
    pub dir: PathBuf,
    /// Bytes reserved (allocated) in it.
    pub reserve_bytes: u64,
}

/// `[grid]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    /// The network interface, `grid0`.
    pub interface: String,
}

fn default_period() -> u64 {
    900
}

fn default_sample() -> u64 {
    60
}

fn no_energy() -> EnergySource {
    EnergySource::None
}

/// Why the config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A key is missing, unknown or of the wrong type.
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    /// A value is out of its range.
    #[error("{path}: {key} {problem}")]
    Value {
        path: String,
        key: &'static str,
        problem: String,
    },
}

impl Config {
    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and checks config text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Syntax {
                path: path.to_owned(),
                message: format!("at `{}`: {}", e.path(), e.inner().message().trim()),
            })?;
        let bad = |key, problem: String| ConfigError::Value {
            path: path.to_owned(),
            key,
            problem,
        };
        if !(MIN_PERIOD_SECS..=MAX_PERIOD_SECS).contains(&config.period_secs) {
            return Err(bad(
                "period_secs",
                format!(
                    "must be {MIN_PERIOD_SECS} to {MAX_PERIOD_SECS} seconds (900 is 15 minutes)"
                ),
            ));
        }
        if config.sample_secs == 0 || config.sample_secs > config.period_secs {
            return Err(bad(
                "sample_secs",
                "must be at least 1 and at most period_secs".to_owned(),
            ));
        }
        if !(config.router.starts_with("http://") || config.router.starts_with("https://")) {
            return Err(bad(
                "router",
                "must start with http:// or https:// (like http://192.0.2.1:9465)".to_owned(),
            ));
        }
        // The router checks the id too, but a typo found at start beats a refused report.
        let probe = quid_report::report::Report {
            node: config.node.clone(),
            seq: 1,
            period_start: "2026-01-01T00:00:00Z".to_owned(),
            period_end: "2026-01-01T00:15:00Z".to_owned(),
            cpu_core_micros: 0,
            storage_byte_seconds: 0,
            energy_microjoules: 0,
            energy_source: None,
            grid_bytes_sent: 0,
            grid_bytes_received: 0,
            signature: String::new(),
        };
        probe.canonical().map_err(|e| bad("node", e.to_string()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node = "farm-pi-1"
router = "http://192.0.2.1:9465"
key = "/var/lib/quid-node/node.key"
state_dir = "/var/lib/quid-node"

[cpu]
cgroup = "/sys/fs/cgroup/grid.slice"

[energy]
source = "shelly"
url = "http://192.0.2.10"

[storage]
dir = "/srv/grid"
reserve_bytes = 10_000_000_000
"#;

    #[test]
    fn a_full_config_reads_with_defaults() {
        let c = Config::parse(GOOD, "c.toml").unwrap();
        assert_eq!(c.period_secs, 900);
        assert_eq!(
            c.energy,
            EnergySource::Shelly {
                url: "http://192.0.2.10".into(),
                switch: 0
            }
        );
        assert!(c.grid.is_none());
    }

    /// The example the package installs reads as it is, and with its sections uncommented.
    #[test]
    fn the_shipped_example_reads() {
        let text = include_str!("../../dist/quid-node.toml");
        let c = Config::parse(text, "dist/quid-node.toml").unwrap();
        assert_eq!(c.energy, EnergySource::None);
        let all: String = text
            .lines()
            .map(|l| {
                // A commented section header or `key = value`; prose stays a comment.
                l.strip_prefix("# ")
                    .filter(|r| {
                        r.starts_with('[')
                            || r.split_once(" = ").is_some_and(|(k, _)| {
                                k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                            })
                    })
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::parse(&all, "uncommented").unwrap();
        assert!(c.cpu.is_some() && c.storage.is_some() && c.grid.is_some());
        assert_eq!(c.energy.name(), "shelly");
    }

    #[test]
    fn every_bad_key_is_named() {
        let cases = [
            (
                GOOD.replace("node = \"farm-pi-1\"", "node = \"farm pi\""),
                "node",
            ),
            (
                GOOD.replace("source = \"shelly\"", "source = \"solar\""),
                "energy",
            ),
            (GOOD.replace("state_dir", "statedir"), "statedir"),
            (format!("period_secs = 5\n{GOOD}"), "period_secs"),
            (format!("period_secs = -5\n{GOOD}"), "period_secs"),
            (GOOD.replace("http://192.0.2.1:9465", "192.0.2.1"), "router"),
            (
                GOOD.replace("reserve_bytes = 10_000_000_000", "reserve_bytes = \"lots\""),
                "reserve_bytes",
            ),
        ];
        for (text, key) in cases {
            let err = Config::parse(&text, "c.toml").unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
