//! Builds the eBPF crate (nightly, bpfel-unknown-none, bpf-linker) so that its objects can be
//! embedded in the `quid` binary. Run `scripts/bootstrap.sh` once if this fails for a
//! missing toolchain or linker.
//!
//! Without bpf-linker (a newcomer's `cargo check`, an editor), the objects are written empty
//! instead, with a warning: everything but loading the programs builds and its unit tests run,
//! and a daemon built so refuses to start and says why (`kernel::loader`).
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// The objects `quid-ebpf` builds, which the daemon and the benchmark embed.
const OBJECTS: [&str; 2] = ["quid", "quid-bench"];

fn main() -> anyhow::Result<()> {
    println!("cargo::rerun-if-env-changed=PATH");
    if std::process::Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_err()
    {
        let out = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR not set")?);
        for name in OBJECTS {
            std::fs::write(out.join(name), []).with_context(|| format!("writing stub {name}"))?;
        }
        // A path that does not exist yet counts as changed: the script runs again on every
        // build until the linker is installed, and then builds the real objects.
        let home = std::env::var("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .unwrap_or_default();
        println!(
            "cargo::rerun-if-changed={}",
            home.join("bin/bpf-linker").display()
        );
        println!(
            "cargo::warning=bpf-linker not found: building without the XDP programs (quid run \
             will refuse to start). Run scripts/bootstrap.sh to build them."
        );
        return Ok(());
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata failed")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "quid-ebpf")
        .ok_or_else(|| anyhow!("package quid-ebpf not found in the workspace"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "quid-ebpf",
            root_dir: root.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
