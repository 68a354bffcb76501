//! Counting stays exact while the subscriber table changes and the daemon restarts, under
//! continuous traffic; and pinned maps of another layout are refused, untouched. Needs root.

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use aya::maps::{Array, Map, MapData};
use common::{Daemon, Injector, Netns, pin_dir, quid_cli, write_config_with};
use quid::{
    kernel::test_frames::Ethernet,
    metering::snapshot::{Count, Snapshot},
    metering::usage_query as usage,
    store::Store,
    subscribers::reload_result::ReloadResult,
};
use quid_common::Meta;

/// IP bytes of every frame the sender sends (UDP with 100 payload bytes).
const IP_LEN: u64 = 128;
const DST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// A bounded sender: round-robin over its addresses, about 2,000 frames/s, at most 60 s,
/// counting per address what it sent; an address can be paused.
struct Sender {
    counts: Arc<Mutex<BTreeMap<Ipv4Addr, u64>>>,
    paused: Arc<Mutex<Vec<Ipv4Addr>>>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Sender {
    fn start(ns: &Netns, ifname: &str, addrs: &[Ipv4Addr]) -> Sender {
        let inj = Injector::new(ns, ifname);
        let counts: Arc<Mutex<BTreeMap<Ipv4Addr, u64>>> =
            Arc::new(Mutex::new(addrs.iter().map(|&a| (a, 0)).collect()));
        let paused = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let frames: Vec<(Ipv4Addr, Vec<u8>)> = addrs
            .iter()
            .map(|&a| (a, Ethernet::default().ipv4_udp(a, DST, 100)))
            .collect();
        let (c, p, s) = (counts.clone(), paused.clone(), stop.clone());
        let handle = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                for (addr, frame) in &frames {
                    // Holding the pause list while sending makes pausing exact.
                    let paused = p.lock().unwrap();
                    if !paused.contains(addr) {
                        inj.send(frame, 1);
                        *c.lock().unwrap().get_mut(addr).unwrap() += 1;
                    }
                }
                thread::sleep(Duration::from_micros(2500));
            }
        });
        Sender {
            counts,
            paused,
            stop,
            handle: Some(handle),
        }
    }

    fn sent(&self, a: Ipv4Addr) -> u64 {
        self.counts.lock().unwrap()[&a]
    }

    fn pause(&self, a: Ipv4Addr) -> u64 {
        self.paused.lock().unwrap().push(a);
        // Let the frames already sent reach the program before the table changes.
        thread::sleep(Duration::from_millis(300));
        self.sent(a)
    }

    fn resume(&self, a: Ipv4Addr) {
        self.paused.lock().unwrap().retain(|&x| x != a);
    }

    fn finish(mut self) -> BTreeMap<Ipv4Addr, u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap();
        self.counts.lock().unwrap().clone()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn table(rows: &[&str]) -> String {
    let mut t = String::from("id,name,plan,prefixes\n");
    for r in rows {
        t += r;
        t += "\n";
    }
    t
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn totals_stay_exact_through_adds_removals_a_move_a_restart_a_crash_and_a_bad_reload() {
    let (r, s) = common::router_and_sender();
    let pins = pin_dir();
    let dir = tempfile::tempdir().unwrap();
    let ip = |last: u8| Ipv4Addr::new(100, 64, 7, last);
    let a_row = "a,A,home,100.64.7.1 100.64.7.5";
    let t1 = table(&[a_row, "b,B,home,100.64.7.2", "c,C,home,100.64.7.3"]);
    let config = write_config_with(
        dir.path(),
        &[("acc", "access", "auto")],
        &t1,
        &format!("pin_dir = \"{}\"\n", pins.0.display()),
    );
    let csv = dir.path().join("subscribers.csv");
    let state = dir.path().join("state");
    let mut daemon = Daemon::start(&r, &config);
    let sender = Sender::start(&s, "acc-p", &[ip(1), ip(2), ip(3), ip(4), ip(5)]);
    thread::sleep(Duration::from_millis(700));

    // Add e (100.64.7.4) and remove c, through the file watch.
    let (four_before, three_before) = (sender.pause(ip(4)), sender.pause(ip(3)));
    let t2 = table(&[a_row, "b,B,home,100.64.7.2", "e,E,biz,100.64.7.4"]);
    std::fs::write(&csv, &t2).unwrap();
    let r1 = common::wait_reload(&state, 0);
    assert!(r1.ok, "{r1:?}");
    assert_eq!(
        (r1.change.added.clone(), r1.change.removed.clone()),
        (vec!["e".to_string()], vec!["c".to_string()])
    );
    sender.resume(ip(4));
    sender.resume(ip(3));
    thread::sleep(Duration::from_millis(500));

    // Restart once while traffic flows: the pinned programs count while no daemon runs.
    daemon.stop();
    thread::sleep(Duration::from_millis(500));
    daemon = Daemon::start(&r, &config);
    thread::sleep(Duration::from_millis(500));

    // Move 100.64.7.5 from a to b, through `quid subscribers reload`.
    let five_before = sender.pause(ip(5));
    let t3 = table(&[
        "a,A,home,100.64.7.1",
        "b,B,home,100.64.7.2 100.64.7.5",
        "e,E,biz,100.64.7.4",
    ]);
    std::fs::write(&csv, &t3).unwrap();
    let (ok, out) = quid_cli(&config, &["subscribers", "reload"]);
    // The file watch may have seen the edit first: either way the change is in.
    assert!(ok || out.contains("reloaded"), "{out}");
    thread::sleep(Duration::from_millis(1200));
    sender.resume(ip(5));
    thread::sleep(Duration::from_millis(500));

    // A table with errors is refused whole; the running table goes on counting.
    let seq = ReloadResult::read(&state).unwrap().seq;
    std::fs::write(
        &csv,
        table(&[
            "a,A,home,100.64.7.1",
            "b,B,home,100.64.7.2 100.64.7.500",
            "e,E,,100.64.7.4",
            "x,X,home,100.64.7.1",
        ]),
    )
    .unwrap();
    let bad = common::wait_reload(&state, seq);
    assert!(!bad.ok);
    assert_eq!(bad.errors.len(), 3, "{bad:?}");
    assert!(
        bad.errors[0].contains("subscribers.csv:3: prefixes: `100.64.7.500`"),
        "{bad:?}"
    );
    assert!(
        bad.errors[1].contains("subscribers.csv:4: plan: must not be empty"),
        "{bad:?}"
    );
    assert!(
        bad.errors[2].contains(
            "subscribers.csv:5: prefixes: 100.64.7.1/32 is already owned by subscriber `a`"
        ),
        "{bad:?}"
    );
    thread::sleep(Duration::from_millis(500));

    // Second restart (with the good table back: quid refuses to start on a bad one), then the
    // traffic stops and the daemon reads everything.
    std::fs::write(&csv, &t3).unwrap();
    thread::sleep(Duration::from_millis(1500));
    // This time the daemon crashes: whatever it had not committed, the pinned counters hold.
    daemon.kill();
    thread::sleep(Duration::from_millis(300));
    daemon = Daemon::start(&r, &config);
    thread::sleep(Duration::from_millis(500));
    let sent = sender.finish();
    let total_sent: u64 = sent.values().sum();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline
        && Snapshot::read(&state)
            .map(|s| common::frames_seen(&s))
            .unwrap_or(0)
            < total_sent
    {
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(1200));
    let snap = daemon.stop();

    let count = |p: u64| Count {
        packets: p,
        bytes: p * IP_LEN,
    };
    let expected: BTreeMap<&str, (bool, Count)> = [
        ("a", (false, count(sent[&ip(1)] + five_before))),
        (
            "b",
            (false, count(sent[&ip(2)] + sent[&ip(5)] - five_before)),
        ),
        ("c", (true, count(three_before))),
        ("e", (false, count(sent[&ip(4)] - four_before))),
    ]
    .into_iter()
    .collect();
    let got: BTreeMap<&str, (bool, Count)> = snap
        .subscribers
        .iter()
        .map(|t| (t.id.as_str(), (t.removed, t.upload)))
        .collect();
    assert_eq!(got, expected, "sender counts: {sent:?}");
    // Frames from c's address after its removal and from 100.64.7.4 before e existed.
    let unknown: u64 = snap.interfaces.iter().map(|i| i.unknown.packets).sum();
    assert_eq!(unknown, sent[&ip(3)] - three_before + four_before);
    assert_eq!(common::frames_seen(&snap), total_sent);
    assert!(snap.interfaces.iter().all(|i| i.malformed.packets == 0));

    // The usage records, spanning both restarts, add up to the same totals.
    let store = Store::open(&state).unwrap();
    for (id, (_, want)) in &expected {
        let rows = store.usage(id, 0, u64::MAX / 2).unwrap();
        let up = quid::kernel::counters::direction(&usage::sum(&rows), quid_common::DIR_UPLOAD);
        assert_eq!(Count::from(up), *want, "usage records of {id}");
    }
    let (ok, out) = quid_cli(
        &config,
        &["usage", "a", "--from", "0", "--to", "4000000000", "--json"],
    );
    assert!(ok, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        [
            &doc["total"]["up_packets"],
            &doc["total"]["up_bytes"],
            &doc["total"]["down_packets"],
            &doc["total"]["down_bytes"]
        ],
        [
            &serde_json::json!(expected["a"].1.packets),
            &serde_json::json!(expected["a"].1.bytes),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ]
    );

    // Stopped with on_stop = "keep": still attached and pinned until `quid detach`.
    assert!(r.has_xdp("acc"));
    let (ok, out) = quid_cli(&config, &["detach"]);
    assert!(ok, "{out}");
    assert!(!r.has_xdp("acc"), "quid detach left the program attached");
    assert!(!pins.0.exists());
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn pinned_maps_of_another_layout_are_refused_and_left_intact() {
    let (r, _s) = common::router_and_sender();
    let pins = pin_dir();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with(
        dir.path(),
        &[("acc", "access", "auto")],
        &table(&["a,A,home,100.64.7.1"]),
        &format!("pin_dir = \"{}\"\n", pins.0.display()),
    );
    Daemon::start(&r, &config).stop();
    // Pretend a future quid pinned these maps.
    let meta_path = pins.0.join("META");
    let mut map = Map::Array(MapData::from_pin(&meta_path).unwrap());
    let mut meta: Array<&mut MapData, Meta> = Array::try_from(&mut map).unwrap();
    let mut m = meta.get(&0, 0).unwrap();
    m.layout_version = 99;
    meta.set(0, m, 0).unwrap();
    let before: Vec<_> = std::fs::read_dir(&pins.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", r.name))
        .args([env!("CARGO_BIN_EXE_quid"), "run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("have layout version 99, this quid understands version"),
        "{err}"
    );
    assert!(err.contains("left untouched"), "{err}");
    let after: Vec<_> = std::fs::read_dir(&pins.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
    assert_eq!(meta.get(&0, 0).unwrap().layout_version, 99);
    assert!(r.has_xdp("acc"), "the old program must still be attached");
}
