//! Builds the eBPF crate (nightly, bpfel-unknown-none, bpf-linker) so that its objects can be
//! embedded in the `quid` binary. Run `scripts/bootstrap.sh` once if this fails for a
//! missing toolchain or linker.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
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
