//! RADIUS accounting out: a real FreeRADIUS server (its `detail` module writing every
//! Accounting-Request it accepts to a file) in the router's namespace receives quid's
//! Accounting-Start and Interim-Updates for two subscribers whose frames cross a veth into
//! quid's XDP program; the octets in the detail file are exactly what the daemon counted. A
//! restart goes on with the same Acct-Session-Id and cumulative octets; with a wrong secret
//! nothing is accepted and the unanswered requests are counted. Needs root.

#![cfg(test)]

mod common;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    Daemon, Injector, Netns, http_here, metric, router_and_sender, veth, write_config_sections,
    write_secret,
};
use quid::{kernel::test_frames::Ethernet, metering::snapshot::Snapshot};

const SECRET: &str = "b1lling-secret-for-the-test";
const TABLE: &str = "id,name,plan,prefixes
alice,Alice,home,100.64.7.2
bob,Bob,home,100.64.7.3
";
/// IP bytes of each test frame (UDP, 72 bytes of payload).
const IP_LEN: u64 = 100;
const ALICE: Ipv4Addr = Ipv4Addr::new(100, 64, 7, 2);
const BOB: Ipv4Addr = Ipv4Addr::new(100, 64, 7, 3);
/// FreeRADIUS's accounting port in the router's namespace.
const PORT: u16 = 18130;

/// FreeRADIUS in a namespace, with its config and detail file in a temp dir; killed on drop.
struct FreeRadius {
    child: Child,
    dir: tempfile::TempDir,
}

