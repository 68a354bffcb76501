//! The `quid` command line.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use clap::{Parser, Subcommand};
use quid::{
    config::Config, daemon, kernel::loader as datapath, metering::snapshot::Snapshot,
    metering::usage_query as usage, store::Store, subscribers::reload_result::ReloadResult,
};

#[derive(Parser)]
#[command(
    name = "quid",
    version,
    about = "XDP traffic accounting and settlement for ISP edge routers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to the configured interfaces and count until SIGINT/SIGTERM.
    Run {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
    },
    /// Print the per-subscriber totals of the running (or last) daemon, or reload its table.
    Subscribers {
        #[arg(long, short, default_value = "/etc/quid/quid.toml", global = true)]
        config: PathBuf,
        /// Print the whole snapshot as JSON.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<SubscribersAction>,
    },
    /// A subscriber's usage records between two times, with their sum.
    Usage {
        /// Subscriber id.
        subscriber: String,
        /// Start (RFC 3339 like 2026-11-01T00:00:00Z, a date like 2026-11-01, or unix seconds).
        #[arg(long)]
        from: String,
        /// End, exclusive (same forms as --from).
        #[arg(long)]
        to: String,
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Detach quid's programs and remove everything it pinned (the store keeps the totals).
    Detach {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
    },
    /// Balances in credits, derived from the ledger (one subscriber, or all).
    Balance {
        subscriber: Option<String>,
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
    },
    /// The ledger: one subscriber's entries, or a check of the whole hash chain.
    Ledger {
        #[command(subcommand)]
        action: LedgerAction,
    },
    /// A subscriber's signed statement for a month, or `verify FILE` to check one.
    #[command(args_conflicts_with_subcommands = true)]
    Statement {
        #[command(subcommand)]
        action: Option<StatementAction>,
        subscriber: Option<String>,
        /// The month, YYYY-MM (UTC).
        #[arg(long)]
        period: Option<String>,
        /// The operator's secret key file (as `quid node keygen` writes one).
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long, short, default_value = "/etc/quid/quid.toml", global = true)]
        config: PathBuf,
    },
    /// Node tools.
    Node {
        #[command(subcommand)]
        action: NodeAction,
    },
    /// Operator API tools.
    Operator {
        #[command(subcommand)]
        action: OperatorAction,
    },
    /// Check a config and its subscriber table without touching the kernel.
    Check {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum StatementAction {
    /// Check a statement's signature and arithmetic against the ISP's published operator
    /// key: what a subscriber runs.
    Verify {
        file: PathBuf,
        /// The ISP's published public key: 64 hex digits, or a file holding them (as
        /// `quid operator key` writes). Required unless --unauthenticated.
        #[arg(long)]
        operator_key: Option<String>,
        /// Check only that the statement is consistent and signed by the key it names,
        /// without knowing whose key that is (anyone can make such a statement).
        #[arg(long, conflicts_with = "operator_key")]
        unauthenticated: bool,
    },
}

#[derive(Subcommand)]
enum LedgerAction {
    /// A subscriber's entries, oldest first.
    Show {
        subscriber: String,
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
    },
    /// Record an operator adjustment (micro-credits, negative to debit) with its reason.
    Adjust {
        subscriber: String,
        /// Micro-credits; use `--amount=-5000` for a debit.
        #[arg(long, allow_negative_numbers = true)]
        amount: i64,
        #[arg(long)]
        reason: String,
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
    },
    /// Recompute the hash chain: fails, naming the entry, if anything was edited.
    Verify {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
    },
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum NodeAction {
    /// Make a node key: the secret goes to FILE (mode 0600), the public key to stdout for the
    /// nodes file.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a contribution report with the node's key and submit it (retrying safely).
    Report {
        /// The daemon's report intake, e.g. http://192.0.2.1:9465.
        #[arg(long)]
        url: String,
        /// The node's secret key file (from `quid node keygen`).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        node: String,
        #[arg(long)]
        seq: u64,
        /// Period start and end, RFC 3339 UTC (2026-11-24T10:00:00Z).
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// CPU supplied in core-microseconds (cgroup v2 `cpu.stat` `usage_usec` delta).
        #[arg(long, conflicts_with = "cpu_core_seconds")]
        cpu_core_micros: Option<u64>,
        /// CPU supplied in core-seconds, a decimal with at most 6 places (exact, no rounding).
        #[arg(long)]
        cpu_core_seconds: Option<String>,
        /// Storage supplied in byte-seconds.
        #[arg(long, default_value_t = 0)]
        storage_byte_seconds: u64,
        /// Energy supplied in microjoules (RAPL `energy_uj` delta).
        #[arg(long, conflicts_with = "energy_joules")]
        energy_microjoules: Option<u64>,
        /// Energy supplied in joules, a decimal with at most 6 places (exact, no rounding).
        #[arg(long)]
        energy_joules: Option<String>,
        #[arg(long, default_value_t = 0)]
        grid_bytes_sent: u64,
        #[arg(long, default_value_t = 0)]
        grid_bytes_received: u64,
        #[arg(long, default_value_t = 5)]
        attempts: u32,
        /// Trust the certificates in this PEM file (a router with a private certificate).
        #[arg(long)]
        ca: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum OperatorAction {
    /// Write a new operator API token to FILE (mode 0640); point operator.token_file at it.
    Token {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of the operator's statement signing key, for subscribers to
    /// verify statements with (`--out` also writes it to a new file to publish).
    Key {
        /// The operator's secret key file (`[settlement] operator_key`).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SubscribersAction {
    /// Make the running daemon reload the table file now (as SIGHUP does) and show the result.
    Reload,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("quid: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            // Two workers: a scrape is answered while the other one reads or commits.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(daemon::run(config))
        }
        Command::Subscribers {
            config,
            json,
            action,
        } => {
            let config = Config::load(&config)?;
            match action {
                None => daemon::print_subscribers(&config.daemon.state_dir, json),
                Some(SubscribersAction::Reload) => reload(&config),
            }
        }
        Command::Usage {
            subscriber,
            from,
            to,
            config,
            json,
        } => {
            let config = Config::load(&config)?;
            let (from, to) = (usage::parse_time(&from)?, usage::parse_time(&to)?);
            if to <= from {
                bail!("--to must be after --from");
            }
            let store = Store::open(&config.daemon.state_dir)?;
            let rows = store.usage(&subscriber, from, to)?;
            print!("{}", usage::render(&subscriber, &rows, json)?);
            Ok(())
        }
        Command::Detach { config } => {
            let config = Config::load(&config)?;
            if let Some(pid) = running_daemon(&config) {
                bail!("quid is running (pid {pid}) with this config: stop it first");
            }
            let n = datapath::remove_pins(&config.daemon.pin_dir)?;
            println!(
                "removed {n} pins from {}; quid's programs are detached",
                config.daemon.pin_dir.display()
            );
            Ok(())
        }
        Command::Balance { subscriber, config } => {
            let config = Config::load(&config)?;
            let store = Store::open(&config.daemon.state_dir)?;
            // The balances table: the balance the metrics and the operator API read too.
            let balances = store.balances_checked()?;
            // A row that is not an exact integer (only an edited store has one) is named,
            // never wrapped.
            let show = |id: &str, b: Option<i64>| match b {
                Some(b) => println!("{id:<24} {:>18}", quid::ledger::chain::credits(b)),
                None => println!("{id:<24} {:>18}", "unreadable"),
            };
            let broken = match subscriber {
                Some(id) => {
                    let b = balances.get(&id).copied().unwrap_or(Some(0));
                    show(&id, b);
                    usize::from(b.is_none())
                }
                None => {
                    for (id, b) in &balances {
                        show(id, *b);
                    }
                    balances.values().filter(|b| b.is_none()).count()
                }
            };
            if broken > 0 {
                bail!(
                    "{broken} balance(s) are not exact integers: the store was edited outside \
                     quid (`quid ledger verify` names what differs)"
                );
            }
            Ok(())
        }
        Command::Ledger {
            action: LedgerAction::Show { subscriber, config },
        } => {
            let config = Config::load(&config)?;
            let store = Store::open(&config.daemon.state_dir)?;
            // i128: a running sum of i64 amounts that never wraps.
            let mut balance = 0i128;
            for e in store.entries(Some(&subscriber))? {
                balance += i128::from(e.amount);
                println!(
                    "{:>8} {} {:<20} {:>16} {:>16}  {}",
                    e.seq,
                    quid::settlement::report::rfc3339(e.at),
                    e.kind,
                    quid::ledger::chain::credits(e.amount),
                    quid::ledger::chain::credits_wide(balance),
                    e.reference
                );
            }
            Ok(())
        }
        Command::Ledger {
            action:
                LedgerAction::Adjust {
                    subscriber,
                    amount,
                    reason,
                    config,
                },
        } => {
            let config = Config::load(&config)?;
            if reason.trim().is_empty() {
                bail!("an adjustment needs a --reason: the ledger keeps it for both sides");
            }
            if amount == 0 {
                bail!("--amount 0 changes nothing; give micro-credits, negative to debit");
            }
            let mut store = Store::open(&config.daemon.state_dir)?;
            store.append(&[quid::ledger::chain::NewEntry::adjustment(
                &subscriber,
                quid::clock::Clock::system().now_i64()?,
                amount,
                reason,
            )])?;
            println!(
                "adjusted {subscriber} by {} credits",
                quid::ledger::chain::credits(amount)
            );
            Ok(())
        }
        Command::Ledger {
            action: LedgerAction::Verify { config },
        } => {
            let config = Config::load(&config)?;
            let store = Store::open(&config.daemon.state_dir)?;
            // Entries and balances of one moment: the daemon may be writing.
            let books = store.ledger_snapshot()?;
            let n = quid::ledger::chain::verify(&books.entries)?;
            let b = quid::ledger::chain::verify_balances(&books.entries, &books.balances)?;
            println!(
                "ledger ok: {n} entries, hash chain intact; {b} balances, each the sum of its \
                 entries"
            );
            Ok(())
        }
        Command::Statement {
            action:
                Some(StatementAction::Verify {
                    file,
                    operator_key,
                    unauthenticated,
                }),
            ..
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let key = match &operator_key {
                Some(k) => Some(operator_public_key(k)?),
                None if unauthenticated => None,
                // A statement names its own key: checking it against itself proves nothing
                // about who signed it, so that is never the silent default.
                None => bail!(
                    "{}: whose signature this is cannot be checked without the ISP's published \
                     operator key: give --operator-key KEY (64 hex digits, or the file the ISP \
                     published), or --unauthenticated to check only the arithmetic and that it is \
                     signed by the key it names",
                    file.display()
                ),
            };
            let v = quid::ledger::statement::verify(&text, key.as_ref())?;
            let s = &v.statement;
            if v.authenticated {
                println!(
                    "statement ok: {} {}, closing balance {} credits; signature, operator key {} \
                     and arithmetic verified",
                    s.subscriber,
                    s.period,
                    quid::ledger::chain::credits(s.closing_balance),
                    v.signer
                );
            } else {
                println!(
                    "statement consistent: {} {}, closing balance {} credits; arithmetic and \
                     signature verified for the key it names, {}\nNOT verified: that this key is \
                     the ISP's. Anyone can make such a statement; check it with --operator-key",
                    s.subscriber,
                    s.period,
                    quid::ledger::chain::credits(s.closing_balance),
                    v.signer
                );
            }
            Ok(())
        }
        Command::Statement {
            action: None,
            subscriber,
            period,
            key,
            config,
        } => {
            let (Some(subscriber), Some(period), Some(key)) = (subscriber, period, key) else {
                bail!("usage: quid statement SUBSCRIBER --period YYYY-MM --key OPERATOR_KEY");
            };
            let config = Config::load(&config)?;
            let store = Store::open(&config.daemon.state_dir)?;
            let key = quid::settlement::node_client::read_key(&key)?;
            let signed =
                quid::ledger::statement::sign(store.statement(&subscriber, &period)?, &key);
            println!("{}", serde_json::to_string_pretty(&signed)?);
            Ok(())
        }
        Command::Node {
            action: NodeAction::Keygen { out },
        } => {
            let key = quid::settlement::report::keygen()?;
            write_secret(&out, 0o600, &hex::encode(key.to_bytes()))?;
            println!("{}", hex::encode(key.verifying_key().to_bytes()));
            Ok(())
        }
        Command::Operator {
            action: OperatorAction::Key { key, out },
        } => {
            let key = quid::settlement::node_client::read_key(&key)?;
            let public = hex::encode(key.verifying_key().to_bytes());
            if let Some(out) = out {
                write_secret(&out, 0o644, &public)?;
                eprintln!(
                    "wrote the operator public key to {}; publish it for subscribers",
                    out.display()
                );
            }
            println!("{public}");
            Ok(())
        }
        Command::Operator {
            action: OperatorAction::Token { out },
        } => {
            let token = quid::http::operator::new_token()
                .map_err(|e| anyhow!("no randomness for the token: {e}"))?;
            // 0640: the daemon's group reads it (chgrp quid), nobody else.
            write_secret(&out, 0o640, &token)?;
            println!(
                "wrote a new operator token to {}; set operator.token_file to it",
                out.display()
            );
            Ok(())
        }
        Command::Node {
            action:
                NodeAction::Report {
                    url,
                    key,
                    node,
                    seq,
                    from,
                    to,
                    cpu_core_micros,
                    cpu_core_seconds,
                    storage_byte_seconds,
                    energy_microjoules,
                    energy_joules,
                    grid_bytes_sent,
                    grid_bytes_received,
                    attempts,
                    ca,
                },
        } => {
            let key = quid::settlement::node_client::read_key(&key)?;
            let micros =
                |exact: Option<u64>, decimal: Option<String>, flag: &str| match (exact, decimal) {
                    (Some(v), _) => Ok(v),
                    (None, Some(d)) => quid::settlement::node_client::decimal_micros(&d)
                        .with_context(|| {
                            format!("--{flag} {}", quid::settlement::report::quote(&d))
                        }),
                    (None, None) => Ok(0),
                };
            let report = quid::settlement::report::Report {
                node,
                seq,
                period_start: from,
                period_end: to,
                cpu_core_micros: micros(cpu_core_micros, cpu_core_seconds, "cpu-core-seconds")?,
                storage_byte_seconds,
                energy_microjoules: micros(energy_microjoules, energy_joules, "energy-joules")?,
                grid_bytes_sent,
                grid_bytes_received,
                signature: String::new(),
            };
            let status =
                quid::settlement::node_client::submit(report, &key, &url, attempts, ca.as_deref())?;
            println!("{status}");
            Ok(())
        }
        Command::Check { config } => {
            let cfg = Config::load(&config)?;
            // Everything `quid run` would refuse before touching the kernel.
            let table = daemon::preflight(&cfg)?.table;
            let (v4, v6) = table.prefix_counts();
            println!(
                "{}: ok; {} subscribers, {v4} IPv4 and {v6} IPv6 prefixes, {} interfaces",
                config.display(),
                table.subscribers.len(),
                cfg.interfaces.len()
            );
            Ok(())
        }
    }
}

/// The operator public key given as 64 hex digits or as a file holding them.
fn operator_public_key(arg: &str) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let trimmed = arg.trim();
    if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(quid::ledger::statement::parse_key(trimmed)?);
    }
    let text = std::fs::read_to_string(arg).with_context(|| {
        format!(
            "--operator-key {}: neither 64 hex digits nor a readable key file",
            quid::settlement::report::quote(arg)
        )
    })?;
    quid::ledger::statement::parse_key(&text).with_context(|| format!("in {arg}"))
}

/// The pid of a daemon running with this config's state directory, if one is.
fn running_daemon(config: &Config) -> Option<i32> {
    let snap = Snapshot::read(&config.daemon.state_dir).ok()?;
    let pid = i32::try_from(snap.pid).ok()?;
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    (snap.state == "running" && alive).then_some(pid)
}

/// `quid subscribers reload`: SIGHUP, then wait for the daemon's answer.
fn reload(config: &Config) -> anyhow::Result<()> {
    let pid = running_daemon(config).context("no quid is running with this config")?;
    let before = ReloadResult::read(&config.daemon.state_dir).map(|r| r.seq);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .with_context(|| format!("cannot signal quid (pid {pid})"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Some(r) = ReloadResult::read(&config.daemon.state_dir)
            && Some(r.seq) != before
        {
            if r.ok {
                println!(
                    "reloaded: {} added, {} removed, {} changed",
                    r.change.added.len(),
                    r.change.removed.len(),
                    r.change.changed.len()
                );
                return Ok(());
            }
            bail!(
                "reload refused, the running table is unchanged:\n  {}",
                r.errors.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("quid (pid {pid}) did not answer the reload within 60 s")
}

/// Writes `text` to a new file `path` with `mode` (refusing to overwrite one).
fn write_secret(path: &std::path::Path, mode: u32, text: &str) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    writeln!(f, "{text}")?;
    Ok(())
}
