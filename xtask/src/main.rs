//! `cargo xtask`: install the toolchain, run the checks and tests, the demo and the benchmarks.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

mod dashboards;
mod dist;
mod dist_node;
mod fuzz;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "quid's build, test, demo and benchmark automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building the eBPF programs needs (nightly rust-src, LLVM 22, bpf-linker).
    Setup,
    /// Formatting, clippy (user space and eBPF separately) and every test. Needs root.
    Test,
    /// Build and run the namespace demo: real traffic, exact per-subscriber counts. Needs root.
    Demo,
    /// Regenerate dashboards/ (Grafana JSON, provisioning, Prometheus rules) from code.
    Dashboards {
        /// Fail instead of writing if anything would change.
        #[arg(long)]
        check: bool,
    },
    /// Run the benchmarks and write bench/*.json and bench/*.md. Needs root.
    Bench {
        /// Table sizes for the XDP benchmark.
        #[arg(long, default_value = "1000,100000,1000000")]
        sizes: String,
    },
    /// Run every fuzz target for a bounded time and write the figures.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        #[arg(long, default_value = "target/fuzz.json")]
        out: PathBuf,
    },
    /// Build the Debian packages (target/dist/quid_VERSION_ARCH.deb and quid-node_...), verify
    /// them and run lintian.
    Dist,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = root()?;
    match cli.command {
        Cmd::Setup => setup(&root),
        Cmd::Dashboards { check } => dashboards::generate(&root, check),
        Cmd::Test => {
            setup(&root)?;
            run(&root, "cargo", &["fmt", "--all", "--check"])?;
            dashboards::generate(&root, true)?;
            run(
                &root,
                "cargo",
                &["clippy", "--all-targets", "--", "-D", "warnings"],
            )?;
            // The eBPF crate is linted on its own: it has its own panic handlers and target.
            run(
                &root.join("ebpf"),
                "cargo",
                &[
                    "+nightly",
                    "clippy",
                    "--release",
                    "--target",
                    "bpfel-unknown-none",
                    "-Z",
                    "build-std=core",
                    "--",
                    "-D",
                    "warnings",
                ],
            )?;
            // The package first: a test installs it (tests/package.rs, `QUID_DEB`).
            let deb = dist(&root)?;
            // Default members only: the eBPF crate builds for its own target (via build.rs).
            // The tests that need root are `#[ignore]`d for a plain `cargo test`; run them all.
            run_with(
                &root,
                "cargo",
                &["test", "--", "--include-ignored"],
                &[("QUID_DEB", deb.to_str().context("non-UTF-8 path")?)],
            )?;
            // Short, bounded fuzzing of every target; `cargo xtask fuzz` runs longer.
            fuzz::run(&root, 15, &root.join("target/fuzz.json"))
        }
        Cmd::Fuzz { secs, out } => {
            setup(&root)?;
            fuzz::run(&root, secs, &root.join(out))
        }
        Cmd::Dist => {
            setup(&root)?;
            dist(&root).map(drop)
        }
        Cmd::Demo => {
            setup(&root)?;
            run(
                &root,
                "cargo",
                &["build", "--release", "--bin", "quid", "--bin", "quid-node"],
            )?;
            let quid = target_dir(&root).join("release/quid");
            let node = target_dir(&root).join("release/quid-node");
            run(
                &root,
                "bash",
                &[
                    "scripts/demo.sh",
                    quid.to_str().context("non-UTF-8 path")?,
                    node.to_str().context("non-UTF-8 path")?,
                ],
            )
        }
        Cmd::Bench { sizes } => {
            setup(&root)?;
            run(
                &root,
                "cargo",
                &[
                    "build",
                    "--release",
                    "--bin",
                    "quid-bench",
                    "--bin",
                    "quid-node",
                ],
            )?;
            let bench = target_dir(&root).join("release/quid-bench");
            let bench = bench.to_str().context("non-UTF-8 path")?;
            run(&root, bench, &["xdp", "--out", "bench", "--sizes", &sizes])?;
            run(&root, bench, &["registry", "--out", "bench"])?;
            run(&root, bench, &["metrics", "--out", "bench"])?;
            run(&root, bench, &["reports", "--out", "bench"])?;
            // The node agent's CPU and memory, report signing and delivery, the storage audit.
            let node = target_dir(&root).join("release/quid-node");
            let node = node.to_str().context("non-UTF-8 path")?;
            run(
                &root,
                bench,
                &["node", "--out", "bench", "--node-bin", node],
            )?;
            // The books: interval commits at a million subscribers, a simulated year, one
            // subscriber's month from a store of a million, and ledger verification.
            run(&root, bench, &["books", "--out", "bench"])?;
            run(&root, bench, &["ledger", "--out", "bench"])?;
            // The planner's export, what-if re-pricing and report (bench/planner.json).
            run(&root, bench, &["planner", "--out", "bench"])?;
            // Longer fuzzing, and the XDP property test over a million frames per program.
            fuzz::run(&root, 120, &root.join("bench/fuzz.json"))?;
            release_test(
                &root,
                &["test_run", "random_"],
                &[("QUID_PROPERTY_FRAMES", "1000000")],
            )?;
            // Shipping to the shared store (a real PostgreSQL): rows per second, the fold, and
            // the catch-up after a ten-minute outage at 100,000 subscribers.
            let cluster = root.join("bench/cluster.json");
            let cluster = cluster.to_str().context("non-UTF-8 path")?;
            release_test(
                &root,
                &["cluster", "shipping_rate"],
                &[
                    ("QUID_CLUSTER_SUBSCRIBERS", "100000"),
                    ("QUID_CLUSTER_OUT", cluster),
                ],
            )?;
            // Reports accepted across two routers at once, each shipping as it answers.
            release_test(
                &root,
                &["cluster", "reports_accepted"],
                &[
                    ("QUID_CLUSTER_NODES", "512"),
                    ("QUID_CLUSTER_CLIENTS", "128"),
                    ("QUID_CLUSTER_OUT", cluster),
                ],
            )?;
            // The load test, longer than in CI and with its latency and memory targets.
            let out = root.join("bench/load.json");
            let out = out.to_str().context("non-UTF-8 path")?;
            release_test(
                &root,
                &["load"],
                &[
                    ("QUID_LOAD_SECS", "60"),
                    ("QUID_LOAD_OUT", out),
                    ("QUID_LOAD_TARGETS", "1"),
                ],
            )?;
            Ok(())
        }
    }
}

