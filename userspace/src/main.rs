//! The `quid` command line: parsing and dispatch; the command bodies are in `cli/`.

mod cli;

use std::path::PathBuf;

use anyhow::bail;
use clap::{CommandFactory as _, Parser, Subcommand};
use quid::{config::Config, daemon};

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
    /// A subscriber's usage between two times at the finest resolution still held, with the
    /// interval records.
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
    /// Bulk exports of the books for planners.
    Export {
        #[command(subcommand)]
        action: ExportAction,
    },
    /// A month's figures per plan and for the fleet, for planners: subscribers, bytes, peak
    /// and busy hour, 95th percentiles, contributions, credits, debits, growth.
    Report(cli::report::ReportArgs),
    /// What-if tariffs for planners.
    Tariff {
        #[command(subcommand)]
        action: TariffAction,
    },
    /// Several routers, one set of books: the shared store as this router sees it.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// The store file: its size per usage tier and table.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Detach quid's programs and remove everything it pinned (the store keeps the totals).
    Detach {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        /// Stop a quid running with this config first (SIGTERM, then wait for it to exit).
        #[arg(long)]
        stop: bool,
    },
    /// Balances in credits, derived from the ledger (one subscriber, or all).
    Balance {
        subscriber: Option<String>,
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        /// Print `{"balances": [...]}` with integer micro-credits.
        #[arg(long)]
        json: bool,
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
    /// Check a config and its subscriber table without touching the kernel, and that this
    /// host's interfaces exist and can carry XDP (saying what `xdp_mode` would attach).
    Check {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        /// Check only the files, not this host's interfaces (a config meant for another host).
        #[arg(long)]
        files_only: bool,
    },
    /// Print the completion script for SHELL (the package installs bash, zsh and fish ones).
    Completions { shell: clap_complete::Shell },
    /// Write the manual pages and completions into OUT (what `cargo xtask dist` packages).
    #[command(hide = true)]
    GenerateDocs {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Every router's last shipped batch, how far its usage reaches and its lag, the reports
    /// held, this router's outbox, and whether the database answers (exit 1 if not).
    Status {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace a shared table (`subscribers` or `nodes`) with FILE, checked first: every
    /// router with `[store] tables = "shared"` writes it to its file and reloads.
    PushTable {
        /// `subscribers` or `nodes`.
        table: quid::cluster::tables::SharedTable,
        /// The table file to push.
        file: PathBuf,
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
    },
    /// One subscriber's usage in the shared store, per router and summed over routers.
    Usage {
        /// Subscriber id.
        subscriber: String,
        /// Start (RFC 3339, a date, or unix seconds); hours starting from here.
        #[arg(long)]
        from: String,
        /// End, exclusive (same forms as --from).
        #[arg(long)]
        to: String,
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Size per tier and table, rows, oldest row per tier, free pages, roll-up lag and the
    /// size the file settles at, at the current rate, once every tier holds its retention.
    Stats {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ExportAction {
    /// Every subscriber's usage rows starting in [--from, --to), streamed as CSV (subscriber,
    /// start, end, the eight counters).
    Usage(cli::export::UsageArgs),
}

#[derive(Subcommand)]
enum TariffAction {
    /// Re-price a month's real usage and settled contributions under another tariff: per-plan
    /// and fleet debits, credits and net before and after, and the subscribers whose net
    /// changes sign.
    Simulate(cli::tariff::SimulateArgs),
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
        /// An older statement of the same subscriber: also check that the ledger this one was
        /// computed from extends, unchanged, the one the older one was computed from.
        #[arg(long, requires = "operator_key")]
        against: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LedgerAction {
    /// A subscriber's entries, oldest first.
    Show {
        subscriber: String,
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        /// Print `{"subscriber": ..., "entries": [...]}` with integer micro-credits.
        #[arg(long)]
        json: bool,
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
    /// Recompute the hash chain and check it against the signed checkpoints: fails, naming
    /// the entry, if anything was edited, deleted from the end, or rewritten.
    Verify {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        /// Check against checkpoints exported earlier (`quid ledger checkpoints --export`),
        /// kept off the router, as well as the stored ones.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// The operator public key the checkpoints must be signed with: 64 hex digits or a
        /// file holding them (default: the key of `[settlement] operator_key`).
        #[arg(long)]
        operator_key: Option<String>,
    },
    /// Sign a checkpoint of the ledger's head now with `[settlement] operator_key` (the daemon
    /// writes them on its own; this seals a store before the daemon next starts).
    Checkpoint {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
    },
    /// Print the signed checkpoints as JSON lines, or write them to FILE to keep off the
    /// router (for `quid ledger verify --checkpoints FILE`).
    Checkpoints {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        #[arg(long)]
        export: Option<PathBuf>,
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
    Report(cli::node::ReportArgs),
    /// The reports recorded for a node, oldest first, with the energy source each names.
    Reports {
        node: String,
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        /// Print `{"node": ..., "reports": [...]}`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum OperatorAction {
    /// Write a new operator API token to FILE (mode 0640, group of the daemon user `quid`);
    /// point operator.token_file at it.
    Token {
        #[arg(long)]
        out: PathBuf,
        /// The group that may read the token (default: the primary group of user `quid`; on a
        /// host without that user, the file keeps the caller's group and a warning says so).
        #[arg(long)]
        group: Option<String>,
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
    let journal = cli::logging::stderr_is_journal();
    cli::logging::init(journal);
    let args = Cli::parse();
    // Rust starts with SIGPIPE ignored, so `quid subscribers | head -1` would see EPIPE and
    // print! would panic. A read command dies of SIGPIPE instead, quietly, as `cat` does (the
    // shell reports 141). The daemon keeps it ignored: a scraper that hangs up must cost it
    // one failed write, not its life.
    if !matches!(args.command, Command::Run { .. }) {
        default_sigpipe();
    }
    if let Err(e) = run(args) {
        cli::logging::report_error(journal, &e);
        std::process::exit(1);
    }
}

/// Restores the default action of SIGPIPE (terminate), which the Rust runtime set to ignore.
fn default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_DFL installs no handler of ours, so nothing can run in signal context; this
    // runs before any other thread is started.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        log::debug!("cannot restore SIGPIPE's default action: {e}");
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
                None => cli::subscribers::print_subscribers(&config.daemon.state_dir, json),
                Some(SubscribersAction::Reload) => cli::subscribers::reload(&config),
            }
        }
        Command::Usage {
            subscriber,
            from,
            to,
            config,
            json,
        } => cli::usage::print_usage(&Config::load(&config)?, &subscriber, &from, &to, json),
        Command::Export {
            action: ExportAction::Usage(args),
        } => cli::export::usage(args),
        Command::Tariff {
            action: TariffAction::Simulate(args),
        } => cli::tariff::simulate_cmd(args),
        Command::Cluster {
            action: ClusterAction::Status { config, json },
        } => cli::cluster::status(&Config::load(&config)?, json),
        Command::Cluster {
            action:
                ClusterAction::PushTable {
                    table,
                    file,
                    config,
                },
        } => cli::cluster::push_table(&Config::load(&config)?, table, &file),
        Command::Cluster {
            action:
                ClusterAction::Usage {
                    subscriber,
                    from,
                    to,
                    config,
                    json,
                },
        } => cli::cluster::usage(&Config::load(&config)?, &subscriber, &from, &to, json),
        Command::Report(args) => cli::report::report_cmd(args),
        Command::Store {
            action: StoreAction::Stats { config, json },
        } => cli::store_stats::print_stats(&Config::load(&config)?, json),
        Command::Detach { config, stop } => cli::detach::detach(&Config::load(&config)?, stop),
        Command::Balance {
            subscriber,
            config,
            json,
        } => cli::ledger::balance(&Config::load(&config)?, subscriber, json),
        Command::Ledger {
            action:
                LedgerAction::Show {
                    subscriber,
                    config,
                    json,
                },
        } => cli::ledger::show(&Config::load(&config)?, &subscriber, json),
        Command::Ledger {
            action:
                LedgerAction::Adjust {
                    subscriber,
                    amount,
                    reason,
                    config,
                },
        } => cli::ledger::adjust(&Config::load(&config)?, subscriber, amount, reason),
        Command::Ledger {
            action:
                LedgerAction::Verify {
                    config,
                    checkpoints,
                    operator_key,
                },
        } => cli::ledger::verify(
            &Config::load(&config)?,
            checkpoints.as_deref(),
            operator_key.as_deref(),
        ),
        Command::Ledger {
            action: LedgerAction::Checkpoint { config },
        } => cli::checkpoints::checkpoint(&Config::load(&config)?),
        Command::Ledger {
            action: LedgerAction::Checkpoints { config, export },
        } => cli::checkpoints::export(&Config::load(&config)?, export.as_deref()),
        Command::Statement {
            action:
                Some(StatementAction::Verify {
                    file,
                    operator_key,
                    unauthenticated,
                    against,
                }),
            ..
        } => match against {
            Some(older) => cli::statement::verify_against(&file, &older, operator_key.as_deref()),
            None => cli::statement::verify(&file, operator_key.as_deref(), unauthenticated),
        },
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
            cli::statement::issue(&Config::load(&config)?, &subscriber, &period, &key)
        }
        Command::Node {
            action: NodeAction::Keygen { out },
        } => cli::node::keygen(&out),
        Command::Operator {
            action: OperatorAction::Key { key, out },
        } => cli::operator::key(&key, out.as_deref()),
        Command::Operator {
            action: OperatorAction::Token { out, group },
        } => cli::operator::token(&out, group.as_deref()),
        Command::Node {
            action: NodeAction::Reports { node, config, json },
        } => cli::node::reports(&Config::load(&config)?, &node, json),
        Command::Node {
            action: NodeAction::Report(args),
        } => cli::node::submit(args),
        Command::Check { config, files_only } => cli::check::check(&config, files_only),
        Command::Completions { shell } => {
            cli::docs::completions(Cli::command(), shell);
            Ok(())
        }
        Command::GenerateDocs { out } => cli::docs::generate(Cli::command(), &out),
    }
}
