//! `cargo xtask dist`: the node agent's Debian package, `quid-node`: the binary, its hardened
//! systemd unit and an example config. Built with `dpkg-deb` like quid's own package (the
//! helpers are in `dist.rs`), verified the way a subscriber would use it, and lintian-checked.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, ensure};

use crate::dist::{
    Control, changelog_version, copy, gzip, output, package, unpack_checked, verify_unit, version,
};

/// What the package must contain (paths inside it).
pub const CONTENTS: [&str; 6] = [
    "./usr/bin/quid-node",
    "./lib/systemd/system/quid-node.service",
    "./etc/quid-node/config.toml",
    "./usr/share/doc/quid-node/contributing-a-node.md",
    "./usr/share/doc/quid-node/copyright",
    "./usr/share/doc/quid-node/changelog.gz",
];

const CONFFILES: &str = "/etc/quid-node/config.toml\n";

const POSTINST: &str = r#"#!/bin/sh
# Creates the quid-node system user; the unit is installed but not started, since the node id
# and the router in /etc/quid-node/config.toml must be set and the key made first.
set -e
if [ "$1" = configure ]; then
    if ! getent passwd quid-node >/dev/null; then
        adduser --system --group --no-create-home --home /var/lib/quid-node quid-node
    fi
    # Where `quid-node init` (run as quid-node) writes the key: only the agent reads it.
    install -d -o quid-node -g quid-node -m 0700 /var/lib/quid-node
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
    if [ -n "$2" ]; then
        if [ -d /run/systemd/system ]; then
            systemctl try-restart quid-node.service || true
        fi
    else
        echo "quid-node: set node and router in /etc/quid-node/config.toml, run 'sudo -u quid-node quid-node init --subscriber ACCOUNT --max-watts W', then: systemctl enable --now quid-node"
    fi
fi
"#;

const PRERM: &str = r#"#!/bin/sh
# On removal: stop the agent. Its state (key, sequence numbers, outbox) stays in
# /var/lib/quid-node: a node starting again from sequence 1 is refused by the router.
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop quid-node.service || true
fi
"#;

const POSTRM: &str = r#"#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
"#;

/// An architecture the node agent is cross-built for: subscribers' devices are as often a
/// Raspberry Pi as a PC.
pub struct Cross {
    /// Debian's name for it.
    pub deb_arch: &'static str,
    /// Rust's target.
    pub rust_target: &'static str,
    /// The Debian cross tools: the C compiler (linker, and `ring`'s C) and `strip`.
    pub gcc: &'static str,
    pub strip: &'static str,
    /// qemu-user's emulator and the cross libc it loads, to run the binary here.
    pub qemu: &'static str,
    pub sysroot: &'static str,
}

/// 64-bit ARM (Raspberry Pi 3 and later, most ARM NAS boxes).
pub const ARM64: Cross = Cross {
    deb_arch: "arm64",
    rust_target: "aarch64-unknown-linux-gnu",
    gcc: "aarch64-linux-gnu-gcc",
    strip: "aarch64-linux-gnu-strip",
    qemu: "qemu-aarch64",
    sysroot: "/usr/aarch64-linux-gnu",
};

impl Cross {
    /// Cargo's environment for building for this target with the Debian cross tools.
    pub fn cargo_env(&self) -> [(String, String); 2] {
        let upper = self.rust_target.to_uppercase().replace('-', "_");
        [
            (format!("CARGO_TARGET_{upper}_LINKER"), self.gcc.to_owned()),
            (
                format!("CC_{}", self.rust_target.replace('-', "_")),
                self.gcc.to_owned(),
            ),
        ]
    }

    /// Runs `bin` (built for this target) with `args` under qemu-user; its standard output.
    fn output(&self, bin: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-L", self.sysroot, bin];
        all.extend_from_slice(args);
        output(self.qemu, &all)
    }
}

