//! The daemon's TOML config: what to attach where, where the subscriber table lives, and the
//! sizes of the kernel tables. Every error names the file, the line and the field.

pub use crate::kernel::attach_settings::{KernelLog, Role, XdpModeSetting};
use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Deserializer, de};
use toml::Spanned;

/// Anything wrong with a config file, located as precisely as the parser allows.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub daemon: DaemonConfig,
    pub subscribers: SubscribersConfig,
    #[serde(rename = "interface", default)]
    pub interfaces: Vec<InterfaceConfig>,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub grid: GridConfig,
    #[serde(default)]
    pub reports: ReportsConfig,
    #[serde(default)]
    pub tariff: crate::ledger::tariff::Tariff,
    #[serde(default)]
    pub settlement: crate::settlement::matching::SettlementConfig,
    /// Storage audits of the nodes (`[audits]`; absent: storage is credited as declared).
    #[serde(default)]
    pub audits: Option<crate::settlement::audits::AuditConfig>,
    #[serde(default)]
    pub operator: crate::http::operator::OperatorConfig,
    #[serde(default)]
    pub tls: crate::http::tls::TlsConfig,
    #[serde(default)]
    pub http: crate::http::serve::HttpLimits,
    /// The usage tiers' retention and the shared store of several routers (`[store]`).
    #[serde(default)]
    pub store: StoreSection,
    /// RADIUS accounting in (`[radius]`): live address bindings from a NAS.
    #[serde(default)]
    pub radius: Option<crate::radius::config::RadiusConfig>,
    /// Kea's lease files, followed live (`[dhcp]`).
    #[serde(default)]
    pub dhcp: Option<crate::bindings::dhcp::DhcpConfig>,
    /// RADIUS accounting out (`[accounting_out]`): quid's counts to the billing server.
    #[serde(default)]
    pub accounting_out: Option<crate::radius::accounting_out::config::AccountingOutConfig>,
}

/// `[store]`: how long the local books keep each tier, and (with `url`) the shared store this
/// router ships its books to.
#[derive(Debug, Clone, Default)]
pub struct StoreSection {
    /// The usage tiers' retention.
    pub keep: crate::store::Retention,
    /// The shared settlement store (PostgreSQL), when `url` is set.
    pub shared: Option<crate::cluster::config::SharedConfig>,
}

impl<'de> Deserialize<'de> for StoreSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // One TOML table, two owners: the shared store's keys, then the retention's (each
        // refuses keys it does not know).
        let mut table = toml::Table::deserialize(d)?;
        let mut shared = toml::Table::new();
        for key in crate::cluster::config::KEYS {
            if let Some(v) = table.remove(key) {
                shared.insert(key.to_owned(), v);
            }
        }
        let keep = crate::store::Retention::deserialize(toml::Value::Table(table))
            .map_err(de::Error::custom)?;
        let shared = if shared.is_empty() {
            None
        } else {
            let s = crate::cluster::config::SharedConfig::deserialize(toml::Value::Table(shared))
                .map_err(de::Error::custom)?;
            s.check().map_err(de::Error::custom)?;
            Some(s)
        };
        Ok(StoreSection { keep, shared })
    }
}

/// `[reports]`: the node report intake (off unless `listen` is set).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// Where `POST /v1/reports` listens; "" turns the intake off.
    #[serde(default)]
    pub listen: String,
    /// The nodes file (CSV); relative paths are relative to the config file.
    #[serde(default)]
    pub nodes: PathBuf,
    /// Longest period one report may cover, in seconds.
    #[serde(default = "default_max_period")]
    pub max_period_secs: i64,
    /// How far in the future a period may end, in seconds.
    #[serde(default = "default_skew")]
    pub max_skew_secs: i64,
    /// Largest request body accepted.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Reports per second per node (sustained), and the burst allowed.
    #[serde(default = "default_rate")]
    pub rate_per_node: f64,
    #[serde(default = "default_burst")]
    pub burst_per_node: f64,
    /// Requests per second per source address (an IPv6 /64 is one) that fail before a node
    /// is authenticated (unknown node, unreadable, bad signature), and the burst allowed:
    /// charged to the sender, never to the node a forgery names.
    #[serde(default = "default_source_rate")]
    pub rate_per_source: f64,
    #[serde(default = "default_source_burst")]
    pub burst_per_source: f64,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            nodes: PathBuf::new(),
            max_period_secs: default_max_period(),
            max_skew_secs: default_skew(),
            max_body_bytes: default_body(),
            rate_per_node: default_rate(),
            burst_per_node: default_burst(),
            rate_per_source: default_source_rate(),
            burst_per_source: default_source_burst(),
        }
    }
}

