//! `cargo xtask fuzz`: every cargo-fuzz target for a bounded time, from the committed seeds
//! (fuzz/seeds) plus the local corpus; fails on the first crash, and writes the figures
//! (runs, executions per second, coverage) to a JSON file.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

/// The targets in fuzz/Cargo.toml.
pub const TARGETS: [&str; 9] = [
    "report_json",
    "canonical",
    "config",
    "subscribers",
    "nodes",
    "statement_pair",
    "radius",
    "kea_leases",
    "libreqos",
];

/// libFuzzer's last status line: `#RUNS DONE cov: C ft: F corp: N/B ... exec/s: E ...`.
fn figures(target: &str, secs: u64, log: &str) -> serde_json::Value {
    let done = log
        .lines()
        .rev()
        .find(|l| l.contains("DONE") || l.contains("cov:"))
        .unwrap_or("");
    let field = |name: &str| {
        done.split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .map(|v| v.split('/').next().unwrap_or(v).to_owned())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let runs = done
        .split_whitespace()
        .next()
        .and_then(|r| r.trim_start_matches('#').parse::<u64>().ok())
        .unwrap_or(0);
    serde_json::json!({
        "target": target,
        "seconds": secs,
        "runs": runs,
        "exec_per_second": field("exec/s:"),
        "coverage_edges": field("cov:"),
        "features": field("ft:"),
        "corpus": field("corp:"),
        "crashes": 0,
    })
}

/// Runs each target for `secs` seconds; writes the figures to `out`.
pub fn run(root: &Path, secs: u64, out: &Path) -> anyhow::Result<()> {
    let fuzz = root.join("fuzz");
    let status = Command::new("cargo")
        .args(["+nightly", "fuzz", "build", "-s", "none"])
        .current_dir(&fuzz)
        .status()
        .context("cannot run cargo fuzz (scripts/bootstrap.sh installs it)")?;
    if !status.success() {
        bail!("building the fuzz targets failed ({status})");
    }
    let mut rows = Vec::new();
    for target in TARGETS {
        let corpus = fuzz.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = fuzz.join("seeds").join(target);
        let mut cmd = Command::new("cargo");
        cmd.args(["+nightly", "fuzz", "run", "-s", "none", target])
            .arg(&corpus)
            .current_dir(&fuzz);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        let output = cmd
            .args([
                "--",
                &format!("-max_total_time={secs}"),
                "-timeout=10",
                "-rss_limit_mb=2048",
                "-print_final_stats=1",
            ])
            .output()
            .context("cannot run cargo fuzz")?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {target} failed; the input is in fuzz/artifacts/{target}/:\n{}",
                tail.join("\n")
            );
        }
        let row = figures(target, secs, &log);
        println!("fuzz: {row}");
        rows.push(row);
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&rows)? + "\n")?;
    println!("fuzz: figures in {}", out.display());
    Ok(())
}
