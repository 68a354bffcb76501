//! Several routers, one set of books, against a real PostgreSQL in a namespace of its own:
//! two router daemons meter real frames, ship their books over their own links, and the
//! shared store holds exactly what the senders sent, through a database outage, a router
//! killed with -9, and a router cut off from the database and healed; a report posted to both
//! routers is held once.

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant},
};

use common::{Daemon, Injector, Netns, postgres::Postgres, veth};
use quid::kernel::test_frames::Ethernet;

const TABLE: &str =
    "id,name,plan,prefixes\nalice,Alice,home,100.64.1.10\nbob,Bob,home,100.64.1.11\n";

/// IP bytes of each frame the senders inject.
const FRAME_BYTES: u64 = 100;

/// The database's port in its namespace.
const PORT: u16 = 5432;

/// What the senders sent: (subscriber, router) → (upload bytes, packets).
type Sent = BTreeMap<(String, String), (u64, u64)>;

/// One router: its namespace, the sender wired to its access interface, and its config.
struct Router {
    id: &'static str,
    ns: Netns,
    sender: Netns,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Router {
    /// A router `id` whose link to `db` is 100.64.`net`.2/30 (the database is .1).
    fn new(id: &'static str, db: &Netns, net: u8, pg: &Postgres) -> Router {
        Router::with(id, db, net, pg, "")
    }

    /// Like [`Router::new`], with `extra` lines in its `[store]` section.
    fn with(id: &'static str, db: &Netns, net: u8, pg: &Postgres, extra: &str) -> Router {
        Router::configured(id, db, net, pg, common::LISTENERS, extra)
    }

    /// Like [`Router::with`], with `sections` (listeners, limits) instead of the usual ones.
    fn configured(
        id: &'static str,
        db: &Netns,
        net: u8,
        pg: &Postgres,
        sections: &str,
        extra: &str,
    ) -> Router {
        let (ns, sender) = common::router_and_sender();
        veth(&ns, "db0", db, &format!("db{net}"));
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("100.64.{net}.2/30"),
            "dev",
            "db0",
        ]);
        db.exec(&[
            "ip",
            "addr",
            "add",
            &format!("100.64.{net}.1/30"),
            "dev",
            &format!("db{net}"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let mut store = format!(
            "\n[store]\nurl = \"postgresql://quid@100.64.{net}.1:{PORT}/quid\"\nrouter_id = \"{id}\"\npassword_file = \"{}\"\n",
            pg.password_file().display()
        );
        store += extra;
        let config = common::write_config_sections(
            dir.path(),
            &[("acc", "access", "auto")],
            TABLE,
            &(sections.to_owned() + &store),
        );
        common::write_nodes(dir.path(), 7);
        Router {
            id,
            ns,
            sender,
            dir,
            config,
        }
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    /// Sends `n` upload frames of `who` through this router, and notes them in `sent`.
    fn send(&self, who: &str, n: u64, sent: &mut Sent) {
        let src = match who {
            "alice" => Ipv4Addr::new(100, 64, 1, 10),
            "bob" => Ipv4Addr::new(100, 64, 1, 11),
            _ => Ipv4Addr::new(100, 64, 1, 12),
        };
        Injector::new(&self.sender, "acc-p").send(
            &Ethernet::default().ipv4_udp(src, Ipv4Addr::new(203, 0, 113, 1), 72),
            usize::try_from(n).unwrap(),
        );
        let e = sent
            .entry((who.to_owned(), self.id.to_owned()))
            .or_default();
        e.0 += n * FRAME_BYTES;
        e.1 += n;
    }

    /// This router's exposition.
    fn metrics(&self) -> String {
        self.ns
            .run(|| common::http_here(9464, "GET", "/metrics", b"").1)
    }

    /// A shipping metric of this router.
    fn cluster_metric(&self, name: &str) -> u64 {
        let series = format!("{name}{{router=\"{}\"}}", self.id);
        common::metric(&self.metrics(), &series)
    }

    /// `quid cluster usage alice --json` over all time, asked of this router.
    fn alice_in_the_shared_store(&self) -> String {
        let all_time = ["--from", "0", "--to", "9999999999"];
        let (ok, out) =
            self.cli(&[&["cluster", "usage", "alice", "--json"][..], &all_time].concat());
        assert!(ok, "{out}");
        out
    }

    /// `quid ARGS --config` run inside the router's namespace (where the database is
    /// reachable): success, and stdout (stderr too on failure).
    fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns.name))
            .arg(env!("CARGO_BIN_EXE_quid"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            text += &String::from_utf8_lossy(&out.stderr);
        }
        (out.status.success(), text)
    }
}

/// The shared store's upload totals per (subscriber, router).
fn shared_totals(pg: &Postgres) -> Sent {
    pg.psql(
        "SELECT subscriber, router, sum(up_bytes), sum(up_packets) FROM (
           SELECT subscriber, router, up_bytes, up_packets FROM quid_usage_hour
           UNION ALL SELECT subscriber, router, up_bytes, up_packets FROM quid_usage_delta) u
         GROUP BY subscriber, router",
    )
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        (
            (f[0].to_owned(), f[1].to_owned()),
            (f[2].parse().unwrap(), f[3].parse().unwrap()),
        )
    })
    .collect()
}