/// Builds the release binary, then the package, verifies it, and returns its path.
fn dist(root: &Path) -> anyhow::Result<PathBuf> {
    run(
        root,
        "cargo",
        &["build", "--release", "--bin", "quid", "--bin", "quid-node"],
    )?;
    let target = target_dir(root);
    let deb = dist::build(root, &target.join("dist"), &target.join("release/quid"))?;
    dist::verify(&deb)?;
    dist::lintian(root, &deb)?;
    // The node agent's package, for this host and cross-built for arm64 (a Raspberry Pi).
    let node = dist_node::build(
        root,
        &target.join("dist"),
        &target.join("release/quid-node"),
        None,
    )?;
    dist_node::verify(&node, None)?;
    dist::lintian(root, &node)?;
    let arm = &dist_node::ARM64;
    let env = arm.cargo_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_with(
        root,
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "quid-node",
            "--target",
            arm.rust_target,
        ],
        &env,
    )?;
    let node = dist_node::build(
        root,
        &target.join("dist"),
        &target.join(arm.rust_target).join("release/quid-node"),
        Some(arm),
    )?;
    dist_node::verify(&node, Some(arm))?;
    dist::lintian(root, &node)?;
    Ok(deb)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the workspace, as cargo
/// takes it), else `target/`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d))
}

fn root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .ok_or_else(|| anyhow::anyhow!("xtask should live in the workspace"))
}

fn setup(root: &Path) -> anyhow::Result<()> {
    run(root, "bash", &["scripts/bootstrap.sh"])
}

fn run(dir: &Path, program: &str, args: &[&str]) -> anyhow::Result<()> {
    run_with(dir, program, args, &[])
}

/// `cargo test --release --test TEST [FILTER] -- --nocapture` with `envs` set.
fn release_test(root: &Path, test: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut args = vec!["test", "--release", "--test"];
    args.extend_from_slice(test);
    // The benchmark tests need root, so a plain `cargo test` skips them (`#[ignore]`).
    args.extend(["--", "--include-ignored", "--nocapture"]);
    run_with(root, "cargo", &args, envs)
}

fn run_with(dir: &Path, program: &str, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
