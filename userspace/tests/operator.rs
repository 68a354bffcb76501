//! Who may do what, over real HTTPS: the operator API refuses a missing or wrong token and
//! changes nothing, then reloads, adjusts and issues statements with the right one; nodes
//! report over TLS with their signatures alone; `/metrics` is read-only. Needs root.

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use common::{Daemon, Netns, http_here, write_config_sections};
use quid::{store::Store, subscribers::reload_result::ReloadResult};
use serde_json::Value;

const TABLE: &str = "id,name,plan,prefixes\nalice,Alice,home,100.64.9.1\n";

/// Writes what the operator API needs into `dir`: a TLS certificate, the operator's statement
/// key and a token file only the group may read. Returns the token, the certificate and the
/// config sections of the three listeners; `metrics` adds lines to `[metrics]`.
fn operator_setup(dir: &Path, metrics: &str) -> (String, PathBuf, String) {
    let (cert, key) = certificate(dir);
    std::fs::write(dir.join("operator.key"), hex::encode([7u8; 32])).unwrap();
    let token = quid::http::operator::new_token().unwrap();
    let token_file = dir.join("operator.token");
    std::fs::write(&token_file, &token).unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    let sections = format!(
        "
[metrics]
listen = \"127.0.0.1:9464\"{metrics}

[reports]
listen = \"127.0.0.1:9465\"
nodes = \"nodes.csv\"

[operator]
listen = \"127.0.0.1:9466\"
token_file = \"operator.token\"

[settlement]
operator_key = \"operator.key\"

[tls]
cert = \"{cert}\"
key = \"{key}\"
",
        cert = cert.display(),
        key = key.display()
    );
    (token, cert, sections)
}

/// A self-signed certificate for 127.0.0.1 and localhost: (cert path, key path).
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let c =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