/// Waits (at most `secs`) until the shared store holds exactly `sent`.
fn wait_for_books(pg: &Postgres, sent: &Sent, secs: u64, routers: &[&Daemon]) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = shared_totals(pg);
        if got == *sent {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the shared store holds {got:?}, the senders sent {sent:?}\n{}",
            routers
                .iter()
                .map(|d| d.log())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits (at most 20 s) until `ok` holds of router `r`'s metrics.
fn wait_for_metric(r: &Router, what: &str, ok: impl Fn(&Router) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(r) {
        assert!(
            Instant::now() < deadline,
            "{} never showed {what}:\n{}",
            r.id,
            r.metrics()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn two_routers_ship_exactly_what_they_metered_through_outages_kills_and_cut_links() {
    // The database's namespace outlives the server (declared first, dropped last).
    let db = Netns::new("db");
    let pg = Postgres::start(&db, PORT);
    let r1 = Router::new("r1", &db, 10, &pg);
    let r2 = Router::new("r2", &db, 20, &pg);
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let since = common::now() - 3 * 3600;
    for r in [&r1, &r2] {
        common::metered_since(&r.state(), &["alice", "bob"], &["pi"], since);
    }
    let mut d1 = Daemon::start(&r1.ns, &r1.config);
    let d2 = Daemon::start(&r2.ns, &r2.config);
    // A real Prometheus scrapes r1 throughout: the many-routers dashboard is checked on it.
    let prom_dir = tempfile::tempdir().unwrap();
    let prom = common::prometheus::start_prometheus(&r1.ns, prom_dir.path());
    let mut sent = Sent::new();

    // Alice uses both routers at once; Bob starts on r1.
    r1.send("alice", 5, &mut sent);
    r1.send("bob", 3, &mut sent);
    r2.send("alice", 7, &mut sent);
    wait_for_books(&pg, &sent, 30, &[&d1, &d2]);
    let out = r1.alice_in_the_shared_store();
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["total"]["upload_bytes"], 1200, "{out}");
    assert_eq!(doc["total"]["upload_packets"], 12, "{out}");
    assert_eq!(doc["routers"][0]["router"], "r1", "{out}");
    assert_eq!(doc["routers"][0]["upload_bytes"], 500, "{out}");
    assert_eq!(doc["routers"][1]["upload_bytes"], 700, "{out}");
    // The same answer from the other router.
    assert_eq!(out, r2.alice_in_the_shared_store());

    // Bob moves to r2.
    r2.send("bob", 4, &mut sent);
    wait_for_books(&pg, &sent, 30, &[&d1, &d2]);

    // The database stops under traffic: the routers keep counting into their outboxes.
    pg.stop();
    r1.send("alice", 6, &mut sent);
    r2.send("bob", 2, &mut sent);
    wait_for_metric(&r1, "the database down", |r| {
        r.cluster_metric("quid_cluster_database_up") == 0
    });
    // A batch a second (the interval) piles up.
    wait_for_metric(&r1, "batches waiting", |r| {
        r.cluster_metric("quid_cluster_outbox_batches") >= 5
    });
    wait_for_metric(&r2, "batches waiting", |r| {
        r.cluster_metric("quid_cluster_outbox_batches") >= 5
    });
    assert!(r1.cluster_metric("quid_cluster_shipping_lag_seconds") >= 4);
    let (ok, status) = r1.cli(&["cluster", "status"]);
    assert!(
        !ok,
        "status must fail while the database is down:\n{status}"
    );
    assert!(status.contains("UNREACHABLE"), "{status}");
    pg.start_again();
    wait_for_books(&pg, &sent, 60, &[&d1, &d2]);
    // Drained: at most the batch the interval just sealed, and the one before (the metrics are
    // rendered right after each commit, before the shipper has looked).
    for r in [&r1, &r2] {
        wait_for_metric(r, "the outbox drained", |r| {
            r.cluster_metric("quid_cluster_outbox_batches") <= 2
                && r.cluster_metric("quid_cluster_shipping_lag_seconds") <= 2
                && r.cluster_metric("quid_cluster_database_up") == 1
        });
    }

    // r1 is killed with -9 mid-interval and started again: nothing lost, nothing doubled.
    r1.send("alice", 4, &mut sent);
    d1.kill();
    d1 = Daemon::start(&r1.ns, &r1.config);
    r1.send("alice", 3, &mut sent);
    wait_for_books(&pg, &sent, 30, &[&d1, &d2]);

    // r2 loses its link to the database, then gets it back.
    r2.ns.exec(&["ip", "link", "set", "db0", "down"]);
    r2.send("bob", 5, &mut sent);
    wait_for_metric(&r2, "batches waiting", |r| {
        r.cluster_metric("quid_cluster_outbox_batches") >= 5
    });
    r2.ns.exec(&["ip", "link", "set", "db0", "up"]);
    wait_for_books(&pg, &sent, 60, &[&d1, &d2]);

    // The same report posted to both routers at once: each admits it, the shared store holds
    // it once, with both copies.
    let body = common::report(&key, "pi", 1, 600, |_| {});
    let posts: Vec<_> = [&r1, &r2]
        .iter()
        .map(|r| {
            let body = body.clone();
            r.ns.spawn(move || common::http_here(9465, "POST", "/v1/reports", &body))
        })
        .collect();
    for p in posts {
        let (code, answer) = p.join().unwrap();
        assert_eq!(code, 200, "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.psql("SELECT count(*) FROM quid_report_copies").trim() != "2" {
        assert!(Instant::now() < deadline, "both copies never arrived");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(pg.psql("SELECT count(*) FROM quid_reports").trim(), "1");

    let (ok, status) = r2.cli(&["cluster", "status", "--json"]);
    assert!(ok, "{status}");
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(doc["reachable"], true, "{status}");
    assert_eq!(doc["routers"][0]["router"], "r1", "{status}");
    assert_eq!(doc["routers"][1]["router"], "r2", "{status}");
    assert_eq!(doc["reports"]["held"], 1, "{status}");
    assert_eq!(doc["reports"]["with_differing_copies"], 0, "{status}");

    every_many_routers_panel_has_data(&r1);
    drop(prom);
    d1.stop();
    d2.stop();
    // Everything the last reads sealed was shipped before the daemons exited.
    wait_for_books(&pg, &sent, 5, &[]);
    drop(pg);
}

/// Every query of the many-routers dashboard, as Grafana sends it for every router, returns
/// finite data from the Prometheus scraping `r` (tests/prometheus.rs checks the others).
fn every_many_routers_panel_has_data(r: &Router) {
    use common::prometheus::{encode, get, repo};
    let text = std::fs::read_to_string(repo().join("dashboards/many-routers.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut failures = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let q = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$job", "quid")
                .replace("$instance", ".*")
                .replace("$router", ".*");
            let (code, body) = get(&r.ns, 9090, &format!("/api/v1/query?query={}", encode(&q)));
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
            let finite = result.iter().all(|s| {
                s["value"][1]
                    .as_str()
                    .and_then(|x| x.parse::<f64>().ok())
                    .is_some_and(f64::is_finite)
            });
            if code != 200 || result.is_empty() || !finite {
                failures.push(format!("{}: `{q}` -> {code} {body}", p["title"]));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_second_store_shipping_under_a_taken_router_id_is_refused() {
    let db = Netns::new("db");
    let pg = Postgres::start(&db, PORT);
    let first = Router::new("r1", &db, 30, &pg);
    let d1 = Daemon::start(&first.ns, &first.config);
    let mut sent = Sent::new();
    first.send("alice", 2, &mut sent);
    wait_for_books(&pg, &sent, 30, &[&d1]);
    // Another router configured with the same id (another store): it counts, but its books
    // never mix into r1's.
    let second = Router::new("r1", &db, 40, &pg);
    let d2 = Daemon::start(&second.ns, &second.config);
    let mut other = Sent::new();
    second.send("alice", 9, &mut other);
    d2.wait_for_log("already shipped to by another store");
    wait_for_metric(&second, "the refusal", |r| {
        r.cluster_metric("quid_cluster_shipping_failures_total") >= 1
    });
    assert_eq!(shared_totals(&pg), sent);
    d2.stop();
    d1.stop();
    drop(pg);
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn over_tls_the_database_must_present_the_certificate_the_router_trusts() {
    let db = Netns::new("db");
    let pg = Postgres::start(&db, PORT);
    let server = rcgen::generate_simple_self_signed(vec!["100.64.50.1".into()]).unwrap();
    pg.enable_tls(&server.cert.pem(), &server.key_pair.serialize_pem());
    let certs = tempfile::tempdir().unwrap();
    let trusted = certs.path().join("books-ca.pem");
    std::fs::write(&trusted, server.cert.pem()).unwrap();
    // Another server's certificate: a router trusting it must not talk to this one.
    let stranger = rcgen::generate_simple_self_signed(vec!["100.64.60.1".into()]).unwrap();
    let wrong = certs.path().join("other-ca.pem");
    std::fs::write(&wrong, stranger.cert.pem()).unwrap();

    let ca = |p: &std::path::Path| format!("ca_file = \"{}\"\n", p.display());
    let good = Router::with("r1", &db, 50, &pg, &ca(&trusted));
    let fooled = Router::with("r2", &db, 60, &pg, &ca(&wrong));
    let plain = Router::new("r3", &db, 70, &pg);
    let d1 = Daemon::start(&good.ns, &good.config);
    let d2 = Daemon::start(&fooled.ns, &fooled.config);
    let d3 = Daemon::start(&plain.ns, &plain.config);
    let mut sent = Sent::new();
    good.send("alice", 3, &mut sent);
    let mut never = Sent::new();
    fooled.send("alice", 4, &mut never);
    plain.send("bob", 5, &mut never);
    wait_for_books(&pg, &sent, 30, &[&d1]);
    // The router that trusts another certificate refuses the server; the server refuses the
    // router without TLS. Both keep their books in their outboxes.
    d2.wait_for_log("shipping to the shared store failed");
    d3.wait_for_log("shipping to the shared store failed");
    for r in [&fooled, &plain] {
        wait_for_metric(r, "a failed shipment", |r| {
            r.cluster_metric("quid_cluster_shipping_failures_total") >= 1
                && r.cluster_metric("quid_cluster_database_up") == 0
        });
    }
    assert!(d2.log().contains("certificate"), "{}", d2.log());
    assert!(pg.psql("SELECT count(*) FROM pg_stat_ssl WHERE ssl").trim() != "0");
    assert_eq!(shared_totals(&pg), sent);
    for d in [d1, d2, d3] {
        d.stop();
    }
    drop(pg);
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_table_pushed_once_reaches_every_router_live_and_a_bad_one_reaches_none() {
    let db = Netns::new("db");
    let pg = Postgres::start(&db, PORT);
    let shared = "tables = \"shared\"\n";
    let r1 = Router::with("r1", &db, 80, &pg, shared);
    let r2 = Router::with("r2", &db, 90, &pg, shared);
    let d1 = Daemon::start(&r1.ns, &r1.config);
    let d2 = Daemon::start(&r2.ns, &r2.config);
    // Carol joins, once, from r1; both routers count her.
    let new = r1.dir.path().join("new.csv");
    std::fs::write(&new, format!("{TABLE}carol,Carol,home,100.64.1.12\n")).unwrap();
    let (ok, out) = r1.cli(&[
        "cluster",
        "push-table",
        "subscribers",
        new.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("generation 1"), "{out}");
    let (ok, status) = r2.cli(&["cluster", "status", "--json"]);
    assert!(ok, "{status}");
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(doc["tables"][0]["table"], "subscribers", "{status}");
    assert_eq!(doc["tables"][0]["generation"], 1, "{status}");
    assert_eq!(doc["tables"][0]["pushed_by"], "r1", "{status}");
    for (r, d) in [(&r1, &d1), (&r2, &d2)] {
        d.wait_for_log("wrote the shared subscribers table, generation 1");
        d.wait_for("carol installed", |s| {
            s.subscribers.iter().any(|x| x.id == "carol")
        });
        assert!(
            std::fs::read_to_string(r.dir.path().join("subscribers.csv"))
                .unwrap()
                .contains("carol")
        );
    }
    let mut sent = Sent::new();
    r2.send("carol", 4, &mut sent);
    r1.send("alice", 1, &mut sent);
    wait_for_books(&pg, &sent, 30, &[&d1, &d2]);
    // A table with a subscriber twice is refused before it reaches the database.
    let bad = r1.dir.path().join("bad.csv");
    std::fs::write(&bad, format!("{TABLE}alice,Again,home,100.64.1.13\n")).unwrap();
    let (ok, out) = r2.cli(&[
        "cluster",
        "push-table",
        "subscribers",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("nothing was pushed"), "{out}");
    assert_eq!(
        pg.psql("SELECT generation FROM quid_tables WHERE name = 'subscribers'")
            .trim(),
        "1"
    );
    // One written into the database behind quid's back is refused by every router.
    pg.psql(
        "UPDATE quid_tables SET generation = 2, body = convert_to('id,name\n', 'UTF8'),
           sha256 = 'x' WHERE name = 'subscribers'",
    );
    d1.wait_for_log("the shared subscribers table, generation 2, is refused");
    d2.wait_for_log("the shared subscribers table, generation 2, is refused");
    assert!(
        std::fs::read_to_string(r1.dir.path().join("subscribers.csv"))
            .unwrap()
            .contains("carol")
    );
    d1.stop();
    d2.stop();
    drop(pg);
}

/// A local store of `n` subscribers (`s0`…) sealing its commits for the shared store, with
/// `batches` interval commits of every subscriber, the `b`-th starting at `start(b)`: what a
/// router holds after `batches` intervals without the database. Returns the store and what
/// it sealed per subscriber (upload bytes).
fn sealed_store(
    dir: &std::path::Path,
    n: u32,
    batches: u32,
    start: impl Fn(u32) -> u64,
) -> (quid::store::Store, u64) {
    use quid::store::{Changes, IntervalRow, Record, Store, Usage};
    let mut store = Store::open(dir).unwrap();
    let records: Vec<Record> = (0..n)
        .map(|i| Record::fresh(&format!("s{i}"), i64::from(i), 0))
        .collect();
    store
        .commit(&records.iter().collect::<Vec<_>>(), &[])
        .unwrap();
    store.seal_batches(true);
    let mut per_subscriber = 0;
    for b in 0..batches {
        let at = start(b);
        let mut c = quid_common::SubscriberCounters::default();
        c.pairs[quid_common::pair_index(quid_common::DIR_UPLOAD, quid_common::CLASS_INTERNET)] =
            quid_common::Counter {
                packets: 3,
                bytes: 1500 + u64::from(b),
            };
        per_subscriber += 1500 + u64::from(b);
        let rows: Vec<IntervalRow> = (0..n)
            .map(|i| IntervalRow {
                key: i64::from(i),
                usage: Usage {
                    start: at,
                    end: at + 10,
                    counters: c,
                },
            })
            .collect();
        store
            .commit_with(
                &[],
                &rows,
                &Changes {
                    metered_until: Some(at + 10),
                    ..Changes::default()
                },
            )
            .unwrap();
    }
    (store, per_subscriber)
}

/// Ships everything `store` has sealed as router `router` (connecting from inside `db`'s
/// namespace to its loopback), then folds: (seconds from connect to drained, usage rows
/// shipped, seconds the fold took).
fn ship_all(db: &Netns, pg: &Postgres, dir: &std::path::Path, router: &str) -> (f64, u64, f64) {
    let cfg: quid::cluster::config::SharedConfig = toml::from_str(&format!(
        "url = \"postgresql://quid@127.0.0.1:{PORT}/quid\"\nrouter_id = \"{router}\"\npassword_file = \"{}\"\n",
        pg.password_file().display()
    ))
    .unwrap();
    let dir = dir.to_owned();
    db.run(move || {
        let local = quid::store::Store::connect(&dir).unwrap();
        let identity = i64::try_from(local.store_identity().unwrap()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let started = Instant::now();
            let mut shared = quid::store::shared::SharedStore::connect(&cfg, None)
                .await
                .unwrap();
            let mut cursor = shared.cursor(identity).await.unwrap();
            let mut rows = 0;
            let mut keys = std::collections::HashMap::new();
            while let Some(done) = shared
                .ship_next(
                    &local,
                    identity,
                    &cursor,
                    cfg.ship_rows,
                    &mut keys,
                    common::now(),
                )
                .await
                .unwrap()
            {
                rows += done.rows;
                cursor = done;
            }
            assert_eq!(local.outbox_depth().unwrap().batches, 0);
            let shipped = started.elapsed().as_secs_f64();
            let folding = Instant::now();
            shared.fold().await.unwrap();
            (shipped, rows, folding.elapsed().as_secs_f64())
        })
    })
}

/// The shipping benchmark's sizes: small in CI (a check that what is shipped is exact), the
/// issue's sizes under `cargo xtask bench` (QUID_CLUSTER_SUBSCRIBERS=100000, QUID_CLUSTER_OUT).
#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn shipping_rate_and_catch_up_after_a_ten_minute_outage() {
    let n: u32 = std::env::var("QUID_CLUSTER_SUBSCRIBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let db = Netns::new("db");
    let pg = Postgres::start(&db, PORT);
    let t0: u64 = 1_796_083_200; // 2026-12-01T00:00:00Z

    // Rate: ten hours of one interval each, every subscriber in every hour: 10 n new rows.
    let rate_dir = tempfile::tempdir().unwrap();
    let (store, _) = sealed_store(rate_dir.path(), n, 10, |b| t0 + u64::from(b) * 3600);
    drop(store);
    let (rate_secs, rate_rows, fold_secs) = ship_all(&db, &pg, rate_dir.path(), "rate");
    assert_eq!(rate_rows, 10 * u64::from(n));
    // Folded: every shipped row is in the hourly rows, and none is left in the delta table.
    assert_eq!(
        pg.psql(
            "SELECT (SELECT count(*) FROM quid_usage_hour WHERE router = 'rate'),
                    (SELECT count(*) FROM quid_usage_delta)"
        )
        .trim(),
        format!("{}\t0", 10 * u64::from(n))
    );

    // Catch-up: a ten-minute outage at a 10 s interval leaves 60 sealed batches of every
    // subscriber (straddling an hour boundary), shipped end to end once the database is back.
    let outage_dir = tempfile::tempdir().unwrap();
    let start = t0 + 20 * 3600 - 300;
    let (store, per_subscriber) =
        sealed_store(outage_dir.path(), n, 60, |b| start + u64::from(b) * 10);
    let sealed_rows = store.outbox_depth().unwrap().rows;
    drop(store);
    let (catch_up_secs, _, _) = ship_all(&db, &pg, outage_dir.path(), "outage");
    // Exact: every subscriber's bytes, once.
    let sums = pg.psql(
        "SELECT count(DISTINCT subscriber), min(b), max(b) FROM (SELECT subscriber, sum(up_bytes) b
           FROM quid_usage_hour WHERE router = 'outage' GROUP BY subscriber) t",
    );
    assert_eq!(
        sums.trim(),
        format!("{n}\t{per_subscriber}\t{per_subscriber}"),
        "{}",
        pg.log()
    );

    // Reports: admitted on a router (stored in one batch transaction, as the group commit does),
    // then shipped. The intake's own rate is bench/reports.json; this is the shared store's side.
    let reports_dir = tempfile::tempdir().unwrap();
    let n_reports = n;
    {
        let store = quid::store::Store::open(reports_dir.path()).unwrap();
        let batch = store.begin_reports().unwrap();
        for i in 0..n_reports {
            let r = quid::settlement::report::Report {
                node: format!("node{}", i % 1000),
                seq: u64::from(i / 1000 + 1),
                period_start: String::new(),
                period_end: String::new(),
                cpu_core_micros: 1,
                storage_byte_seconds: 2,
                energy_microjoules: 3,
                energy_source: Some(quid::settlement::report::EnergySource::Rapl),
                grid_bytes_sent: 4,
                grid_bytes_received: 5,
                signature: "ab".repeat(64),
            };
            let at = i64::try_from(t0).unwrap() + i64::from(i / 1000) * 3600;
            let p = quid::settlement::report::Period {
                start: at,
                end: at + 3600,
            };
            batch.insert(&r, p, at + 3600, "s0").unwrap();
        }
        batch.commit().unwrap();
    }
    let (report_secs, _, _) = ship_all(&db, &pg, reports_dir.path(), "reports");
    assert_eq!(
        pg.psql("SELECT count(*) FROM quid_reports WHERE router = 'reports'")
            .trim(),
        n_reports.to_string()
    );

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_1min: f64 = load
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    let rows = serde_json::json!([
        {"routers": 1, "subscribers": n, "measure": "shipped_usage_rows_per_second",
         "value": super_round(rate_rows as f64 / rate_secs), "rows": rate_rows,
         "seconds": super_round(rate_secs), "load_1min": load_1min},
        {"routers": 1, "subscribers": n, "measure": "folded_usage_rows_per_second",
         "value": super_round(rate_rows as f64 / fold_secs), "rows": rate_rows,
         "seconds": super_round(fold_secs), "load_1min": load_1min},
        {"routers": 1, "subscribers": n, "measure": "shipped_reports_per_second",
         "value": super_round(f64::from(n_reports) / report_secs), "reports": n_reports,
         "seconds": super_round(report_secs), "load_1min": load_1min},
        {"routers": 1, "subscribers": n, "measure": "catch_up_seconds_after_10_min_outage",
         "value": super_round(catch_up_secs), "sealed_rows": sealed_rows, "interval_secs": 10,
         "load_1min": load_1min},
    ]);
    println!("{rows:#}");
    if let Ok(out) = std::env::var("QUID_CLUSTER_OUT") {
        merge_rows(&out, rows.as_array().unwrap().clone());
    }
    drop(pg);
}

/// Writes `rows` into the JSON array in `path`, replacing the rows of the same measure and
/// number of routers (each benchmark test writes its own rows of bench/cluster.json).
fn merge_rows(path: &str, rows: Vec<serde_json::Value>) {
    let mut all: Vec<serde_json::Value> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let key = |v: &serde_json::Value| (v["measure"].clone(), v["routers"].clone());
    all.retain(|old| rows.iter().all(|new| key(new) != key(old)));
    all.extend(rows);
    std::fs::write(path, serde_json::to_string_pretty(&all).unwrap() + "\n").unwrap();
}

/// `x` to three decimals.
fn super_round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Posts `bodies` in order over one keep-alive connection to the intake on 127.0.0.1:9465 of
/// the calling thread's namespace; returns how many were accepted (200).
fn post_in_order(bodies: &[Vec<u8>]) -> u64 {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let s = std::net::TcpStream::connect(("127.0.0.1", 9465)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut accepted = 0;
    for body in bodies {
        let head = format!(
            "POST /v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        w.write_all(head.as_bytes()).unwrap();
        w.write_all(body).unwrap();
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut answer = vec![0; length];
        r.read_exact(&mut answer).unwrap();
        if status.starts_with("HTTP/1.1 200") {
            accepted += 1;
        } else {
            panic!("{status} {}", String::from_utf8_lossy(&answer));
        }
    }
    accepted
}

/// Node reports accepted across two routers at once, each router shipping while it answers;
/// every accepted report reaches the shared store once. Small in CI; `cargo xtask bench` sets
/// QUID_CLUSTER_NODES and QUID_CLUSTER_CLIENTS (per router) and QUID_CLUSTER_OUT.
#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn reports_accepted_across_two_routers_reach_the_shared_store_once() {
    let nodes_per_router: usize = std::env::var("QUID_CLUSTER_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    const PER_NODE: u64 = 24;
    // Connections per router, each one request at a time: the group commit batches what
    // arrives while it writes, so the rate grows with them.
    let clients: usize = std::env::var("QUID_CLUSTER_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let db = Netns::new("db");
    let pg = Postgres::start(&db, PORT);
    let since = common::now() - 2 * 86_400;
    let mut routers = Vec::new();
    let mut work = Vec::new();
    let sections = "\n[metrics]\nlisten = \"127.0.0.1:9464\"\n\n[reports]\nlisten = \"127.0.0.1:9465\"\nnodes = \"nodes.csv\"\nrate_per_node = 1000000.0\nburst_per_node = 1000000.0\nrate_per_source = 1000000.0\nburst_per_source = 1000000.0\n\n[http]\nmax_connections_per_ip = 1024\nmax_connections = 2048\n";
    for (k, (id, net)) in [("r1", 100u8), ("r2", 110u8)].into_iter().enumerate() {
        let router = Router::configured(id, &db, net, &pg, sections, "");
        let keys: Vec<ed25519_dalek::SigningKey> = (0..nodes_per_router)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&((k * nodes_per_router + i) as u64 + 1).to_le_bytes());
                ed25519_dalek::SigningKey::from_bytes(&seed)
            })
            .collect();
        let names: Vec<String> = (0..nodes_per_router).map(|i| format!("{id}n{i}")).collect();
        let mut csv =
            String::from("node,subscriber,public_key,cpu_cores,storage_bytes,max_watts\n");
        for (name, key) in names.iter().zip(&keys) {
            csv += &format!(
                "{name},alice,{},64,1000000000000,1000\n",
                hex::encode(key.verifying_key().to_bytes())
            );
        }
        std::fs::write(router.dir.path().join("nodes.csv"), csv).unwrap();
        // The default interval (10 s), not the tests' 1 s: every interval commit takes the
        // store's write lock the report batches need too.
        let text = std::fs::read_to_string(&router.config).unwrap();
        std::fs::write(
            &router.config,
            text.replace("interval_secs = 1\n", "interval_secs = 10\n"),
        )
        .unwrap();
        let names_ref: Vec<&str> = names.iter().map(String::as_str).collect();
        common::metered_since(&router.state(), &["alice"], &names_ref, since);
        let daemon = Daemon::start(&router.ns, &router.config);
        // Each client owns some nodes and sends each node's reports in order.
        let mut per_client: Vec<Vec<Vec<u8>>> = vec![Vec::new(); clients];
        for seq in 1..=PER_NODE {
            for (i, (name, key)) in names.iter().zip(&keys).enumerate() {
                // Hour after hour from `since`, within the metered time.
                let start = since + (i64::try_from(seq).unwrap() - 1) * 3600;
                per_client[i % clients].push(common::report(key, name, seq, 0, |r| {
                    r.period_start = quid::settlement::report::rfc3339(start);
                    r.period_end = quid::settlement::report::rfc3339(start + 3600);
                }));
            }
        }
        work.push(per_client);
        routers.push((router, daemon));
    }
    let total: u64 = work.iter().flatten().map(|b| b.len() as u64).sum();
    let started = Instant::now();
    let posting: Vec<_> = routers
        .iter()
        .zip(work)
        .flat_map(|((router, _), per_client)| {
            per_client
                .into_iter()
                .map(|bodies| router.ns.spawn(move || post_in_order(&bodies)))
                .collect::<Vec<_>>()
        })
        .collect();
    let accepted: u64 = posting.into_iter().map(|c| c.join().unwrap()).sum();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(accepted, total);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.psql("SELECT count(*) FROM quid_reports").trim() != total.to_string() {
        assert!(
            Instant::now() < deadline,
            "the shared store never held all {total} reports"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        pg.psql("SELECT count(*) FROM quid_report_copies").trim(),
        total.to_string()
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let row = serde_json::json!({
        "routers": 2, "subscribers": 1, "measure": "reports_accepted_per_second",
        "value": super_round(total as f64 / secs), "reports": total, "seconds": super_round(secs),
        "nodes": 2 * nodes_per_router, "connections": 2 * clients,
        "load_1min": load.split_whitespace().next().and_then(|l| l.parse::<f64>().ok()).unwrap_or(0.0),
    });
    println!("{row:#}");
    if let Ok(out) = std::env::var("QUID_CLUSTER_OUT") {
        merge_rows(&out, vec![row]);
    }
    for (_, d) in routers {
        d.stop();
    }
    drop(pg);
}