fn default_max_period() -> i64 {
    86_400
}

fn default_skew() -> i64 {
    300
}

fn default_body() -> usize {
    16 * 1024
}

fn default_rate() -> f64 {
    10.0
}

fn default_burst() -> f64 {
    20.0
}

fn default_source_rate() -> f64 {
    5.0
}

fn default_source_burst() -> f64 {
    20.0
}

/// `[grid]`: the ISP grid's prefixes; traffic between a subscriber and them is class grid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    /// At most 16 per family, host bits clear.
    #[serde(default)]
    pub prefixes: Vec<Spanned<ipnet::IpNet>>,
}

/// `[metrics]`: the Prometheus exporter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` listens; "" turns the exporter off.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Which subscribers get series of their own: "all", "none" or "top:N" (the rest are
    /// summed into `subscriber="other"`).
    #[serde(default)]
    pub subscribers: SubscriberSeries,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            subscribers: SubscriberSeries::default(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}

/// Which subscribers the exporter lists one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberSeries {
    All,
    None,
    /// The N with the most bytes, plus `other`.
    Top(usize),
}

impl Default for SubscriberSeries {
    fn default() -> Self {
        SubscriberSeries::Top(1000)
    }
}

impl<'de> Deserialize<'de> for SubscriberSeries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "all" => Ok(SubscriberSeries::All),
            "none" => Ok(SubscriberSeries::None),
            _ => s
                .strip_prefix("top:")
                .and_then(|n| n.parse().ok())
                .filter(|&n| n > 0)
                .map(SubscriberSeries::Top)
                .ok_or_else(|| {
                    de::Error::custom(format!(
                        "`{s}` is not one of \"all\", \"none\" or \"top:N\" (N at least 1)"
                    ))
                }),
        }
    }
}

/// `[daemon]`: timing, state and logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Seconds between counter reads (1 to 3600).
    #[serde(default = "default_interval", deserialize_with = "interval_secs")]
    pub interval_secs: u64,
    /// Where the daemon keeps its totals snapshot (and, later, its store).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Kernel-side log level; `off` keeps logging out of the hot path entirely.
    #[serde(default)]
    pub kernel_log: KernelLog,
    /// Where maps and links are pinned (on a bpffs; mounted at /sys/fs/bpf if missing).
    #[serde(default = "default_pin_dir")]
    pub pin_dir: PathBuf,
    /// What SIGINT/SIGTERM does to the XDP programs.
    #[serde(default)]
    pub on_stop: OnStop,
}

/// What happens to the programs when the daemon stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStop {
    /// Leave them attached and pinned: counting goes on, and the next daemon adopts them.
    #[default]
    Keep,
    /// Detach them and remove every pin (the store keeps the totals).
    Detach,
}

fn default_pin_dir() -> PathBuf {
    PathBuf::from("/sys/fs/bpf/quid")
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            interval_secs: default_interval(),
            state_dir: default_state_dir(),
            kernel_log: KernelLog::default(),
            pin_dir: default_pin_dir(),
            on_stop: OnStop::default(),
        }
    }
}

fn default_interval() -> u64 {
    10
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/quid")
}

fn interval_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if !(1..=3600).contains(&v) {
        return Err(de::Error::custom(format!(
            "must be between 1 and 3600 seconds, got {v}"
        )));
    }
    Ok(v)
}

