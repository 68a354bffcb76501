//! The `quid` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use quid::{config::Config, daemon, table::Table};

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
    /// Print the per-subscriber totals of the running (or last) daemon.
    Subscribers {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
        /// Print the whole snapshot as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a config and its subscriber table without touching the kernel.
    Check {
        #[arg(long, short, default_value = "/etc/quid/quid.toml")]
        config: PathBuf,
    },
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
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(daemon::run(config))
        }
        Command::Subscribers { config, json } => {
            let config = Config::load(&config)?;
            daemon::print_subscribers(&config.daemon.state_dir, json)
        }
        Command::Check { config } => {
            let cfg = Config::load(&config)?;
            let table = Table::load(&cfg.subscribers.file).map_err(|e| anyhow::anyhow!("{e}"))?;
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
