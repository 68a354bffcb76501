//! `cargo xtask dist`: the Debian package: the `quid` binary (with the eBPF object embedded),
//! the systemd unit, an example config, the dashboards and rules. Built with `dpkg-deb` from a
//! staged tree, so no packaging tool needs installing; `verify` checks a built package the way
//! an operator would use it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

/// What the package must contain (paths inside it).
pub const CONTENTS: [&str; 19] = [
    "./usr/bin/quid",
    "./lib/systemd/system/quid.service",
    "./etc/quid/quid.toml",
    "./etc/quid/subscribers.csv",
    "./etc/quid/nodes.csv",
    "./usr/share/quid/dashboards/noc-overview.json",
    "./usr/share/quid/dashboards/subscriber.json",
    "./usr/share/quid/dashboards/capacity-planning.json",
    "./usr/share/quid/dashboards/provisioning/quid.yaml",
    "./usr/share/quid/dashboards/rules/quid.rules.yml",
    "./usr/share/doc/quid/README.md",
    "./usr/share/doc/quid/copyright",
    "./usr/share/doc/quid/changelog.gz",
    "./usr/share/lintian/overrides/quid",
    "./usr/share/man/man1/quid.1.gz",
    "./usr/share/man/man1/quid-run.1.gz",
    "./usr/share/bash-completion/completions/quid",
    "./usr/share/zsh/vendor-completions/_quid",
    "./usr/share/fish/vendor_completions.d/quid.fish",
];

/// Where each generated completion script goes in the package (Debian's vendor directories).
const COMPLETIONS: [(&str, &str); 3] = [
    ("quid.bash", "usr/share/bash-completion/completions/quid"),
    ("_quid", "usr/share/zsh/vendor-completions/_quid"),
    ("quid.fish", "usr/share/fish/vendor_completions.d/quid.fish"),
];

const CONFFILES: &str = "/etc/quid/quid.toml\n/etc/quid/subscribers.csv\n/etc/quid/nodes.csv\n";

const POSTINST: &str = r#"#!/bin/sh
# Creates the quid system user; the unit is installed but not started, since the interfaces
# in /etc/quid/quid.toml must be set first.
set -e
if [ "$1" = configure ]; then
    if ! getent passwd quid >/dev/null; then
        adduser --system --group --no-create-home --home /var/lib/quid quid
    fi
    # quid reads its config as group quid; nobody else needs to.
    chgrp quid /etc/quid /etc/quid/quid.toml /etc/quid/subscribers.csv /etc/quid/nodes.csv
    chmod 0750 /etc/quid
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
    if [ -n "$2" ]; then
        # An upgrade: prerm left the programs attached and counting; the new daemon adopts
        # them (a running one is restarted onto the new binary, a stopped one stays stopped).
        if [ -d /run/systemd/system ]; then
            systemctl try-restart quid.service || true
        fi
    else
        echo "quid: set the interfaces in /etc/quid/quid.toml, then: systemctl enable --now quid"
    fi
fi
"#;

const PRERM: &str = r#"#!/bin/sh
# On removal: stop the daemon, then detach quid's XDP programs and remove its pins while the
# binary that knows them is still installed; with on_stop = "keep" they would otherwise stay
# attached, counting into maps nobody reads. The store (totals, ledger) is kept.
# Without systemd (or for a quid started by hand), `--stop` stops a daemon running with the
# config itself: SIGTERM, its final read, then the pins go.
# On upgrade nothing is detached: the programs go on counting and the new daemon adopts them.
set -e
if [ "$1" = remove ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop quid.service || true
    fi
    if [ -r /etc/quid/quid.toml ]; then
        quid detach --stop --config /etc/quid/quid.toml ||
            echo "quid: the XDP programs may still be attached: stop every quid, then run 'quid detach'" >&2
    fi
fi
"#;

const POSTRM: &str = r#"#!/bin/sh
# The store in /var/lib/quid holds the ledger (money): it is never removed by the package.
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
"#;

pub(crate) fn version(root: &Path) -> anyhow::Result<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .context("no version in [workspace.package]")
}

pub(crate) fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn copy(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to.parent().context("no parent")?)?;
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            copy(&e.path(), &target, 0o644)?;
        }
    }
    Ok(())
}

/// The newest GLIBC symbol version the binary `bin` needs (`(2, 34)` for GLIBC_2.34), from its
/// dynamic symbol table: the `Depends: libc6 (>= ...)` it must carry.
pub(crate) fn glibc_needed(bin: &Path) -> anyhow::Result<(u32, u32)> {
    let symbols = output("objdump", &["-T", bin.to_str().context("non-UTF-8 path")?])?;
    symbols
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(str::parse::<u32>);
            Some((parts.next()?.ok()?, parts.next().unwrap_or(Ok(0)).ok()?))
        })
        .max()
        .context("the binary needs no GLIBC symbol version: is it dynamically linked?")
}