/// `[subscribers]`: the table file and the kernel table sizes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribersConfig {
    /// The subscriber table (CSV); relative paths are relative to the config file.
    pub file: PathBuf,
    /// Subscriber slots in the kernel (per-CPU counters: 64 bytes x CPUs each).
    #[serde(default = "default_capacity", deserialize_with = "capacity")]
    pub capacity: u32,
    /// Prefixes per family the kernel tables hold.
    #[serde(default = "default_prefix_capacity", deserialize_with = "capacity")]
    pub prefix_capacity: u32,
    /// Prefix lengths per family probed before the trie fallback (1 to 8).
    #[serde(default = "default_hash_lengths", deserialize_with = "hash_lengths")]
    pub hash_lengths: u32,
    /// Direct pool entries for IPv4's most common prefix length (4 bytes each; the default
    /// covers a whole 100.64.0.0/10 CGNAT range of /32s). 0 disables the pool.
    #[serde(default = "default_pool_v4", deserialize_with = "pool_entries")]
    pub pool_v4_entries: u32,
    /// Direct pool entries for IPv6's most common prefix length (/64 or shorter; the default
    /// covers the /56 delegations of a /36). 0 disables the pool.
    #[serde(default = "default_pool_v6", deserialize_with = "pool_entries")]
    pub pool_v6_entries: u32,
    /// Run (and reload) with a table that has no subscribers. Off by default: an empty table
    /// is far more often a truncated file than a wish to count nothing.
    #[serde(default)]
    pub allow_empty: bool,
    /// The table file's layout: quid's own CSV, or LibreQoS's `ShapedDevices.csv`.
    #[serde(default)]
    pub format: TableFormat,
    /// With `format = "libreqos"`: the column whose cell is the plan (`"Comment"`); without
    /// it a circuit's plan is its maximum rates (`155M-20M`).
    #[serde(default)]
    pub plan_column: Option<Spanned<String>>,
}

/// `[subscribers] format`: how the table file is laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// `id,name,plan,prefixes`.
    #[default]
    Quid,
    /// LibreQoS's `ShapedDevices.csv`: a circuit is a subscriber.
    Libreqos,
}

impl SubscribersConfig {
    /// How `Table::load` reads the file this section names.
    pub fn table_format(&self) -> crate::subscribers::table_file::Format {
        use crate::subscribers::{libreqos::PlanFrom, table_file::Format};
        match self.format {
            TableFormat::Quid => Format::Quid,
            TableFormat::Libreqos => Format::LibreQos(match &self.plan_column {
                Some(c) => PlanFrom::Column(c.get_ref().clone()),
                None => PlanFrom::MaxRates,
            }),
        }
    }

    /// The kernel table sizes this config asks for.
    pub fn sizes(&self) -> crate::kernel::sizes::Sizes {
        crate::kernel::sizes::Sizes {
            subscribers: self.capacity,
            prefixes: self.prefix_capacity,
            pool_v4: self.pool_v4_entries,
            pool_v6: self.pool_v6_entries,
        }
    }
}

fn default_pool_v4() -> u32 {
    1 << 22
}

fn default_pool_v6() -> u32 {
    1 << 20
}

fn pool_entries<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v > 1 << 26 {
        return Err(de::Error::custom(format!(
            "must be at most 67108864 (256 MiB), got {v}"
        )));
    }
    Ok(v)
}

fn default_capacity() -> u32 {
    262_144
}

fn default_prefix_capacity() -> u32 {
    524_288
}

fn default_hash_lengths() -> u32 {
    quid_common::MAX_HASH_LENGTHS_U32
}

fn capacity<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if !(1..=16_777_216).contains(&v) {
        return Err(de::Error::custom(format!(
            "must be between 1 and 16777216, got {v}"
        )));
    }
    Ok(v)
}

fn hash_lengths<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    let max = quid_common::MAX_HASH_LENGTHS_U32;
    if !(1..=max).contains(&v) {
        return Err(de::Error::custom(format!(
            "must be between 1 and {max}, got {v}"
        )));
    }
    Ok(v)
}

/// `[[interface]]`: one interface to attach to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    pub name: Spanned<IfName>,
    pub role: Role,
    #[serde(default)]
    pub xdp_mode: XdpModeSetting,
    /// The link's capacity in bits per second, each direction, for planners: `quid report`
    /// sets the fleet's Internet traffic against the core interfaces' (none: not reported).
    #[serde(default)]
    pub capacity_bits_per_second: Option<u64>,
}

