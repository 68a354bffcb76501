#![cfg(test)]
//! The Debian package on a live attachment (issue 16): installed with `dpkg -i`, it holds the
//! binary, the manual pages and the completions; removed with `dpkg -r` while a quid started
//! by hand (no systemd here) counts on a veth, its prerm stops that quid and detaches the XDP
//! program before the binary goes.
//!
//! The package goes into this system, not into a `dpkg --root` or `--instdir` tree: both
//! chroot into that tree to run the maintainer scripts, which would then need a whole Debian
//! system there (sh, adduser, getent), and `dpkg -x` with the scripts run by hand would test
//! our idea of dpkg, not dpkg. The test needs root anyway (namespaces, BPF) and runs on build
//! hosts, so it guards the system instead: it refuses to run where a package `quid` is
//! installed or left configured (it would replace an operator's quid), holds a lock so two
//! runs never share dpkg, and purges the package (and the `quid` user, if it made it) on
//! every exit, failure included.
//!
//! The package is the one `cargo xtask test` builds and names in `QUID_DEB` (`cargo xtask
//! dist` then checks it further).

mod common;

use std::{
    fs::File,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::Daemon;

/// `PROGRAM ARGS`: (success, stdout and stderr).
fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// dpkg's status of the package `quid` ("" when dpkg has never heard of it).
fn dpkg_status() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "quid"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Purges the package, and the system user and group its postinst made if they were not
/// there before, whatever state the test stopped in.
struct Installed {
    made_user: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "quid"]);
        if self.made_user {
            let _ = run("userdel", &["quid"]);
            let _ = run("groupdel", &["quid"]);
        }
    }
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn dpkg_installs_quid_and_removing_it_detaches_a_running_quid() {
    let deb = std::env::var("QUID_DEB").expect(
        "QUID_DEB names the package to test: `cargo xtask test` builds it and sets it; by hand: \
         cargo xtask dist && QUID_DEB=target/dist/quid_VERSION_ARCH.deb cargo test --test package \
         -- --include-ignored",
    );
    // One package test on this host at a time: dpkg and /etc/quid are shared.
    let lock = File::create("/run/lock/quid-package-test.lock").unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let status = dpkg_status();
    assert!(
        status.is_empty() || status.contains("not-installed"),
        "a package quid is on this host ({status}): this test would replace it; remove it with \
         `dpkg --purge quid` if it is a leftover of this test"
    );
    let made_user = !run("getent", &["passwd", "quid"]).0;
    let installed = Installed { made_user };

    let (ok, out) = run("dpkg", &["-i", &deb]);
    assert!(ok, "dpkg -i {deb}:\n{out}");
    assert_eq!(dpkg_status(), "install ok installed");
    let (ok, version) = run("/usr/bin/quid", &["--version"]);
    assert!(ok, "{version}");
    assert_eq!(
        version.trim(),
        format!("quid {}", env!("CARGO_PKG_VERSION"))
    );
    for page in ["quid", "quid-run", "quid-detach", "quid-ledger-show"] {
        let path = format!("/usr/share/man/man1/{page}.1.gz");
        let (ok, text) = run("zcat", &[&path]);
        assert!(
            ok && text.contains(&format!(".TH {page} 1")),
            "{path}: {text}"
        );
    }
    for file in [
        "/usr/share/bash-completion/completions/quid",
        "/usr/share/zsh/vendor-completions/_quid",
        "/usr/share/fish/vendor_completions.d/quid.fish",
        "/lib/systemd/system/quid.service",
        "/usr/share/doc/quid/copyright",
    ] {
        assert!(Path::new(file).is_file(), "{file} not installed");
    }
    // The config directory is for root and the daemon's group only.
    let quid_group = nix::unistd::Group::from_name("quid").unwrap().unwrap();
    let etc = std::fs::metadata("/etc/quid").unwrap();
    assert_eq!(
        (etc.permissions().mode() & 0o7777, etc.gid()),
        (0o750, quid_group.gid.as_raw())
    );

    // The installed quid, started by hand, attaches to a veth of a namespace of the test's.
    let (r, _s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let pins = common::pin_dir();
    std::fs::write(
        dir.path().join("subscribers.csv"),
        "id,name,plan,prefixes\nalice,A,home,100.64.1.10\n",
    )
    .unwrap();
    let config = Path::new("/etc/quid/quid.toml");
    std::fs::write(
        config,
        format!(
            "[daemon]\ninterval_secs = 1\nstate_dir = \"{dir}/state\"\npin_dir = \"{pins}\"\n\
             on_stop = \"keep\"\n\n[subscribers]\nfile = \"{dir}/subscribers.csv\"\n\
             capacity = 1024\nprefix_capacity = 1024\n\n[metrics]\nlisten = \"\"\n\n\
             [[interface]]\nname = \"acc\"\nrole = \"access\"\nxdp_mode = \"auto\"\n",
            dir = dir.path().display(),
            pins = pins.0.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_program(&r, config, &[], Path::new("/usr/bin/quid"), dir.path());
    assert!(r.has_xdp("acc"));
    let pid = daemon.pid();

    // Removal: prerm stops that quid (its final read) and removes the pins while
    // /usr/bin/quid is still there; with on_stop = "keep" nothing else would detach.
    let (ok, out) = run("dpkg", &["-r", "quid"]);
    assert!(ok, "dpkg -r quid:\n{out}");
    assert!(out.contains(&format!("stopped quid (pid {pid})")), "{out}");
    assert!(out.contains("quid's programs are detached"), "{out}");
    let last = daemon.exited();
    assert_eq!(last.state, quid::metering::snapshot::DaemonState::Stopped);
    // The link goes with the last pin and the last file descriptor.
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.has_xdp("acc") {
        assert!(
            Instant::now() < deadline,
            "XDP still attached after dpkg -r"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::fs::read_dir(&pins.0).map_or(true, |mut d| d.next().is_none()),
        "pins left in {}",
        pins.0.display()
    );
    assert!(!Path::new("/usr/bin/quid").exists());
    assert!(!Path::new("/usr/share/man/man1/quid.1.gz").exists());
    // Removed, not purged: the edited config stays until a purge.
    assert!(config.exists());
    let (ok, out) = run("dpkg", &["--purge", "quid"]);
    assert!(ok, "dpkg --purge quid:\n{out}");
    assert!(!Path::new("/etc/quid").exists());
    assert!(dpkg_status().is_empty() || dpkg_status().contains("not-installed"));
    drop(installed);
}