/// The version at the top of `package`'s Debian changelog (`quid (0.1.0) unstable; ...`).
pub(crate) fn changelog_version<'a>(package: &str, changelog: &'a str) -> Option<&'a str> {
    changelog
        .lines()
        .next()?
        .strip_prefix(package)?
        .strip_prefix(" (")?
        .split_once(')')
        .map(|(v, _)| v)
}

/// Compresses `from` to `to` as policy asks: -9, and -n so the same input always gives the
/// same bytes.
pub(crate) fn gzip(from: &Path, to: &Path) -> anyhow::Result<()> {
    let gz = Command::new("gzip")
        .args(["-9nc"])
        .arg(from)
        .output()
        .context("cannot run gzip")?;
    ensure!(gz.status.success(), "gzip failed on {}", from.display());
    std::fs::create_dir_all(to.parent().context("no parent")?)?;
    std::fs::write(to, gz.stdout)?;
    Ok(())
}

/// Stages the manual pages and shell completions the binary `quid` generates from its own
/// command-line definitions (`quid generate-docs`), so they always match `--help`.
fn docs(quid: &Path, dist: &Path, stage: &Path) -> anyhow::Result<()> {
    let generated = dist.join("generated-docs");
    let _ = std::fs::remove_dir_all(&generated);
    output(
        quid.to_str().context("non-UTF-8 path")?,
        &[
            "generate-docs",
            "--out",
            generated.to_str().context("non-UTF-8 path")?,
        ],
    )?;
    for page in std::fs::read_dir(generated.join("man"))? {
        let page = page?.path();
        let name = page.file_name().context("no file name")?.to_string_lossy();
        gzip(&page, &stage.join(format!("usr/share/man/man1/{name}.gz")))?;
    }
    for (generated_name, packaged) in COMPLETIONS {
        copy(
            &generated.join("completions").join(generated_name),
            &stage.join(packaged),
            0o644,
        )?;
    }
    Ok(())
}

/// Builds `DIST/quid_VERSION_ARCH.deb` from the release binary `quid`.
pub fn build(root: &Path, dist: &Path, quid: &Path) -> anyhow::Result<PathBuf> {
    let version = version(root)?;
    let arch = output("dpkg", &["--print-architecture"])?.trim().to_owned();
    let stage = dist.join("stage");
    let _ = std::fs::remove_dir_all(&stage);
    copy(quid, &stage.join("usr/bin/quid"), 0o755)?;
    let _ = Command::new("strip")
        .arg(stage.join("usr/bin/quid"))
        .status();
    let src = root.join("dist");
    copy(
        &src.join("quid.service"),
        &stage.join("lib/systemd/system/quid.service"),
        0o644,
    )?;
    for f in ["quid.toml", "subscribers.csv", "nodes.csv"] {
        copy(&src.join(f), &stage.join("etc/quid").join(f), 0o640)?;
    }
    copy_tree(
        &root.join("dashboards"),
        &stage.join("usr/share/quid/dashboards"),
    )?;
    copy(
        &root.join("README.md"),
        &stage.join("usr/share/doc/quid/README.md"),
        0o644,
    )?;
    let doc = stage.join("usr/share/doc/quid");
    copy(&src.join("debian/copyright"), &doc.join("copyright"), 0o644)?;
    copy(
        &src.join("debian/lintian-overrides"),
        &stage.join("usr/share/lintian/overrides/quid"),
        0o644,
    )?;
    // A native package's changelog, compressed as policy asks: -9, and -n so the same
    // changelog always gives the same bytes.
    let changelog = std::fs::read_to_string(src.join("debian/changelog"))?;
    ensure!(
        changelog_version("quid", &changelog) == Some(version.as_str()),
        "dist/debian/changelog must start with an entry for quid ({version}): add one"
    );
    gzip(&src.join("debian/changelog"), &doc.join("changelog.gz"))?;
    docs(quid, dist, &stage)?;
    let deb = dist.join(format!("quid_{version}_{arch}.deb"));
    let control = Control {
        package: "quid",
        version: &version,
        arch: &arch,
        description: "XDP traffic accounting and settlement for ISP edge routers\n \
             Counts bytes per subscriber and direction with XDP, accepts signed node\n \
             contribution reports, keeps a hash-chained ledger and exports Prometheus\n \
             metrics.",
        conffiles: CONFFILES,
        scripts: [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)],
    };
    package(&stage, &stage.join("usr/bin/quid"), &control, &deb)?;
    Ok(deb)
}