/// Builds `DIST/quid-node_VERSION_ARCH.deb` from the release binary `node`, for this host's
/// architecture or `cross`'s.
pub fn build(
    root: &Path,
    dist: &Path,
    node: &Path,
    cross: Option<&Cross>,
) -> anyhow::Result<PathBuf> {
    let version = version(root)?;
    let arch = match cross {
        Some(c) => c.deb_arch.to_owned(),
        None => output("dpkg", &["--print-architecture"])?.trim().to_owned(),
    };
    let stage = dist.join(format!("stage-node-{arch}"));
    let _ = std::fs::remove_dir_all(&stage);
    let bin = stage.join("usr/bin/quid-node");
    copy(node, &bin, 0o755)?;
    let strip = cross.map_or("strip", |c| c.strip);
    let stripped = Command::new(strip).arg(&bin).status();
    ensure!(
        stripped.is_ok_and(|s| s.success()),
        "cannot strip {} with {strip} (scripts/bootstrap.sh installs the cross tools)",
        bin.display()
    );
    let src = root.join("dist");
    copy(
        &src.join("quid-node.service"),
        &stage.join("lib/systemd/system/quid-node.service"),
        0o644,
    )?;
    copy(
        &src.join("quid-node.toml"),
        &stage.join("etc/quid-node/config.toml"),
        0o644,
    )?;
    let doc = stage.join("usr/share/doc/quid-node");
    copy(
        &root.join("docs/contributing-a-node.md"),
        &doc.join("contributing-a-node.md"),
        0o644,
    )?;
    copy(&src.join("debian/copyright"), &doc.join("copyright"), 0o644)?;
    let changelog_path = src.join("debian/quid-node.changelog");
    let changelog = std::fs::read_to_string(&changelog_path)?;
    ensure!(
        changelog_version("quid-node", &changelog) == Some(version.as_str()),
        "dist/debian/quid-node.changelog must start with an entry for quid-node ({version}): add one"
    );
    gzip(&changelog_path, &doc.join("changelog.gz"))?;
    let deb = dist.join(format!("quid-node_{version}_{arch}.deb"));
    let control = Control {
        package: "quid-node",
        version: &version,
        arch: &arch,
        description: "quid node agent: measured, signed grid contribution reports\n \
             Measures the CPU time, storage, electricity and grid traffic a subscriber's\n \
             device gives the ISP's grid and reports them, signed, to the quid router\n \
             through a durable outbox.",
        conffiles: CONFFILES,
        scripts: [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)],
    };
    package(&stage, &bin, &control, &deb)?;
    Ok(deb)
}

/// Checks a built package: fields and contents, the binary it installs runs (under qemu-user
/// for a `cross` build) and is for the package's architecture, the example config is one the
/// binary reads, and systemd accepts the unit.
pub fn verify(deb: &Path, cross: Option<&Cross>) -> anyhow::Result<()> {
    let (scratch, control, listing) = unpack_checked(deb, "quid-node", &CONTENTS)?;
    let run = |bin: &str, args: &[&str]| match cross {
        Some(c) => c.output(bin, args),
        None => output(bin, args),
    };
    let deb_s = deb.to_str().context("non-UTF-8 path")?;
    let node = scratch.join("usr/bin/quid-node");
    let node_s = node.to_str().context("non-UTF-8 path")?;
    if let Some(c) = cross {
        let fields = std::fs::read_to_string(control.join("control"))?;
        ensure!(
            fields.contains(&format!("Architecture: {}\n", c.deb_arch)),
            "{} is not marked {}:\n{fields}",
            deb.display(),
            c.deb_arch
        );
        // The ELF header's machine (e_machine at offset 18): AArch64 is 183.
        let elf = std::fs::read(&node)?;
        ensure!(
            elf.get(18..20) == Some(&183u16.to_le_bytes()[..]),
            "{} does not hold an {} binary",
            deb.display(),
            c.deb_arch
        );
    }
    let v = run(node_s, &["--version"])?;
    ensure!(
        v.starts_with("quid-node "),
        "unexpected version output: {v}"
    );
    // The example config reads, and `status` works on it with an empty state (kept in the
    // scratch directory, not in this host's /var/lib).
    let config = std::fs::read_to_string(scratch.join("etc/quid-node/config.toml"))?;
    let state = scratch.join("state");
    let local = scratch.join("config.toml");
    std::fs::write(
        &local,
        config.replace(
            "/var/lib/quid-node",
            state.to_str().context("non-UTF-8 path")?,
        ),
    )?;
    run(
        node_s,
        &[
            "--config",
            local.to_str().context("non-UTF-8 path")?,
            "status",
        ],
    )?;
    // The unit must run the agent unprivileged: no capability at all.
    let unit = std::fs::read_to_string(scratch.join("lib/systemd/system/quid-node.service"))?;
    for line in [
        "User=quid-node",
        "CapabilityBoundingSet=\n",
        "NoNewPrivileges=yes",
    ] {
        ensure!(unit.contains(line), "the unit lacks `{}`", line.trim());
    }
    verify_unit(&scratch, "quid-node.service", "/usr/bin/quid-node", node_s)?;
    let _ = std::fs::remove_dir_all(&scratch);
    println!("dist: {deb_s} verified ({} files)", listing.lines().count());
    Ok(())
}
