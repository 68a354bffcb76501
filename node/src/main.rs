//! `quid-node init | run | status`: the binary edge of the node agent.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use quid_node::{agent::Agent, config::Config, outbox::Outbox, status, storage};
use quid_report::clock::Clock;

/// The quid node agent: measures what this device gives the grid and reports it to the router.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The config file.
    #[arg(long, default_value = "/etc/quid-node/config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the node key, allocate the storage reservation, print the nodes-file line.
    Init {
        /// The subscriber this node belongs to (for the printed line).
        #[arg(long, default_value = "SUBSCRIBER")]
        subscriber: String,
        /// The device's most power draw in watts (for the printed line).
        #[arg(long, default_value_t = 0)]
        max_watts: u32,
    },
    /// Measure and report every period, until stopped.
    Run,
    /// Show the last settled report and the outbox.
    Status,
}

fn main() {
    if let Err(e) = run() {
        // journald priority 3 (error), the whole cause chain on one line.
        eprintln!("<3>quid-node: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Init {
            subscriber,
            max_watts,
        } => init(&config, &subscriber, max_watts),
        Command::Run => agent_loop(config),
        Command::Status => {
            print!("{}", status::text(&Outbox::open(&config.state_dir)?)?);
            Ok(())
        }
    }
}

fn init(config: &Config, subscriber: &str, max_watts: u32) -> anyhow::Result<()> {
    let key = quid_report::report::keygen().context("cannot make a key")?;
    quid_report::key::write_secret(&config.key, 0o600, &hex::encode(key.to_bytes()))?;
    let reserve = config.storage.as_ref().map_or(0, |s| s.reserve_bytes);
    if let Some(s) = &config.storage {
        storage::reserve(&s.dir, s.reserve_bytes)?;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "{},{subscriber},{},{cores},{reserve},{max_watts}",
        config.node,
        hex::encode(key.verifying_key().to_bytes())
    );
    Ok(())
}

/// Fetches the fill and answers the router's audits, until the process stops.
fn audit_loop(auditor: &mut quid_node::auditor::Auditor) {
    let mut complete = false;
    loop {
        let wait = match auditor.step() {
            Ok(step) => {
                match step.answered {
                    Some(Ok(())) => eprintln!("<6>quid-node: storage audit passed"),
                    Some(Err(why)) => eprintln!("<3>quid-node: storage audit failed: {why}"),
                    None => {}
                }
                if step.filled && !complete {
                    eprintln!(
                        "<6>quid-node: the router's fill is stored ({} chunks)",
                        auditor.held()
                    );
                }
                complete = step.filled;
                step.wait
            }
            // A router without audits has no such routes: ask again in ten minutes.
            Err(quid_node::auditor::AuditorError::Request(
                quid_report::audit_request::RequestError::Refused { status: 404, .. },
            )) => std::time::Duration::from_secs(600),
            Err(e) => {
                eprintln!("<4>quid-node: storage audit step: {e}");
                std::time::Duration::from_secs(5)
            }
        };
        std::thread::sleep(wait);
    }
}

fn agent_loop(config: Config) -> anyhow::Result<()> {
    let key = quid_report::key::read_key(&config.key)?;
    if let Some(s) = &config.storage {
        // Idempotent: a reservation someone shrank or deleted is allocated again.
        storage::reserve(&s.dir, s.reserve_bytes)?;
    }
    let clock = Clock::system();
    if let Some(s) = &config.storage {
        let mut auditor = quid_node::auditor::Auditor::open(
            &config.node,
            &config.router,
            key.clone(),
            clock.clone(),
            &s.dir,
            &config.state_dir,
            std::time::Duration::from_secs(config.audit_poll_secs.max(1)),
        )?;
        // Its own thread: audits have deadlines of seconds, the reports' loop sleeps minutes.
        std::thread::spawn(move || audit_loop(&mut auditor));
    }
    let mut agent = Agent::open(config, key, clock.clone())?;
    eprintln!(
        "<6>quid-node: running; next period ends at {}",
        agent.next_end()?
    );
    // Runs until the process is stopped: every step's state is on disk, so SIGTERM or a
    // power cut needs no clean-up.
    loop {
        for seq in agent.close_due()? {
            eprintln!("<6>quid-node: period closed, report {seq} in the outbox");
        }
        for problem in &agent.problems {
            eprintln!("<4>quid-node: {problem}");
        }
        let d = agent.deliver()?;
        for seq in &d.acknowledged {
            eprintln!("<6>quid-node: report {seq} acknowledged");
        }
        for (seq, why) in &d.refused {
            eprintln!("<3>quid-node: report {seq} refused by the router: {why}");
        }
        if let Some(why) = d.waiting.filter(|w| w != "backing off") {
            eprintln!("<4>quid-node: router not reached ({why}); the outbox keeps the reports");
        }
        let wait = agent.next_wake()?.saturating_sub(clock.now_i64()?).max(1);
        std::thread::sleep(std::time::Duration::from_secs(
            u64::try_from(wait).unwrap_or(1),
        ));
        agent.sample();
    }
}