/// A package's control fields and maintainer scripts.
pub(crate) struct Control<'a> {
    pub package: &'a str,
    pub version: &'a str,
    pub arch: &'a str,
    /// The synopsis, then the long description's lines (each `\n ` separated).
    pub description: &'a str,
    pub conffiles: &'a str,
    pub scripts: [(&'a str, &'a str); 3],
}

/// Writes `stage/DEBIAN` (control, with the glibc the binary `bin` needs and the staged size;
/// conffiles; the scripts) and builds `deb` from the staged tree, every file owned by root.
pub(crate) fn package(stage: &Path, bin: &Path, c: &Control, deb: &Path) -> anyhow::Result<()> {
    let (major, minor) = glibc_needed(bin)?;
    let debian = stage.join("DEBIAN");
    std::fs::create_dir_all(&debian)?;
    let size_kb = output("du", &["-sk", stage.to_str().context("non-UTF-8 path")?])?
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .to_owned();
    std::fs::write(
        debian.join("control"),
        format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: quid developers <quid@example.invalid>\n\
             Installed-Size: {size_kb}\nDepends: libc6 (>= {major}.{minor}), adduser\nSection: net\n\
             Priority: optional\nDescription: {}\n",
            c.package, c.version, c.arch, c.description
        ),
    )?;
    std::fs::write(debian.join("conffiles"), c.conffiles)?;
    for (name, text) in c.scripts {
        std::fs::write(debian.join(name), text)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(debian.join(name), std::fs::Permissions::from_mode(0o755))?;
    }
    output(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "--build",
            stage.to_str().context("non-UTF-8 path")?,
            deb.to_str().context("non-UTF-8 path")?,
        ],
    )?;
    Ok(())
}

/// Checks `deb`'s control fields (package `package`, glibc, scripts, conffiles), that it holds
/// `contents` owned by root, and that its scripts parse; returns where it is unpacked, its
/// control directory there and its listing.
pub(crate) fn unpack_checked(
    deb: &Path,
    package: &str,
    contents: &[&str],
) -> anyhow::Result<(PathBuf, PathBuf, String)> {
    let deb_s = deb.to_str().context("non-UTF-8 path")?;
    let info = output("dpkg-deb", &["--info", deb_s])?;
    let name = format!("Package: {package}\n");
    for field in [
        name.as_str(),
        "Depends: libc6 (>= 2.",
        "postinst",
        "prerm",
        "conffiles",
    ] {
        ensure!(
            info.contains(field),
            "{deb_s}: no `{}` in\n{info}",
            field.trim()
        );
    }
    let listing = output("dpkg-deb", &["--contents", deb_s])?;
    for path in contents {
        ensure!(
            listing.lines().any(|l| l.ends_with(path)),
            "{deb_s}: {path} missing from\n{listing}"
        );
    }
    ensure!(
        listing.contains("root/root"),
        "{deb_s}: files must belong to root"
    );
    let scratch = deb.with_extension("extracted");
    let _ = std::fs::remove_dir_all(&scratch);
    let scratch_s = scratch.to_str().context("non-UTF-8 path")?;
    output("dpkg-deb", &["--extract", deb_s, scratch_s])?;
    let control = scratch.join("DEBIAN");
    output(
        "dpkg-deb",
        &[
            "--control",
            deb_s,
            control.to_str().context("non-UTF-8 path")?,
        ],
    )?;
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        output("sh", &["-n", path.to_str().context("non-UTF-8 path")?])?;
    }
    Ok((scratch, control, listing))
}

/// Has systemd check the packaged unit `name` (in `scratch`), with the packaged binary
/// `bin` in place of the installed path `installed`.
pub(crate) fn verify_unit(
    scratch: &Path,
    name: &str,
    installed: &str,
    bin: &str,
) -> anyhow::Result<()> {
    let unit = std::fs::read_to_string(scratch.join("lib/systemd/system").join(name))?;
    let unit_dir = scratch.join("unit-check");
    std::fs::create_dir_all(&unit_dir)?;
    std::fs::write(unit_dir.join(name), unit.replace(installed, bin))?;
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit_dir.join(name))
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => bail!(
            "systemd-analyze refuses the unit {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            println!("dist: systemd-analyze not available ({e}); unit not verified");
            Ok(())
        }
    }
}

