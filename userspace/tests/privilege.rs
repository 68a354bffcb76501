//! quid as an unprivileged user (nobody) with only the capabilities it states it needs, run by
//! `setpriv`: it counts exactly; without any one of them it names the missing one and touches
//! nothing; without bpffs it mounts one, or says what to do when it may not. Needs root.

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use std::{net::Ipv4Addr, path::Path};

use common::{Daemon, Injector, config_pin_dir, sh, write_config};
use quid::kernel::test_frames::Ethernet;

const NOBODY: u32 = 65534;
const TABLE: &str = "id,name,plan,prefixes\nalice,Alice,home,100.64.1.10\n";
const STATED: [&str; 3] = ["bpf", "net_admin", "perfmon"];

/// `setpriv` switching to nobody with exactly `caps` (inheritable, ambient and bounding).
fn setpriv(caps: &[&str]) -> Vec<String> {
    let set = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "setpriv".into(),
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".into(),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        format!("--bounding-set={set}"),
    ]
}

/// Hands the test's directory and pin directory to nobody, as the package's unit does with
/// StateDirectory= and its ExecStartPre.
fn give_to_nobody(dir: &Path) {
    sh(&[
        "chown",
        "-R",
        &format!("{NOBODY}:{NOBODY}"),
        dir.to_str().unwrap(),
    ]);
    let pins = config_pin_dir(dir);
    sh(&[
        "install",
        "-d",
        "-o",
        &NOBODY.to_string(),
        "-m",
        "0750",
        &pins,
    ]);
}

/// One capability set line of /proc/PID/status, as a number.
fn caps_of(pid: u32, line: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn nobody_with_only_bpf_net_admin_and_perfmon_counts_exactly() {
    let (r, s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[("acc", "access", "native")], TABLE);
    give_to_nobody(dir.path());
    let _pins = common::PinDir(config_pin_dir(dir.path()).into());
    let daemon = Daemon::start_with(&r, &config, &setpriv(&STATED));

    let pid = daemon.pid();
    assert_eq!(uid_of(pid), NOBODY, "the daemon runs as nobody");
    // CAP_NET_ADMIN 12, CAP_PERFMON 38, CAP_BPF 39, and nothing else, in every set.
    let stated = 1u64 << 12 | 1 << 38 | 1 << 39;
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(caps_of(pid, set), stated, "{set} of the daemon");
    }

    let frame = Ethernet::default().ipv4_udp(
        Ipv4Addr::new(100, 64, 1, 10),
        Ipv4Addr::new(203, 0, 113, 1),
        72,
    );
    Injector::new(&s, "acc-p").send(&frame, 7);
    daemon.wait_for("7 packets", |s| s.subscribers[0].upload.packets >= 7);
    let snap = daemon.stop();
    let alice = &snap.subscribers[0];
    assert_eq!((alice.upload.packets, alice.upload.bytes), (7, 7 * 100));
    // The store belongs to the daemon's user, so no root-owned file blocks the next start.
    let meta = std::fs::metadata(dir.path().join("state/quid.db")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), NOBODY);
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn each_missing_capability_is_named_and_nothing_is_touched() {
    let (r, _s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[("acc", "access", "native")], TABLE);
    give_to_nobody(dir.path());
    let pins = common::PinDir(config_pin_dir(dir.path()).into());
    for (gone, name) in [
        ("bpf", "CAP_BPF"),
        ("net_admin", "CAP_NET_ADMIN"),
        ("perfmon", "CAP_PERFMON"),
    ] {
        let rest: Vec<&str> = STATED.into_iter().filter(|c| *c != gone).collect();
        let (ok, err) = common::quid_run_refused(&r, &config, &setpriv(&rest));
        assert!(!ok, "quid started without {name}");
        assert!(
            err.contains(&format!("{name}: ")),
            "{name} not named:\n{err}"
        );
        assert!(
            err.contains(&format!("--ambient-caps=+{gone}")),
            "no way to grant {name}:\n{err}"
        );
        assert!(!r.has_xdp("acc"), "attached without {name}");
        let pinned = std::fs::read_dir(&pins.0).unwrap().count();
        assert_eq!(pinned, 0, "pinned something without {name}");
    }
}

/// `wrapper` run in a private mount namespace where /sys/fs/bpf is unmounted first.
fn without_bpffs(wrapper: &[String]) -> Vec<String> {
    let mut args = vec![
        "unshare".to_owned(),
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
        "sh".into(),
        "-c".into(),
        "while mountpoint -q /sys/fs/bpf; do umount /sys/fs/bpf || exit 9; done; exec \"$@\""
            .into(),
        "sh".into(),
    ];
    args.extend(wrapper.iter().cloned());
    args
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn missing_bpffs_is_mounted_as_root_and_named_without_cap_sys_admin() {
    let (r, _s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[("acc", "access", "native")], TABLE);

    // As root: quid mounts bpffs (in this private mount namespace) and runs.
    let daemon = Daemon::start_with(&r, &config, &without_bpffs(&[]));
    assert!(
        daemon.log().contains("mounted bpffs at /sys/fs/bpf"),
        "{}",
        daemon.log()
    );
    daemon.stop();

    // As nobody with the stated capabilities, which do not include mounting.
    give_to_nobody(dir.path());
    let _pins = common::PinDir(config_pin_dir(dir.path()).into());
    let (ok, err) = common::quid_run_refused(&r, &config, &without_bpffs(&setpriv(&STATED)));
    assert!(!ok, "quid ran without bpffs");
    assert!(
        err.contains("bpffs is not mounted at /sys/fs/bpf")
            && err.contains("CAP_SYS_ADMIN")
            && err.contains("mount -t bpf bpf /sys/fs/bpf"),
        "{err}"
    );
    assert!(!r.has_xdp("acc"));
}