/// One HTTPS request inside `ns`, trusting `ca`: (status, JSON body).
fn https(
    ns: &Netns,
    ca: &Path,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let tls = quid::http::tls::client_trusting(ca).unwrap();
    let (method, url, token) = (method.to_owned(), url.to_owned(), token.map(str::to_owned));
    ns.run(move || {
        let agent = ureq::AgentBuilder::new()
            .tls_config(Arc::clone(&tls))
            .timeout(Duration::from_secs(10))
            .build();
        let mut req = agent.request(&method, &url);
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let answer = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        let resp = match answer {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        let code = resp.status();
        let text = resp.into_string().unwrap_or_default();
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn operator_actions_need_the_token_and_metrics_are_read_only() {
    let (r, _s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let node_key = common::write_nodes(dir.path(), 3);
    // The report below covers time before this daemon started: an earlier run metered it.
    common::metered_since(
        &dir.path().join("state"),
        &["alice"],
        &["pi"],
        common::now() - 4 * 3600,
    );
    let (token, cert, sections) = operator_setup(dir.path(), "");
    let token_file = dir.path().join("operator.token");
    let config = write_config_sections(dir.path(), &[("acc", "access", "auto")], TABLE, &sections);
    let started = common::now();
    let daemon = Daemon::start(&r, &config);
    let (_, first_scrape) = r.run(|| http_here(9464, "GET", "/metrics", b""));
    let op = "https://127.0.0.1:9466/v1/operator";
    let state = dir.path().join("state");
    let ledger_len = || {
        Store::open(&state)
            .unwrap()
            .entries(Some("alice"))
            .unwrap()
            .len()
    };
    let reloads = || ReloadResult::read(&state).map_or(0, |r| r.seq);
    let adjustment =
        serde_json::json!({"subscriber": "alice", "amount": 5_000_000, "reason": "outage credit"});

    // No token, a wrong token, a token in the wrong scheme: refused, nothing changes.
    let (entries, reloaded) = (ledger_len(), reloads());
    let wrong = "0".repeat(64);
    for t in [None, Some(wrong.as_str()), Some(&token[..63])] {
        let expected = if t.is_none() {
            "missing_credential"
        } else {
            "bad_credential"
        };
        for (method, path, body) in [
            ("POST", "/reload", None),
            ("POST", "/adjust", Some(adjustment.clone())),
            ("GET", "/statements/alice/2026-11", None),
        ] {
            let (code, v) = https(&r, &cert, method, &format!("{op}{path}"), t, body);
            assert_eq!(
                (code, v["reason"].as_str()),
                (401, Some(expected)),
                "{path}"
            );
        }
    }
    assert_eq!(
        ledger_len(),
        entries,
        "a refused adjustment changed the ledger"
    );
    assert_eq!(reloads(), reloaded, "a refused reload reloaded");

    // With the token: an adjustment, a statement that verifies, a reload.
    let with_token = |method: &str, path: &str, body: Option<Value>| {
        https(
            &r,
            &cert,
            method,
            &format!("{op}{path}"),
            Some(&token),
            body,
        )
    };
    let (code, v) = with_token("POST", "/adjust", Some(adjustment));
    assert_eq!((code, v["status"].as_str()), (200, Some("adjusted")), "{v}");
    assert_eq!(v["balance"], 5_000_000);
    // No Internet traffic priced here: nothing pending, the balance after it is the balance.
    assert_eq!(
        (
            v["pending_debit"].as_i64(),
            v["balance_after_pending"].as_i64()
        ),
        (Some(0), Some(5_000_000))
    );
    assert_eq!(ledger_len(), entries + 1);
    let unknown = serde_json::json!({"subscriber": "mallory", "amount": 1, "reason": "x"});
    let (code, v) = with_token("POST", "/adjust", Some(unknown));
    assert_eq!(
        (code, v["reason"].as_str()),
        (404, Some("unknown_subscriber"))
    );
    let month = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    let (code, v) = with_token("GET", &format!("/statements/alice/{month}"), None);
    assert_eq!(code, 200, "{v}");
    let signed = quid::ledger::statement::verify(&v.to_string(), None)
        .unwrap()
        .statement;
    assert_eq!(signed.closing_balance, 5_000_000);

    std::fs::write(
        dir.path().join("subscribers.csv"),
        format!("{TABLE}bob,Bob,home,100.64.9.2\n"),
    )
    .unwrap();
    let (code, v) = with_token("POST", "/reload", None);
    assert_eq!((code, v["ok"].as_bool()), (200, Some(true)), "{v}");
    std::fs::write(dir.path().join("subscribers.csv"), "id,name\nbroken\n").unwrap();
    let (code, v) = with_token("POST", "/reload", None);
    assert_eq!((code, v["ok"].as_bool()), (422, Some(false)), "{v}");
    assert!(!v["errors"].as_array().unwrap().is_empty());

    // Rotation: a new token in the file and SIGHUP (systemctl reload); the old one stops working.
    let rotated = quid::http::operator::new_token().unwrap();
    std::fs::write(&token_file, &rotated).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon.pid()).unwrap()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    daemon.wait_for_log("reloaded the operator token");
    let (code, v) = with_token("POST", "/reload", None);
    assert_eq!((code, v["reason"].as_str()), (401, Some("bad_credential")));
    let (code, _) = https(
        &r,
        &cert,
        "POST",
        &format!("{op}/reload"),
        Some(&rotated),
        None,
    );
    assert_eq!(
        code, 422,
        "the rotated token is refused (the table is still broken: 422)"
    );

    // A node reports over TLS with its signature alone, through the real client.
    std::fs::write(
        dir.path().join("node.key"),
        hex::encode(node_key.to_bytes()),
    )
    .unwrap();
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", r.name))
        .arg(env!("CARGO_BIN_EXE_quid"))
        .args(["node", "report", "--url", "https://127.0.0.1:9465", "--key"])
        .arg(dir.path().join("node.key"))
        .args(["--node", "pi", "--seq", "2", "--ca"])
        .arg(&cert)
        .args([
            "--from",
            &quid::settlement::report::rfc3339(common::now() - 7200),
        ])
        .args([
            "--to",
            &quid::settlement::report::rfc3339(common::now() - 3600),
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("accepted"), "{text}");

    // Plain HTTP on the TLS listeners gets no HTTP answer.
    assert_ne!(r.run(|| http_here(9465, "GET", "/v1/reports", b"")).0, 200);
    // /metrics answers GET only, and counts the refused logins.
    let (code, _) = r.run(|| http_here(9464, "POST", "/metrics", b"x"));
    assert_eq!(code, 405);
    let (code, _) = r.run(|| http_here(9464, "DELETE", "/metrics", b""));
    assert_eq!(code, 405);
    std::thread::sleep(Duration::from_millis(1500));
    let (code, text) = r.run(|| http_here(9464, "GET", "/metrics", b""));
    assert_eq!(code, 200);
    for (series, n) in [
        (
            "quid_operator_requests_total{action=\"adjust\",outcome=\"bad_credential\"}",
            2,
        ),
        (
            "quid_operator_requests_total{action=\"reload\",outcome=\"missing_credential\"}",
            1,
        ),
        (
            "quid_operator_requests_total{action=\"adjust\",outcome=\"ok\"}",
            1,
        ),
    ] {
        let got: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert_eq!(got, n, "{series}");
    }
    process_series_are_plausible(&first_scrape, &text, started);
    daemon.stop();
}

/// The daemon's `process_*` series (read from its /proc/self) in two scrapes: all there, with
/// figures a real daemon started at `started` has, and CPU time not going back.
fn process_series_are_plausible(first: &str, second: &str, started: i64) {
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    for name in quid::metrics::process::FAMILIES {
        assert!(
            second.contains(&format!("# TYPE {name} ")),
            "{name}: {second}"
        );
    }
    let cpu = value(second, "process_cpu_seconds_total");
    assert!(cpu > 0.0 && cpu < 600.0, "{cpu}");
    assert!(cpu >= value(first, "process_cpu_seconds_total"));
    let resident = value(second, "process_resident_memory_bytes");
    assert!((1e6..4e9).contains(&resident), "{resident}");
    assert!(value(second, "process_virtual_memory_bytes") >= resident);
    let (open, max) = (
        value(second, "process_open_fds"),
        value(second, "process_max_fds"),
    );
    // The daemon holds maps, links, the store and its listeners open.
    assert!(open >= 10.0 && open < max, "{open} of {max}");
    let start = value(second, "process_start_time_seconds");
    let (lo, hi) = (started as f64 - 2.0, common::now() as f64 + 1.0);
    assert!((lo..hi).contains(&start), "{start} not in {lo}..{hi}");
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_world_readable_token_or_a_broken_certificate_stops_the_start() {
    let (r, _s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("operator.token");
    std::fs::write(&token_file, quid::http::operator::new_token().unwrap()).unwrap();
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    for (section, expected) in [
        (
            "[operator]\nlisten = \"127.0.0.1:9466\"\ntoken_file = \"operator.token\"\n",
            "is readable by every user",
        ),
        (
            "[tls]\ncert = \"cert.pem\"\nkey = \"cert.pem\"\n",
            "no CERTIFICATE block",
        ),
        ("[tls]\ncert = \"cert.pem\"\n", "set both cert and key"),
    ] {
        let config =
            write_config_sections(dir.path(), &[("acc", "access", "auto")], TABLE, section);
        let (ok, err) = common::quid_run_refused(&r, &config, &[]);
        assert!(!ok, "{section}");
        assert!(err.contains(expected), "{section}: {err}");
        // `quid check` says the same without a kernel.
        let (ok, out) = common::quid_cli(&config, &["check"]);
        assert!(!ok && out.contains(expected), "{section}: {out}");
        // Refused before the kernel was touched.
        assert!(!r.has_xdp("acc"));
        assert!(!std::path::Path::new(&common::config_pin_dir(dir.path())).exists());
    }
}

/// Issue 18, hole 6: an adjustment that would carry a balance beyond i64 is refused with 422
/// and records nothing (on the old code it answered `200 adjusted` and the balance turned into
/// a float); `quid balance` and the statement stay exact; a balance row made a float behind
/// quid's back leaves every other subscriber's metrics updating; a tariff that could overflow
/// at a node's declared capacity is refused by `quid check`.
#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn balances_never_overflow_and_one_bad_row_stops_nobody_else() {
    let (r, _s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    common::write_nodes(dir.path(), 3);
    let (token, cert, sections) = operator_setup(dir.path(), "\nsubscribers = \"all\"");
    let table = format!("{TABLE}bob,Bob,home,100.64.9.2\n");
    let config = write_config_sections(dir.path(), &[("acc", "access", "auto")], &table, &sections);
    let daemon = Daemon::start(&r, &config);
    let op = "https://127.0.0.1:9466/v1/operator";
    let adjust = |who: &str, amount: i64| {
        https(
            &r,
            &cert,
            "POST",
            &format!("{op}/adjust"),
            Some(&token),
            Some(serde_json::json!({"subscriber": who, "amount": amount, "reason": "test"})),
        )
    };
    let (code, body) = adjust("alice", i64::MAX);
    assert_eq!(
        (code, body["balance"].as_i64()),
        (200, Some(i64::MAX)),
        "{body}"
    );
    let (code, body) = adjust("alice", 1);
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "balance_out_of_range", "{body}");
    let (code, body) = adjust("bob", i64::MIN);
    assert_eq!(code, 200, "{body}");
    let (code, body) = adjust("bob", -1);
    assert_eq!(
        (code, body["reason"].as_str()),
        (422, Some("balance_out_of_range"))
    );
    adjust("bob", i64::MAX);
    let state = dir.path().join("state");
    assert_eq!(
        Store::open(&state).unwrap().entries(None).unwrap().len(),
        3,
        "refused adjustments record nothing"
    );
    let (ok, out) = common::quid_cli(&config, &["balance", "alice"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        [
            "alice",
            "9,223,372,036,854.775807",
            "0.000000",
            "9,223,372,036,854.775807"
        ]
    );
    let period = jiff::Timestamp::now().strftime("%Y-%m").to_string();
    let (code, body) = https(
        &r,
        &cert,
        "GET",
        &format!("{op}/statements/alice/{period}"),
        Some(&token),
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["statement"]["closing_balance"].as_i64(),
        Some(i64::MAX)
    );
    let (ok, out) = common::quid_cli(&config, &["ledger", "verify"]);
    assert!(ok, "{out}");

    // Someone turns alice's balance row into a float behind quid's back: bob's balance still
    // moves on the metrics, and the bad row is counted.
    common::sqlite(&state)
        .execute_batch(
            "DROP TRIGGER balance_integer_update;
             UPDATE balances SET amount = 1e19 WHERE subscriber = 'alice';",
        )
        .unwrap();
    assert_eq!(adjust("bob", 5).0, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = r.run(|| http_here(9464, "GET", "/metrics", b"").1);
        if text.contains("quid_subscriber_balance_credits{subscriber=\"bob\"} 0.000004")
            && text.contains("quid_balances_unreadable 1")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // `quid ledger verify` checks every balance row against the entries: alice's is named.
    let (ok, out) = common::quid_cli(&config, &["ledger", "verify"]);
    assert!(!ok && out.contains("`alice`"), "{out}");
    // A store that cannot be read is the server's fault (503), never the request's (400).
    // One plain connection throughout: opening the store would recreate the table.
    let sql = common::sqlite(&state);
    sql.execute_batch("ALTER TABLE ledger RENAME TO ledger_away;")
        .unwrap();
    let (code, body) = https(
        &r,
        &cert,
        "GET",
        &format!("{op}/statements/bob/{period}"),
        Some(&token),
        None,
    );
    sql.execute_batch("ALTER TABLE ledger_away RENAME TO ledger;")
        .unwrap();
    assert_eq!(
        (code, body["reason"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    // Books that disagree with themselves are not stated either (alice's row was edited).
    let (code, body) = https(
        &r,
        &cert,
        "GET",
        &format!("{op}/statements/alice/{period}"),
        Some(&token),
        None,
    );
    assert_eq!(
        (code, body["reason"].as_str()),
        (500, Some("books_inconsistent")),
        "{body}"
    );
    daemon.stop();

    // A tariff that would credit more than i64 for one report at the node's capacity.
    let steep = write_config_sections(
        dir.path(),
        &[("acc", "access", "auto")],
        &table,
        &format!("{sections}\n[tariff]\ncpu_core_hour = 9223372036854775807\n"),
    );
    let (ok, out) = common::quid_cli(&steep, &["check"]);
    assert!(!ok && out.contains("lower the contribution rates"), "{out}");
}

/// Issue 18, hole 9: `quid statement verify` without `--operator-key` accepted a statement
/// signed by anyone. Now it refuses to vouch for the signer unless given the operator's
/// published key (`quid operator key` prints it), and `--unauthenticated` says plainly what
/// was not checked.
#[test]
fn statement_verify_needs_the_operator_key_to_vouch_for_the_signer() {
    let dir = tempfile::tempdir().unwrap();
    let quid = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_quid"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    // The operator's key, and a forger's statement signed with a key of its own.
    let operator = ed25519_dalek::SigningKey::from_bytes(&[21u8; 32]);
    std::fs::write(path("operator.key"), hex::encode(operator.to_bytes())).unwrap();
    let (ok, published) = quid(&[
        "operator",
        "key",
        "--key",
        &path("operator.key"),
        "--out",
        &path("operator.pub"),
    ]);
    assert!(ok, "{published}");
    let published = hex::encode(operator.verifying_key().to_bytes());
    assert_eq!(
        std::fs::read_to_string(path("operator.pub"))
            .unwrap()
            .trim(),
        published
    );
    let statement = quid::ledger::statement::Statement {
        version: 1,
        subscriber: "alice".into(),
        period: "2026-11".into(),
        from: 1_793_491_200,
        to: 1_796_083_200,
        bytes: Default::default(),
        contributions: Default::default(),
        opening_balance: 0,
        credits: 999_000_000,
        debits: 0,
        closing_balance: 999_000_000,
        entries: 1,
        ledger_hash: "00".repeat(32),
        ledger_seq: None,
        anchors: Vec::new(),
    };
    let forged = quid::ledger::statement::sign(
        statement.clone(),
        &ed25519_dalek::SigningKey::from_bytes(&[66u8; 32]),
    );
    std::fs::write(path("forged.json"), serde_json::to_string(&forged).unwrap()).unwrap();
    let genuine = quid::ledger::statement::sign(statement, &operator);
    std::fs::write(
        path("genuine.json"),
        serde_json::to_string(&genuine).unwrap(),
    )
    .unwrap();

    let (ok, out) = quid(&["statement", "verify", &path("forged.json")]);
    assert!(!ok && out.contains("--operator-key"), "{out}");
    let (ok, out) = quid(&[
        "statement",
        "verify",
        &path("forged.json"),
        "--unauthenticated",
    ]);
    assert!(ok && out.contains("NOT verified"), "{out}");
    let (ok, out) = quid(&[
        "statement",
        "verify",
        &path("forged.json"),
        "--operator-key",
        &path("operator.pub"),
    ]);
    assert!(
        !ok && out.contains("not by the operator key you gave"),
        "{out}"
    );
    for key in [path("operator.pub"), published.to_uppercase()] {
        let (ok, out) = quid(&[
            "statement",
            "verify",
            &path("genuine.json"),
            "--operator-key",
            &key,
        ]);
        assert!(ok && out.contains("statement ok: alice 2026-11"), "{out}");
    }
}