/// Checks a built package: its fields and contents, the binary it installs (it runs and
/// carries the eBPF object), the example config (valid) and the unit (systemd accepts it).
pub fn verify(deb: &Path) -> anyhow::Result<()> {
    let (scratch, control, listing) = unpack_checked(deb, "quid", &CONTENTS)?;
    let deb_s = deb.to_str().context("non-UTF-8 path")?;
    // Removal must not leave programs attached with no binary left to detach them.
    let prerm = std::fs::read_to_string(control.join("prerm"))?;
    ensure!(
        prerm.contains("quid detach --stop --config /etc/quid/quid.toml"),
        "prerm does not detach quid's programs"
    );
    // Files are root:root in the package: postinst must hand each config file to group quid,
    // or the daemon (user quid) cannot read it.
    let postinst = std::fs::read_to_string(control.join("postinst"))?;
    for conffile in CONFFILES.lines() {
        ensure!(
            postinst.contains(conffile),
            "postinst does not give {conffile} to group quid"
        );
    }
    let quid = scratch.join("usr/bin/quid");
    let quid_s = quid.to_str().context("non-UTF-8 path")?;
    let v = output(quid_s, &["--version"])?;
    ensure!(v.starts_with("quid "), "unexpected version output: {v}");
    let bin = std::fs::read(&quid)?;
    ensure!(
        bin.windows(b"quid_access".len())
            .any(|w| w == b"quid_access"),
        "the packaged binary does not carry the eBPF programs"
    );
    // The manual and completions come from the packaged binary's own definitions: they name
    // its subcommands.
    let page = output(
        "zcat",
        &[scratch
            .join("usr/share/man/man1/quid.1.gz")
            .to_str()
            .context("non-UTF-8 path")?],
    )?;
    ensure!(
        page.contains(".TH quid 1") && page.contains("quid\\-ledger(1)"),
        "the packaged manual page quid.1 does not list quid's subcommands:\n{page}"
    );
    for (_, packaged) in COMPLETIONS {
        let script = std::fs::read_to_string(scratch.join(packaged))?;
        ensure!(
            script.contains("ledger") && script.contains("json"),
            "the packaged completions {packaged} do not know quid's subcommands"
        );
    }
    let config = scratch.join("etc/quid/quid.toml");
    output(
        quid_s,
        &[
            "check",
            // The example names interfaces of a router, not of the build host.
            "--files-only",
            "--config",
            config.to_str().context("non-UTF-8 path")?,
        ],
    )?;
    // systemd checks the unit with the packaged binary in place of /usr/bin/quid.
    verify_unit(&scratch, "quid.service", "/usr/bin/quid", quid_s)?;
    let _ = std::fs::remove_dir_all(&scratch);
    println!("dist: {deb_s} verified ({} files)", listing.lines().count());
    Ok(())
}

/// Runs lintian on the package: any error fails, as does an override lintian no longer needs
/// (each one in `dist/debian/lintian-overrides` says why it is there); warnings are printed.
pub fn lintian(root: &Path, deb: &Path) -> anyhow::Result<()> {
    let deb_s = deb.to_str().context("non-UTF-8 path")?;
    let out = Command::new("lintian")
        .args([
            "--fail-on",
            "error",
            "--display-info",
            "--tag-display-limit",
            "0",
            deb_s,
        ])
        .current_dir(root)
        .output()
        .context("cannot run lintian (scripts/bootstrap.sh installs it)")?;
    let report = String::from_utf8_lossy(&out.stdout);
    print!("{report}");
    ensure!(
        out.status.success(),
        "lintian finds errors in {deb_s}: fix them, or override one in \
         dist/debian/lintian-overrides saying why\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !report.contains("unused-override"),
        "an override in dist/debian/lintian-overrides is no longer needed: remove it"
    );
    println!("dist: lintian finds no errors in {deb_s}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changelogs_name_their_version() {
        for (package, file) in [("quid", "changelog"), ("quid-node", "quid-node.changelog")] {
            let text = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../dist/debian")
                    .join(file),
            )
            .unwrap();
            assert_eq!(
                changelog_version(package, &text),
                Some(env!("CARGO_PKG_VERSION")),
                "{file}"
            );
        }
        assert_eq!(changelog_version("quid", "other (1.0) unstable"), None);
        // Not the changelog of the node agent's package, whose name starts the same.
        assert_eq!(changelog_version("quid", "quid-node (1.0) unstable"), None);
    }

    #[test]
    fn the_newest_glibc_version_a_binary_needs_is_found() {
        // This test binary is itself dynamically linked against glibc.
        let exe = std::env::current_exe().unwrap();
        let (major, minor) = glibc_needed(&exe).unwrap();
        assert_eq!(major, 2);
        assert!(minor >= 2, "GLIBC_2.{minor}");
    }
}
