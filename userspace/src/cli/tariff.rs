//! `quid tariff simulate`: a month of the books re-priced under another tariff, per plan and
//! for the fleet, and optionally the contribution price that balances one plan.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use quid::{
    config::Config,
    ledger::{chain::credits_wide, statement::month, tariff::Tariff},
    planner::{
        period_books,
        simulate::{PlanFigures, Simulation, named, simulate},
        solve::{Price, Solution, solve},
    },
    store::Store,
};

/// A file holding a `[tariff]` table (other tables, as in a copy of quid.toml, are ignored).
#[derive(serde::Deserialize)]
struct TariffFile {
    tariff: Tariff,
}

/// Reads the `[tariff]` of `path`.
fn load(path: &Path) -> anyhow::Result<Tariff> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the tariff file {}", path.display()))?;
    let file: TariffFile = toml::from_str(&text).with_context(|| {
        format!(
            "{} is not a tariff file: it needs a [tariff] table with the keys of quid.toml's",
            path.display()
        )
    })?;
    file.tariff
        .check(None, 0)
        .with_context(|| format!("in {}", path.display()))?;
    Ok(file.tariff)
}

/// `quid tariff simulate` as given on the command line.
#[derive(clap::Args)]
pub struct SimulateArgs {
    /// A TOML file with a [tariff] table (a copy of quid.toml will do).
    #[arg(long)]
    pub tariff: PathBuf,
    /// The month, YYYY-MM (UTC).
    #[arg(long)]
    pub period: String,
    /// Also find the least price of this kind (cpu_core_hour, storage_gib_day, energy_kwh)
    /// that makes --plan's month net zero or more under the new tariff.
    #[arg(long, requires = "plan")]
    pub solve: Option<String>,
    /// The plan --solve balances.
    #[arg(long, requires = "solve")]
    pub plan: Option<String>,
    /// Print it as JSON.
    #[arg(long)]
    pub json: bool,
    #[arg(long, short, default_value = "/etc/quid/quid.toml")]
    pub config: PathBuf,
}

/// Prints `--period` re-priced under `--tariff` against the configured tariff, and with
/// `--solve` the least price that balances `--plan`.
pub fn simulate_cmd(a: SimulateArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config)?;
    let (new, period, json) = (a.tariff.as_path(), a.period.as_str(), a.json);
    let solve_for = a.solve.as_deref().zip(a.plan.as_deref());
    let tariff = load(new)?;
    let (from, to) = month(period)?;
    let store = Store::open(&config.daemon.state_dir)?;
    let mut books = period_books::read(&store, from, to)?;
    let mut sim = simulate(&books, &config.tariff, &tariff);
    named(&store, &mut books, &mut sim)?;
    let solution = match solve_for {
        Some((price, plan)) => Some(solve(
            &books,
            &config.tariff,
            &tariff,
            price.parse::<Price>()?,
            plan,
        )?),
        None => None,
    };
    if json {
        let out = serde_json::json!({
            "period": period,
            "plans": sim.plans,
            "fleet": sim.fleet,
            "sign_changes": sim.sign_changes,
            "solve": solution,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!(
            "{}",
            render(period, &new.display().to_string(), &sim, solution.as_ref())
        );
    }
    Ok(())
}

/// The table: per plan and fleet, debits, credits and net under the current tariff and the new.
fn render(period: &str, new: &str, sim: &Simulation, solution: Option<&Solution>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{period}: current [tariff] (before) against {new} (after), in credits"
    );
    let _ = writeln!(
        out,
        "{:<16} {:>11} {:>16} {:>16} {:>16} {:>16} {:>16} {:>16}",
        "plan",
        "subscribers",
        "debits before",
        "credits before",
        "net before",
        "debits after",
        "credits after",
        "net after"
    );
    let row = |out: &mut String, p: &PlanFigures| {
        let _ = writeln!(
            out,
            "{:<16} {:>11} {:>16} {:>16} {:>16} {:>16} {:>16} {:>16}",
            p.plan,
            p.subscribers,
            credits_wide(p.before.debits),
            credits_wide(p.before.credits),
            credits_wide(p.before.net),
            credits_wide(p.after.debits),
            credits_wide(p.after.credits),
            credits_wide(p.after.net),
        );
    };
    for p in &sim.plans {
        row(&mut out, p);
    }
    row(&mut out, &sim.fleet);
    let _ = writeln!(
        out,
        "ISP's net (what subscribers pay): {} before, {} after",
        credits_wide(-sim.fleet.before.net),
        credits_wide(-sim.fleet.after.net)
    );
    if sim.sign_changes.is_empty() {
        let _ = writeln!(out, "no subscriber's net for the period changes sign");
    } else {
        let _ = writeln!(out, "subscribers whose net for the period changes sign:");
        for s in &sim.sign_changes {
            let _ = writeln!(
                out,
                "  {} ({}): {} -> {}",
                s.subscriber,
                s.plan,
                credits_wide(s.before),
                credits_wide(s.after)
            );
        }
    }
    if let Some(s) = solution {
        let _ = writeln!(
            out,
            "{} = {} micro-credits balances plan {} (net {}; one less: {})",
            s.price.name(),
            s.rate,
            s.plan,
            credits_wide(s.net),
            s.net_below.map_or_else(|| "-".to_owned(), credits_wide)
        );
    }
    out
}