impl FreeRadius {
    /// Writes a minimal config (one client, 127.0.0.1, with `SECRET`; accounting to the
    /// `detail` module) and starts `freeradius -X` in `ns`, waiting until it listens.
    fn start(ns: &Netns) -> FreeRadius {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("dictionary"), "").unwrap();
        std::fs::write(
            dir.path().join("radiusd.conf"),
            format!(
                "prefix = /usr\nexec_prefix = /usr\nsysconfdir = /etc\nlocalstatedir = /var\n\
                 sbindir = /usr/sbin\nlogdir = {d}\nraddbdir = {d}\nradacctdir = {d}\n\
                 name = freeradius\nconfdir = {d}\nmodconfdir = {d}/mods-config\nrun_dir = {d}\n\
                 db_dir = {d}\nlibdir = /usr/lib/freeradius\npidfile = {d}/radiusd.pid\n\
                 max_request_time = 30\ncleanup_delay = 5\nmax_requests = 1024\n\
                 hostname_lookups = no\nlog {{\n destination = stdout\n}}\n\
                 security {{\n allow_core_dumps = no\n}}\n\
                 thread pool {{\n start_servers = 1\n max_servers = 2\n min_spare_servers = 1\n max_spare_servers = 2\n}}\n\
                 client quid {{\n ipaddr = 127.0.0.1\n secret = {SECRET}\n}}\n\
                 modules {{\n detail {{\n  filename = {d}/detail\n  permissions = 0600\n  header = \"%t\"\n }}\n}}\n\
                 server default {{\n listen {{\n  type = acct\n  ipaddr = 127.0.0.1\n  port = {PORT}\n }}\n\
                 accounting {{\n  detail\n }}\n}}\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("radiusd.log")).unwrap();
        let child = common::dies_with_test(&mut Command::new("ip"))
            .args(["netns", "exec", &ns.name, "freeradius", "-X", "-d"])
            .arg(dir.path())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("freeradius (Debian package freeradius; scripts/bootstrap.sh installs it)");
        let f = FreeRadius { child, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !f.log().contains("Ready to process requests") {
            assert!(
                Instant::now() < deadline,
                "freeradius did not start:\n{}",
                f.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        f
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("radiusd.log")).unwrap_or_default()
    }

    /// Every request the detail file holds, in order: attribute name to value (quotes off).
    fn records(&self) -> Vec<BTreeMap<String, String>> {
        let text = std::fs::read_to_string(self.dir.path().join("detail")).unwrap_or_default();
        text.split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .map(|block| {
                block
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.trim().split_once(" = "))
                    .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                    .collect()
            })
            .collect()
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The records of `user` with Acct-Status-Type `status`.
fn of(
    records: &[BTreeMap<String, String>],
    user: &str,
    status: &str,
) -> Vec<BTreeMap<String, String>> {
    records
        .iter()
        .filter(|r| r.get("User-Name").map(String::as_str) == Some(user))
        .filter(|r| r.get("Acct-Status-Type").map(String::as_str) == Some(status))
        .cloned()
        .collect()
}

fn field(r: &BTreeMap<String, String>, name: &str) -> u64 {
    r.get(name)
        .unwrap_or_else(|| panic!("no {name} in {r:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {r:?}"))
}

fn upload(s: &Snapshot, id: &str) -> u64 {
    s.subscribers
        .iter()
        .find(|t| t.id == id)
        .map_or(0, |t| t.upload.bytes)
}

fn download(s: &Snapshot, id: &str) -> u64 {
    s.subscribers
        .iter()
        .find(|t| t.id == id)
        .map_or(0, |t| t.download.bytes)
}

/// Waits (20 s at most) until `ok` holds for the detail file's records.
fn wait_detail(
    r: &FreeRadius,
    daemon: &Daemon,
    what: &str,
    ok: impl Fn(&[BTreeMap<String, String>]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(&r.records()) {
        assert!(
            Instant::now() < deadline,
            "{what}: detail file:\n{:#?}\nquid:\n{}\nfreeradius:\n{}",
            r.records(),
            daemon.log(),
            r.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The accounting-out metric for `outcome`.
fn outcome(ns: &Netns, outcome: &str) -> u64 {
    let text = ns.run(|| http_here(9464, "GET", "/metrics", b"").1);
    metric(
        &text,
        &format!("quid_radius_accounting_out_total{{outcome=\"{outcome}\"}}"),
    )
}

/// Waits (20 s at most) until the accounting-out metric for `name` satisfies `ok`.
fn wait_outcome(ns: &Netns, daemon: &Daemon, name: &str, ok: impl Fn(u64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(outcome(ns, name)) {
        assert!(
            Instant::now() < deadline,
            "{name} is {}:\n{}\n{}",
            outcome(ns, name),
            ns.run(|| http_here(9464, "GET", "/metrics", b"").1)
                .lines()
                .filter(|l| l.starts_with("quid_radius_accounting_out"))
                .collect::<Vec<_>>()
                .join("\n"),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the newest Interim-Update of `user` carries exactly `up` and `down` octets (with
/// Gigawords 0) under `session`.
fn last_interim_is(
    records: &[BTreeMap<String, String>],
    user: &str,
    session: &str,
    up: u64,
    down: u64,
) -> bool {
    of(records, user, "Interim-Update").last().is_some_and(|r| {
        r.get("Acct-Session-Id").map(String::as_str) == Some(session)
            && field(r, "Acct-Input-Octets") == up
            && field(r, "Acct-Output-Octets") == down
            && field(r, "Acct-Input-Gigawords") == 0
            && field(r, "Acct-Output-Gigawords") == 0
    })
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn billing_server_receives_quids_exact_octets_per_subscriber_session() {
    let (rtr, snd) = router_and_sender();
    // Uploads arrive on the access side, downloads on the core side.
    veth(&rtr, "core", &snd, "core-p");
    let radius = FreeRadius::start(&rtr);
    let dir = tempfile::tempdir().unwrap();
    let secret: PathBuf = dir.path().join("billing.secret");
    write_secret(&secret, SECRET);
    let config = write_config_sections(
        dir.path(),
        &[("acc", "access", "generic"), ("core", "core", "generic")],
        TABLE,
        &format!(
            "\n[metrics]\nlisten = \"127.0.0.1:9464\"\n\
             \n[accounting_out]\nserver = \"127.0.0.1:{PORT}\"\nsecret_file = \"billing.secret\"\n\
             nas_identifier = \"edge-test\"\ninterval_secs = 1\ntimeout_secs = 1\nattempts = 2\n"
        ),
    );
    let daemon = Daemon::start(&rtr, &config);
    // Each subscriber's session starts before any frame, with nothing counted.
    wait_detail(&radius, &daemon, "Accounting-Start of both", |r| {
        ["alice", "bob"]
            .iter()
            .all(|u| !of(r, u, "Start").is_empty())
    });
    let records = radius.records();
    let start = |u: &str| of(&records, u, "Start")[0].clone();
    for u in ["alice", "bob"] {
        let s = start(u);
        assert_eq!(field(&s, "Acct-Input-Octets"), 0, "{s:?}");
        assert_eq!(
            s.get("NAS-Identifier").map(String::as_str),
            Some("edge-test")
        );
    }
    assert_eq!(
        start("alice").get("Framed-IP-Address").map(String::as_str),
        Some("100.64.7.2")
    );
    let alice_session = start("alice")["Acct-Session-Id"].clone();
    let bob_session = start("bob")["Acct-Session-Id"].clone();
    assert_ne!(alice_session, bob_session);

    let inj = Injector::new(&snd, "acc-p");
    let frame = |src| Ethernet::default().ipv4_udp(src, Ipv4Addr::new(192, 0, 2, 50), 72);
    inj.send(&frame(ALICE), 7);
    inj.send(&frame(BOB), 3);
    // And from the Internet to them: 5 frames to alice, 4 to bob.
    let core = Injector::new(&snd, "core-p");
    let to = |dst| Ethernet::default().ipv4_udp(Ipv4Addr::new(192, 0, 2, 50), dst, 72);
    core.send(&to(ALICE), 5);
    core.send(&to(BOB), 4);
    let snap = daemon.wait_for("alice 7 up 5 down, bob 3 up 4 down counted", |s| {
        upload(s, "alice") == 7 * IP_LEN
            && upload(s, "bob") == 3 * IP_LEN
            && download(s, "alice") == 5 * IP_LEN
            && download(s, "bob") == 4 * IP_LEN
    });
    let (alice_up, bob_up) = (upload(&snap, "alice"), upload(&snap, "bob"));
    let (alice_down, bob_down) = (download(&snap, "alice"), download(&snap, "bob"));
    // The billing server's newest Interim-Update of each equals what the daemon counted:
    // input is what the subscriber sent (upload), output what it received.
    wait_detail(
        &radius,
        &daemon,
        "Interim-Updates with the daemon's counts",
        |r| {
            last_interim_is(r, "alice", &alice_session, alice_up, alice_down)
                && last_interim_is(r, "bob", &bob_session, bob_up, bob_down)
        },
    );
    // The metrics are rendered once per interval: they catch up.
    wait_outcome(&rtr, &daemon, "accepted", |n| n >= 4);
    assert_eq!(outcome(&rtr, "bad_response"), 0);
    let before = daemon.stop();
    assert_eq!(upload(&before, "alice"), alice_up);

    // Restarted with a wrong secret: FreeRADIUS drops every request (its Request
    // Authenticator does not verify), so nothing is accepted; quid retransmits, gives up, and
    // counts both.
    write_secret(&secret, "not-the-billing-secret");
    let accepted_records = radius.records().len();
    let daemon = Daemon::start(&rtr, &config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while outcome(&rtr, "gave_up") == 0 {
        assert!(
            Instant::now() < deadline,
            "no request given up:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(outcome(&rtr, "accepted"), 0);
    assert!(outcome(&rtr, "retransmitted") >= 1);
    assert_eq!(
        radius.records().len(),
        accepted_records,
        "a request with the wrong secret was recorded"
    );
    assert!(
        radius.log().contains("Shared secret is incorrect"),
        "{}",
        radius.log()
    );
    daemon.stop();

    // The right secret again: the same sessions go on (no new Start), and alice's next frames
    // add to her cumulative octets.
    write_secret(&secret, SECRET);
    let daemon = Daemon::start(&rtr, &config);
    inj.send(&frame(ALICE), 2);
    let snap = daemon.wait_for("alice's 2 more frames counted", |s| {
        upload(s, "alice") == 9 * IP_LEN
    });
    let alice_up = upload(&snap, "alice");
    wait_detail(&radius, &daemon, "Interim-Updates after the restart", |r| {
        last_interim_is(r, "alice", &alice_session, alice_up, alice_down)
            && last_interim_is(r, "bob", &bob_session, bob_up, bob_down)
    });
    let records = radius.records();
    assert_eq!(of(&records, "alice", "Start").len(), 1);
    assert_eq!(of(&records, "bob", "Start").len(), 1);

    // bob leaves the table: his session stops with his final octets.
    std::fs::write(
        dir.path().join("subscribers.csv"),
        "id,name,plan,prefixes\nalice,Alice,home,100.64.7.2\n",
    )
    .unwrap();
    wait_detail(&radius, &daemon, "bob's Accounting-Stop", |r| {
        of(r, "bob", "Stop").last().is_some_and(|s| {
            s.get("Acct-Session-Id") == Some(&bob_session)
                && field(s, "Acct-Input-Octets") == bob_up
                && field(s, "Acct-Output-Octets") == bob_down
        })
    });
    daemon.stop();
}