/// A Linux interface name: 1 to 15 bytes, no '/', whitespace or ':'.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IfName(pub String);

impl<'de> Deserialize<'de> for IfName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 15 {
            return Err(de::Error::custom(format!(
                "interface name `{s}` must be 1 to 15 bytes long"
            )));
        }
        if s.chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(de::Error::custom(format!(
                "interface name `{s}` contains '/', ':' or whitespace"
            )));
        }
        Ok(IfName(s))
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl GridConfig {
    /// The grid prefixes.
    pub fn nets(&self) -> Vec<ipnet::IpNet> {
        self.prefixes.iter().map(|p| *p.get_ref()).collect()
    }
}

impl Config {
    /// Reads and validates a config file; relative paths inside it become relative to it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if config.subscribers.file.is_relative() {
            config.subscribers.file = base.join(&config.subscribers.file);
        }
        if !config.reports.nodes.as_os_str().is_empty() && config.reports.nodes.is_relative() {
            config.reports.nodes = base.join(&config.reports.nodes);
        }
        let shared = config.store.shared.as_mut();
        let shared_files = shared
            .into_iter()
            .flat_map(|s| [s.password_file.as_mut(), s.ca_file.as_mut()]);
        for key in [config.settlement.operator_key.as_mut()]
            .into_iter()
            .chain(shared_files)
            .flatten()
        {
            if key.is_relative() {
                *key = base.join(&*key);
            }
        }
        if let Some(radius) = config.radius.as_mut() {
            radius.resolve_paths(base);
        }
        if let Some(dhcp) = config.dhcp.as_mut() {
            dhcp.resolve(base);
        }
        if let Some(out) = config.accounting_out.as_mut() {
            out.resolve_paths(base);
        }
        if config.daemon.state_dir.is_relative() {
            config.daemon.state_dir = base.join(&config.daemon.state_dir);
        }
        for p in [
            &mut config.operator.token_file,
            &mut config.tls.cert,
            &mut config.tls.key,
        ] {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// Parses and validates config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |line, field: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line,
            field: field.to_owned(),
            message,
        };
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            // toml::Spanned shows up in the path as a private field; readers need the key.
            let field = match e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "")
            {
                p if p == "." => "(file)".to_owned(),
                p => p,
            };
            let inner = e.into_inner();
            let line = inner.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            invalid(line, &field, inner.message().trim().replace('\n', "; "))
        })?;
        if config.interfaces.is_empty() {
            return Err(invalid(
                line_of(text, text.len()),
                "interface",
                "no [[interface]] configured: add at least one with a name and a role".into(),
            ));
        }
        let grid = &config.grid.prefixes;
        for (i, net) in grid.iter().enumerate() {
            if net.get_ref().trunc() != *net.get_ref() {
                return Err(invalid(
                    line_of(text, net.span().start),
                    &format!("grid.prefixes[{i}]"),
                    format!(
                        "`{}` has host bits set; did you mean {}?",
                        net.get_ref(),
                        net.get_ref().trunc()
                    ),
                ));
            }
        }
        let v4 = grid
            .iter()
            .filter(|n| matches!(n.get_ref(), ipnet::IpNet::V4(_)))
            .count();
        let v6 = grid.len() - v4;
        if v4.max(v6) > quid_common::MAX_GRID_PREFIXES {
            return Err(invalid(
                grid.first().map_or(1, |n| line_of(text, n.span().start)),
                "grid.prefixes",
                format!(
                    "{v4} IPv4 and {v6} IPv6 prefixes; the kernel compares at most {} per family: \
                     aggregate them into shorter prefixes",
                    quid_common::MAX_GRID_PREFIXES
                ),
            ));
        }
        if let Some(column) = &config.subscribers.plan_column {
            let why = match config.subscribers.format {
                TableFormat::Quid => Some(
                    "only a LibreQoS table (format = \"libreqos\") takes its plan from a \
                     column; quid's own table has a plan column",
                ),
                TableFormat::Libreqos if column.get_ref().trim().is_empty() => {
                    Some("must name a column of ShapedDevices.csv, such as \"Comment\"")
                }
                TableFormat::Libreqos => None,
            };
            if let Some(why) = why {
                return Err(invalid(
                    line_of(text, column.span().start),
                    "subscribers.plan_column",
                    why.into(),
                ));
            }
        }
        for (i, iface) in config.interfaces.iter().enumerate() {
            if let Some(j) = config.interfaces[..i]
                .iter()
                .position(|o| o.name.get_ref() == iface.name.get_ref())
            {
                return Err(invalid(
                    line_of(text, iface.name.span().start),
                    &format!("interface[{i}].name"),
                    format!(
                        "interface `{}` is configured twice (also interface[{j}]); give it one \
                         entry with role \"both\" if it faces both ways",
                        iface.name.get_ref()
                    ),
                ));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("quid.toml")).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
[daemon]
interval_secs = 5
state_dir = "/tmp/q"

[subscribers]
file = "subs.csv"
capacity = 1000

[[interface]]
name = "veth-acc"
role = "access"

[[interface]]
name = "veth-core"
role = "core"
xdp_mode = "generic"
"#;

    #[test]
    fn a_full_config_parses_with_defaults_filled_in() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.daemon.interval_secs, 5);
        assert_eq!(c.daemon.kernel_log, KernelLog::Off);
        assert_eq!(c.subscribers.capacity, 1000);
        assert_eq!(c.subscribers.prefix_capacity, 524_288);
        assert_eq!(c.subscribers.hash_lengths, 8);
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.interfaces[0].role, Role::Access);
        assert_eq!(c.interfaces[0].xdp_mode, XdpModeSetting::Auto);
        assert_eq!(c.interfaces[1].xdp_mode, XdpModeSetting::Generic);
        assert_eq!(c.interfaces[1].capacity_bits_per_second, None);
        // A link's capacity, for planners.
        let c = parse(&GOOD.replace(
            "xdp_mode = \"generic\"",
            "xdp_mode = \"generic\"\ncapacity_bits_per_second = 10000000000",
        ))
        .unwrap();
        assert_eq!(
            c.interfaces[1].capacity_bits_per_second,
            Some(10_000_000_000)
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quid.toml");
        std::fs::write(
            &path,
            GOOD.replace("state_dir = \"/tmp/q\"", "state_dir = \"state\"")
                + "\n[store]\nurl = \"postgresql://db/q\"\nrouter_id = \"r\"\n\
                   password_file = \"pw\"\nca_file = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.subscribers.file, dir.path().join("subs.csv"));
        assert_eq!(c.daemon.state_dir, dir.path().join("state"));
        let shared = c.store.shared.unwrap();
        assert_eq!(shared.password_file, Some(dir.path().join("pw")));
        assert_eq!(shared.ca_file, Some("/etc/ca.pem".into()));
    }

    #[test]
    fn the_accounting_out_section_parses_and_its_mistakes_name_line_and_field() {
        let out = "\n[accounting_out]\nserver = \"192.0.2.10:1813\"\nsecret_file = \"billing.secret\"\n\
                   nas_identifier = \"edge-1\"\ninterval_secs = 60\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quid.toml");
        std::fs::write(&path, format!("{GOOD}{out}")).unwrap();
        let a = Config::load(&path).unwrap().accounting_out.unwrap();
        assert_eq!(a.secret_file, dir.path().join("billing.secret"));
        assert_eq!((a.interval_secs, a.attempts), (60, 5));
        assert!(parse(GOOD).unwrap().accounting_out.is_none());
        let err = parse(&format!("{GOOD}{}", out.replace("60", "0"))).unwrap_err();
        assert!(
            err.starts_with("quid.toml:23: accounting_out.interval_secs: must be between 1"),
            "{err}"
        );
        let err = parse(&format!("{GOOD}{}", out.replace("secret_file", "secret"))).unwrap_err();
        assert!(err.contains("unknown field `secret`"), "{err}");
    }

    #[test]
    fn the_radius_section_parses_and_its_mistakes_name_line_and_field() {
        let radius = "\n[radius]\nlisten = \"0.0.0.0:1813\"\nsubscriber_attribute = \"nas-port-id\"\n\
                      [[radius.client]]\naddress = \"192.0.2.0/28\"\nsecret_file = \"nas.secret\"\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quid.toml");
        std::fs::write(&path, format!("{GOOD}{radius}")).unwrap();
        let c = Config::load(&path).unwrap();
        let r = c.radius.unwrap();
        assert_eq!(
            r.subscriber_attribute,
            crate::radius::attributes::SubscriberAttribute::NasPortId
        );
        assert_eq!(r.clients[0].secret_file, dir.path().join("nas.secret"));
        assert!(parse(GOOD).unwrap().radius.is_none());
        let err = parse(&format!("{GOOD}{}", radius.replace("nas-port-id", "mac"))).unwrap_err();
        assert!(
            err.starts_with("quid.toml:21: radius.subscriber_attribute: unknown variant `mac`"),
            "{err}"
        );
        let err = parse(&format!(
            "{GOOD}{}",
            radius.replace("secret_file", "secret")
        ))
        .unwrap_err();
        assert!(
            err.contains("radius.client[0]") && err.contains("unknown field `secret`"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_role_names_line_and_field() {
        let err = parse(&GOOD.replace("role = \"core\"", "role = \"uplink\"")).unwrap_err();
        assert!(
            err.starts_with("quid.toml:16: interface[1].role: unknown variant `uplink`"),
            "{err}"
        );
    }

    #[test]
    fn an_out_of_range_interval_is_refused() {
        let err = parse(&GOOD.replace("interval_secs = 5", "interval_secs = 0")).unwrap_err();
        assert!(
            err.starts_with("quid.toml:3: daemon.interval_secs: must be between 1 and 3600"),
            "{err}"
        );
    }

    #[test]
    fn a_checkpoint_interval_outside_a_minute_to_a_month_is_refused() {
        for bad in ["0", "59", "2678401"] {
            let err = parse(&format!(
                "{GOOD}\n[settlement]\ncheckpoint_seconds = {bad}\n"
            ))
            .unwrap_err();
            assert!(
                err.contains("settlement.checkpoint_seconds: must be between 60 seconds"),
                "{err}"
            );
        }
        let ok = parse(&format!(
            "{GOOD}\n[settlement]\ncheckpoint_seconds = 86400\n"
        ))
        .unwrap();
        assert_eq!(ok.settlement.checkpoint_seconds, 86_400);
    }

    /// The shipped example parses, and says what the code does when a key is left out (it
    /// once said `top:100` while the default was `top:1000`).
    #[test]
    fn the_shipped_config_parses_and_states_the_defaults() {
        let shipped = include_str!("../../dist/quid.toml");
        let config = Config::parse(shipped, Path::new("dist/quid.toml")).unwrap();
        assert_eq!(config.metrics.subscribers, SubscriberSeries::default());
        assert_eq!(config.metrics.listen, default_listen());
        assert_eq!(config.store.keep, crate::store::Retention::default());
        assert!(config.store.shared.is_none());
    }

    #[test]
    fn the_store_section_holds_the_retention_and_the_shared_store() {
        let shared = |lines: &str| parse(&format!("{GOOD}\n[store]\n{lines}"));
        let c = shared(
            "hourly_secs = 3600000\nurl = \"postgresql://quid@db.example.net/books\"\n\
             router_id = \"pop-1\"\ntables = \"shared\"\n",
        )
        .unwrap();
        assert_eq!(c.store.keep.hourly_secs, 3_600_000);
        let s = c.store.shared.unwrap();
        assert_eq!(s.router_id.as_str(), "pop-1");
        assert_eq!(s.tables, crate::cluster::config::TableSource::Shared);
        assert_eq!(s.ship_rows, 500_000);
        for (lines, says) in [
            (
                "hourly_secs = 3600000\nhourly_sec = 1\n",
                "unknown field `hourly_sec`",
            ),
            (
                "url = \"postgresql://db/books\"\n",
                "missing field `router_id`",
            ),
            (
                "url = \"postgresql://quid:pw@db/books\"\nrouter_id = \"r\"\n",
                "store.url carries a password",
            ),
            (
                "url = \"postgresql://db/books\"\nrouter_id = \"a b\"\n",
                "is not a router id",
            ),
            (
                "url = \"postgresql://db/books\"\nrouter_id = \"r\"\ntables = \"git\"\n",
                "unknown variant `git`",
            ),
        ] {
            let err = shared(lines).unwrap_err();
            assert!(err.contains(says), "{lines}: {err}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused_not_ignored() {
        let err =
            parse(&GOOD.replace("capacity = 1000", "capacity = 1000\ncapasity = 5")).unwrap_err();
        assert!(
            err.starts_with("quid.toml:9: subscribers.capasity: unknown field `capasity`"),
            "{err}"
        );
    }

    #[test]
    fn a_too_long_interface_name_is_refused() {
        let err = parse(&GOOD.replace("veth-acc", "a-very-long-interface-name")).unwrap_err();
        assert!(
            err.starts_with("quid.toml:11: interface[0].name: interface name"),
            "{err}"
        );
    }

    #[test]
    fn a_duplicate_interface_is_refused() {
        let err = parse(&GOOD.replace("veth-core", "veth-acc")).unwrap_err();
        assert!(
            err.starts_with(
                "quid.toml:15: interface[1].name: interface `veth-acc` is configured twice"
            ),
            "{err}"
        );
    }

    #[test]
    fn grid_prefixes_parse_and_bad_ones_are_refused() {
        let c = parse(&format!(
            "{GOOD}\n[grid]\nprefixes = [\"198.51.100.0/24\", \"2001:db8:ffff::/48\"]\n"
        ))
        .unwrap();
        assert_eq!(c.grid.prefixes.len(), 2);
        let err = parse(&format!(
            "{GOOD}\n[grid]\nprefixes = [\"198.51.100.1/24\"]\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("quid.toml:20: grid.prefixes[0]: `198.51.100.1/24` has host bits set"),
            "{err}"
        );
        let many: Vec<String> = (0..17).map(|i| format!("\"198.51.{i}.0/24\"")).collect();
        let err = parse(&format!(
            "{GOOD}\n[grid]\nprefixes = [{}]\n",
            many.join(",")
        ))
        .unwrap_err();
        assert!(
            err.contains("grid.prefixes: 17 IPv4 and 0 IPv6 prefixes"),
            "{err}"
        );
    }

    #[test]
    fn no_interfaces_is_refused() {
        let text = "[subscribers]\nfile = \"s.csv\"\n";
        let err = parse(text).unwrap_err();
        assert!(
            err.contains("interface: no [[interface]] configured"),
            "{err}"
        );
    }

    #[test]
    fn the_table_format_is_quid_or_libreqos_and_only_libreqos_takes_a_plan_column() {
        use crate::subscribers::{libreqos::PlanFrom, table_file::Format};
        let c = parse(GOOD).unwrap();
        assert_eq!(c.subscribers.table_format(), Format::Quid);
        let libreqos = GOOD.replace("capacity = 1000", "capacity = 1000\nformat = \"libreqos\"");
        let c = parse(&libreqos).unwrap();
        assert_eq!(
            c.subscribers.table_format(),
            Format::LibreQos(PlanFrom::MaxRates)
        );
        let c = parse(&libreqos.replace("format", "plan_column = \"Comment\"\nformat")).unwrap();
        assert_eq!(
            c.subscribers.table_format(),
            Format::LibreQos(PlanFrom::Column("Comment".into()))
        );
        let err = parse(&GOOD.replace(
            "capacity = 1000",
            "capacity = 1000\nplan_column = \"Comment\"",
        ))
        .unwrap_err();
        assert!(
            err.starts_with("quid.toml:9: subscribers.plan_column: only a LibreQoS table"),
            "{err}"
        );
        let err = parse(&GOOD.replace("capacity = 1000", "format = \"splynx\"")).unwrap_err();
        assert!(
            err.contains("subscribers.format: unknown variant `splynx`"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_subscribers_section_is_refused() {
        let err = parse("[[interface]]\nname = \"eth0\"\nrole = \"core\"\n").unwrap_err();
        assert!(err.contains("missing field `subscribers`"), "{err}");
    }

    #[test]
    fn broken_toml_is_refused_with_its_line() {
        let err = parse(&GOOD.replace("capacity = 1000", "capacity = ")).unwrap_err();
        assert!(
            err.starts_with("quid.toml:8: (file): invalid string"),
            "{err}"
        );
    }
}
