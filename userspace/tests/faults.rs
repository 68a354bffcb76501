//! Faults, with real traffic: a full disk under the store refuses reports with a retryable
//! status and loses no count, and the books catch up when space returns; an interface that is
//! deleted and created again is re-attached and counting carries on. Needs root.

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use std::{
    io::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{Daemon, Injector, http_here, metric, report, sh, veth, write_config_sections};
use quid::{kernel::test_frames::Ethernet, metering::snapshot::Snapshot, store::Store};

const TABLE: &str = "id,name,plan,prefixes\nalice,Alice,home,100.64.1.10\n";

fn frame() -> Vec<u8> {
    Ethernet::default().ipv4_udp(
        Ipv4Addr::new(100, 64, 1, 10),
        Ipv4Addr::new(203, 0, 113, 1),
        72,
    )
}

/// A small tmpfs, unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            at.to_str().unwrap(),
        ]);
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system holding `dir` with one file until it is full; returns that file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    // Bounded by the tmpfs size; small writes at the end take the last pages.
    for size in [64 * 1024, 4096, 512, 1] {
        while f.write_all(&chunk[..size]).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

fn alice_up(s: &Snapshot) -> u64 {
    s.subscribers[0].upload.packets
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_full_disk_refuses_reports_retryably_and_loses_no_count() {
    let (r, s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let _disk = Tmpfs::mount(&dir.path().join("state"), "4m");
    let key = common::write_nodes(dir.path(), 3);
    // The report below covers time before this daemon started: an earlier run metered it.
    common::metered_since(
        &dir.path().join("state"),
        &["alice"],
        &["pi"],
        common::now() - 4 * 3600,
    );
    let config = write_config_sections(
        dir.path(),
        &[("acc", "access", "native")],
        TABLE,
        common::LISTENERS,
    );
    let daemon = Daemon::start(&r, &config);
    let inj = Injector::new(&s, "acc-p");
    inj.send(&frame(), 10);
    daemon.wait_for("10 packets", |s| alice_up(s) == 10);

    let filler = fill(&dir.path().join("state"));
    inj.send(&frame(), 20);
    // The kernel keeps counting; the commits fail and say so.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, text) = r.run(|| http_here(9464, "GET", "/metrics", b""));
        if text.contains("quid_store_commit_failures_total ")
            && metric(&text, "quid_store_commit_failures_total") >= 2
            && metric(
                &text,
                "quid_interface_packets_total{interface=\"acc\",bucket=\"attributed\"}",
            ) == 30
        {
            break;
        }
        assert!(Instant::now() < deadline, "{text}\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        daemon.log().contains("the kernel keeps them; will retry"),
        "{}",
        daemon.log()
    );
    // A table change waits: kernel and books must change together.
    std::fs::write(
        dir.path().join("subscribers.csv"),
        format!("{TABLE}bob,Bob,home,100.64.1.11\n"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon
        .log()
        .contains("postponed, the running table is unchanged")
    {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // A report is refused with a retryable status, and not recorded.
    let body = report(&key, "pi", 1, 7200, |_| {});
    let (code, answer) = {
        let body = body.clone();
        r.run(move || http_here(9465, "POST", "/v1/reports", &body))
    };
    assert_eq!(code, 503, "{answer}");
    assert!(answer.contains("store_unavailable"), "{answer}");
    let state = dir.path().join("state");
    assert_eq!(Store::open(&state).unwrap().report_count().unwrap(), 0);

    // Space returns: the books catch up with every packet, the retried report is accepted.
    std::fs::remove_file(filler).unwrap();
    daemon.wait_for("30 packets and bob after the disk had room", |s| {
        alice_up(s) == 30 && s.subscribers.iter().any(|t| t.id == "bob")
    });
    let (code, answer) = r.run(move || http_here(9465, "POST", "/v1/reports", &body));
    assert_eq!(code, 200, "{answer}");
    let snap = daemon.stop();
    assert_eq!(
        (
            snap.subscribers[0].upload.packets,
            snap.subscribers[0].upload.bytes
        ),
        (30, 3000)
    );
    let store = Store::open(&state).unwrap();
    let usage = store.usage("alice", 0, u64::MAX / 2).unwrap();
    let packets: u64 = usage
        .iter()
        .map(|u| quid::kernel::counters::direction(&u.counters, quid_common::DIR_UPLOAD).packets)
        .sum();
    assert_eq!(packets, 30, "the usage records hold every packet");
    assert_eq!(store.report_count().unwrap(), 1);
    quid::ledger::chain::verify(&store.entries(None).unwrap()).unwrap();
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn an_interface_deleted_and_created_again_is_reattached() {
    let (r, s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_sections(
        dir.path(),
        &[("acc", "access", "native")],
        TABLE,
        "\n[metrics]\nlisten = \"127.0.0.1:9464\"\n",
    );
    let daemon = Daemon::start(&r, &config);
    Injector::new(&s, "acc-p").send(&frame(), 5);
    daemon.wait_for("5 packets", |s| alice_up(s) == 5);
    let old = r.ifindex("acc");

    // Deleting one end of a veth deletes both.
    sh(&["ip", "-n", &r.name, "link", "del", "acc"]);
    daemon.wait_for_log("acc disappeared");
    veth(&r, "acc", &s, "acc-p");
    daemon.wait_for_log("acc is back");
    assert_ne!(r.ifindex("acc"), old, "a new interface, not the old one");
    assert!(r.has_xdp("acc"), "not attached to the new interface");
    Injector::new(&s, "acc-p").send(&frame(), 7);
    daemon.wait_for("12 packets", |s| alice_up(s) == 12);
    std::thread::sleep(Duration::from_millis(1200));
    let (_, text) = r.run(|| http_here(9464, "GET", "/metrics", b""));
    assert_eq!(metric(&text, "quid_xdp_reattachments_total"), 1);
    assert!(
        text.contains("quid_xdp_attached{interface=\"acc\",mode=\"native\",role=\"access\"} 1"),
        "{text}"
    );
    let snap = daemon.stop();
    assert_eq!(
        (
            snap.subscribers[0].upload.packets,
            snap.subscribers[0].upload.bytes
        ),
        (12, 1200)
    );
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_damaged_store_stops_the_start_and_is_left_as_it_is() {
    let (r, s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_sections(dir.path(), &[("acc", "access", "native")], TABLE, "");
    let daemon = Daemon::start(&r, &config);
    Injector::new(&s, "acc-p").send(&frame(), 3);
    daemon.wait_for("3 packets", |s| alice_up(s) == 3);
    daemon.stop();
    // Damage one page in the middle of the database, as a failing disk would.
    let db = dir.path().join("state/quid.db");
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() >= 4 * 4096, "{} bytes", bytes.len());
    bytes[2 * 4096..3 * 4096].fill(0xa5);
    std::fs::write(&db, &bytes).unwrap();
    let (ok, err) = common::quid_run_refused(&r, &config, &[]);
    assert!(!ok, "quid started on a damaged store");
    assert!(
        err.contains("is damaged") && err.contains("will not rebuild it silently"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes,
        "the damaged store was changed"
    );
    assert!(!r.has_xdp("acc"), "attached despite the damaged store");
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn an_interface_recreated_while_quid_was_stopped_is_attached_afresh_at_start() {
    let (r, s) = common::router_and_sender();
    let pins = common::pin_dir();
    let dir = tempfile::tempdir().unwrap();
    // on_stop = keep: the pinned link outlives the daemon, and goes defunct with the interface.
    let config = common::write_config_with(
        dir.path(),
        &[("acc", "access", "native")],
        TABLE,
        &format!("pin_dir = \"{}\"\non_stop = \"keep\"\n", pins.0.display()),
    );
    let daemon = Daemon::start(&r, &config);
    Injector::new(&s, "acc-p").send(&frame(), 2);
    daemon.wait_for("2 packets", |s| alice_up(s) == 2);
    daemon.stop();
    sh(&["ip", "-n", &r.name, "link", "del", "acc"]);
    veth(&r, "acc", &s, "acc-p");
    let daemon = Daemon::start(&r, &config);
    assert!(
        daemon
            .log()
            .contains("belongs to an interface that is gone"),
        "{}",
        daemon.log()
    );
    assert!(r.has_xdp("acc"), "not attached to the new interface");
    Injector::new(&s, "acc-p").send(&frame(), 3);
    daemon.wait_for("5 packets", |s| alice_up(s) == 5);
    let snap = daemon.stop();
    assert_eq!(snap.subscribers[0].upload.bytes, 500);
}

/// What quid left pinned under `dir` (nothing, when the directory is gone or empty).
fn pins_left(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_start_that_fails_on_the_second_interface_leaves_nothing_attached_or_pinned() {
    let (r, _s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    // `acc` exists and takes XDP; `gone0` does not exist in the namespace, so the second attach
    // fails after the first has attached and pinned (`quid run` does not run `quid check`).
    let config = write_config_sections(
        dir.path(),
        &[("acc", "access", "native"), ("gone0", "core", "native")],
        TABLE,
        "",
    );
    let pins = common::PinDir(PathBuf::from(common::config_pin_dir(dir.path())));
    let (ok, err) = common::quid_run_refused(&r, &config, &[]);
    assert!(!ok, "quid started without gone0");
    assert!(
        err.contains("gone0") && err.contains("nothing is left attached or pinned"),
        "{err}"
    );
    let links = r.exec(&["ip", "-j", "link", "show"]);
    assert!(
        !links.contains("xdp"),
        "an XDP program is still attached: {links}"
    );
    assert_eq!(pins_left(&pins.0), Vec::<String>::new(), "pins left behind");
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_failed_restart_keeps_what_the_earlier_quid_left_counting() {
    let (r, s) = common::router_and_sender();
    let pins = common::pin_dir();
    let dir = tempfile::tempdir().unwrap();
    let daemon_lines = format!("pin_dir = \"{}\"\non_stop = \"keep\"\n", pins.0.display());
    let config = common::write_config_with(
        dir.path(),
        &[("acc", "access", "native")],
        TABLE,
        &daemon_lines,
    );
    Daemon::start(&r, &config).stop();
    let before = pins_left(&pins.0);
    assert!(before.contains(&"link_acc".to_owned()), "{before:?}");
    // The restart adopts the maps and acc's link, then fails on gone0: what the earlier quid
    // left stays as it was, still counting; nothing of the failed start stays.
    common::write_config_with(
        dir.path(),
        &[("acc", "access", "native"), ("gone0", "core", "native")],
        TABLE,
        &daemon_lines,
    );
    let (ok, err) = common::quid_run_refused(&r, &config, &[]);
    assert!(!ok, "quid started without gone0");
    assert!(
        err.contains("gone0") && err.contains("kept as they were"),
        "{err}"
    );
    assert_eq!(pins_left(&pins.0), before);
    assert!(r.has_xdp("acc"), "the earlier quid's link was detached");
    // The kept programs still count: the next start adopts what they counted meanwhile.
    Injector::new(&s, "acc-p").send(&frame(), 4);
    common::write_config_with(
        dir.path(),
        &[("acc", "access", "native")],
        TABLE,
        &daemon_lines,
    );
    let daemon = Daemon::start(&r, &config);
    daemon.wait_for("4 packets counted while no daemon ran", |s| {
        alice_up(s) == 4
    });
    daemon.stop();
    let (ok, out) = common::quid_cli(&config, &["detach"]);
    assert!(ok, "{out}");
    assert!(!r.has_xdp("acc"));
}
