//! The report intake over real HTTP: every refusal answers its status and reason, is counted
//! in the metrics and records nothing; an accepted report is durable across a restart. Needs
//! root.

mod common;

use std::time::Duration;

use common::{Daemon, Netns, http_here, metric, now, report, write_config_sections};
use ed25519_dalek::SigningKey;
use quid::{settlement::report::rfc3339, store::Store};
use serde_json::Value;

/// A request over loopback inside `ns`: (status, body).
fn http(ns: &Netns, port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_vec());
    ns.run(move || http_here(port, &method, &path, &body))
}

#[test]
fn every_refusal_is_answered_counted_and_records_nothing_and_acceptance_is_durable() {
    let (r, _s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let key = common::write_nodes(dir.path(), 3);
    let config = write_config_sections(
        dir.path(),
        &[("acc", "access", "auto")],
        "id,name,plan,prefixes\nalice,Alice,home,100.64.9.1\n",
        &format!(
            "{}max_body_bytes = 4096\nrate_per_node = 1\nburst_per_node = 30\n",
            common::LISTENERS
        ),
    );
    // Reports below cover time before this daemon started: an earlier run metered it.
    common::metered_since(
        &dir.path().join("state"),
        &["alice"],
        &["pi", "pi2"],
        now() - 4 * 3600,
    );
    let mut daemon = Daemon::start(&r, &config);
    let post = |body: &[u8]| {
        let (code, text) = http(&r, 9465, "POST", "/v1/reports", body);
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (
            code,
            v["status"].as_str().unwrap_or("").to_owned(),
            v["reason"].as_str().unwrap_or("").to_owned(),
        )
    };
    let stored = || {
        Store::open(&dir.path().join("state"))
            .unwrap()
            .report_count()
            .unwrap()
    };

    let first = report(&key, "pi", 1, 7200, |_| {});
    assert_eq!(post(&first), (200, "accepted".into(), "".into()));
    assert_eq!(stored(), 1);
    assert_eq!(post(&first), (200, "already_recorded".into(), "".into()));

    let refusals: Vec<(u16, &str, Vec<u8>)> = vec![
        (
            403,
            "unknown_node",
            report(&SigningKey::from_bytes(&[4u8; 32]), "ghost", 2, 0, |_| {}),
        ),
        (
            401,
            "bad_signature",
            report(&SigningKey::from_bytes(&[4u8; 32]), "pi", 2, 0, |_| {}),
        ),
        (400, "malformed", b"{\"node\": \"pi\", \"seq\": ".to_vec()),
        // JSON cannot carry NaN or infinity: such a figure fails to decode.
        (
            400,
            "malformed",
            String::from_utf8(report(&key, "pi", 2, 0, |_| {}))
                .unwrap()
                .replace("\"energy_joules\":36000.0", "\"energy_joules\":1e999")
                .into_bytes(),
        ),
        (409, "stale_sequence", report(&key, "pi", 1, 0, |_| {})),
        (
            422,
            "empty_period",
            report(&key, "pi", 2, 0, |r| r.period_start = r.period_end.clone()),
        ),
        (
            422,
            "period_too_long",
            report(&key, "pi", 2, 0, |r| {
                r.period_start = rfc3339(now() - 3 * 86_400)
            }),
        ),
        (422, "future_period", report(&key, "pi", 2, -7200, |_| {})),
        (
            409,
            "overlapping_period",
            report(&key, "pi", 2, 5400, |_| {}),
        ),
        (
            422,
            "negative",
            report(&key, "pi", 2, 0, |r| r.cpu_core_seconds = -1.0),
        ),
        (
            422,
            "exceeds_capacity",
            report(&key, "pi", 2, 0, |r| {
                r.cpu_core_seconds = 2.0 * 3600.0 + 1.0
            }),
        ),
    ];
    for (want_code, want_reason, body) in &refusals {
        let (code, status, reason) = post(body);
        assert_eq!(
            (code, status.as_str(), reason.as_str()),
            (*want_code, "refused", *want_reason),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let (code, _) = http(&r, 9465, "POST", "/v1/reports", &vec![b' '; 8192]);
    assert_eq!(code, 413, "a body over max_body_bytes is refused");
    assert_eq!(stored(), 1, "no refused report may be recorded");
    let balances = Store::open(&dir.path().join("state"))
        .unwrap()
        .balances()
        .unwrap();
    assert!(
        balances.values().all(|&b| b == 0),
        "no balance moved: {balances:?}"
    );

    // The node's bucket (burst 30, 1/s) runs dry under a flood.
    let flood: Vec<(u16, String, String)> = (0..30).map(|_| post(&first)).collect();
    assert!(
        flood
            .iter()
            .any(|(c, _, r)| *c == 429 && r == "rate_limited"),
        "{flood:?}"
    );
    assert_eq!(stored(), 1);

    std::thread::sleep(Duration::from_millis(1300));
    let (_, text) = http(&r, 9464, "GET", "/metrics", b"");
    for (reason, n) in [
        ("unknown_node", 1),
        ("bad_signature", 1),
        ("malformed", 2),
        ("stale_sequence", 1),
        ("empty_period", 1),
        ("period_too_long", 1),
        ("future_period", 1),
        ("overlapping_period", 1),
        ("negative", 1),
        ("exceeds_capacity", 1),
        ("non_finite", 0),
    ] {
        assert_eq!(
            metric(
                &text,
                &format!("quid_report_rejections_total{{reason=\"{reason}\"}}")
            ),
            n,
            "{reason}"
        );
    }
    assert_eq!(metric(&text, "quid_reports_total{outcome=\"accepted\"}"), 1);
    assert!(metric(&text, "quid_reports_total{outcome=\"rate_limited\"}") > 0);

    // Durable: after a restart the same report is recognised, and the next one is accepted.
    daemon.stop();
    daemon = Daemon::start(&r, &config);
    assert_eq!(post(&first), (200, "already_recorded".into(), "".into()));
    assert_eq!(
        post(&report(&key, "pi", 2, 0, |_| {})),
        (200, "accepted".into(), "".into())
    );
    assert_eq!(stored(), 2);
    // An older report resent (its acknowledgement was lost) is still recognised, from the
    // store; an altered copy of it is not.
    assert_eq!(post(&first), (200, "already_recorded".into(), "".into()));
    let altered = report(&key, "pi", 1, 7200, |r| r.energy_joules = 1.0);
    assert_eq!(post(&altered).2, "stale_sequence");

    // A node added to the nodes file is accepted without a restart.
    let newcomer = SigningKey::from_bytes(&[9u8; 32]);
    let nodes = std::fs::read_to_string(dir.path().join("nodes.csv")).unwrap();
    std::fs::write(
        dir.path().join("nodes.csv"),
        format!(
            "{nodes}pi2,alice,{},2,1000000000,10\n",
            hex::encode(newcomer.verifying_key().to_bytes())
        ),
    )
    .unwrap();
    let late = report(&newcomer, "pi2", 1, 0, |_| {});
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while post(&late).0 == 403 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(post(&late), (200, "already_recorded".into(), "".into()));
    assert_eq!(stored(), 3);

    // `quid node report` signs and submits; sending it again is safe.
    let key_file = dir.path().join("pi.key");
    std::fs::write(&key_file, hex::encode(key.to_bytes())).unwrap();
    let t = now();
    let cli = |seq: &str, cpu: &str, from: i64, to: i64| {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", r.name))
            .arg(env!("CARGO_BIN_EXE_quid"))
            .args([
                "node",
                "report",
                "--url",
                "http://127.0.0.1:9465",
                "--node",
                "pi",
                "--seq",
                seq,
            ])
            .arg("--key")
            .arg(&key_file)
            .args(["--from", &rfc3339(from), "--to", &rfc3339(to)])
            .args(["--cpu-core-seconds", cpu, "--grid-bytes-sent", "42"])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let first_run = cli("3", "300", t, t + 200);
    assert_eq!(first_run, (true, "accepted".to_owned()));
    assert_eq!(
        cli("3", "300", t, t + 200),
        (true, "already_recorded".to_owned())
    );
    let (ok, text) = cli("4", "5000", t + 200, t + 290);
    assert!(!ok && text.contains("422 exceeds_capacity"), "{text}");
    assert_eq!(stored(), 4);
    daemon.stop();
}
