//! The report intake under concurrent clients, through the group commit: many requests at
//! once, copies of one report, conflicting reports under one sequence number and replays of
//! older reports arriving together. Every report is stored exactly once, every answer is the
//! one a one-at-a-time intake would give, and a batch the store cannot commit answers 503
//! with `Retry-After` and records nothing. Needs no root (the intake on loopback, a store in
//! a temporary directory).

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::SocketAddr,
    path::Path,
    sync::{Arc, Barrier, Mutex},
};

use ed25519_dalek::SigningKey;
use quid::{
    http::serve::{HttpLimits, serve},
    settlement::{
        admission::Limits,
        intake::{Budget, Intake, router},
        nodes::{Node, Nodes},
        report::{Report, rfc3339},
    },
    store::Store,
};
use serde_json::Value;

const NODES: usize = 6;

/// An answer: status, the `Retry-After` header, the JSON `status` (or `reason` of a refusal).
type Answer = (u16, Option<String>, String);

fn key(n: usize) -> SigningKey {
    SigningKey::from_bytes(&[u8::try_from(n).unwrap() + 40; 32])
}

/// Node `n{i}` of subscriber `s{i}`.
fn nodes() -> Nodes {
    (0..NODES)
        .map(|i| Node {
            id: format!("n{i}"),
            subscriber: format!("s{i}"),
            key: key(i).verifying_key(),
            cpu_cores: 4,
            storage_bytes: 1_000_000,
            max_watts: 100,
        })
        .collect()
}

/// Writes a store in `state` whose books metered every node's subscriber for the last
/// week, and every node was registered then; returns the week's start.
fn metered_week(state: &Path) -> i64 {
    let base = common::now() - 7 * 86_400;
    let ids: Vec<String> = (0..NODES).map(|i| format!("n{i}")).collect();
    let subs: Vec<String> = (0..NODES).map(|i| format!("s{i}")).collect();
    common::metered_since(
        state,
        &subs.iter().map(String::as_str).collect::<Vec<_>>(),
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        base,
    );
    base
}

/// The intake on a loopback port, on its own runtime (kept alive by the return value).
fn intake(state: &Path) -> (tokio::runtime::Runtime, SocketAddr, Arc<Mutex<Intake>>) {
    let unlimited = Budget {
        rate: 1e9,
        burst: 1e9,
    };
    let intake = Intake::new(
        nodes(),
        Store::open(state).unwrap(),
        Limits::default(),
        unlimited,
        unlimited,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let intake = Arc::new(Mutex::new(intake));
    let limits = HttpLimits {
        max_connections_per_ip: 1024,
        ..HttpLimits::default()
    };
    rt.spawn(serve(
        "reports",
        listener,
        router(intake.clone(), 16 * 1024),
        limits,
        None,
        Arc::default(),
    ));
    (rt, addr, intake)
}

/// Report `seq` of node `n`, covering hour `seq` of the last week; `cpu` tells apart
/// reports with the same sequence number.
fn report(base: i64, n: usize, seq: u64, cpu: u64) -> Report {
    let start = base + i64::try_from(seq).unwrap() * 3600;
    let mut r = Report {
        node: format!("n{n}"),
        seq,
        period_start: rfc3339(start),
        period_end: rfc3339(start + 3600),
        cpu_core_micros: cpu,
        storage_byte_seconds: 0,
        energy_microjoules: 0,
        energy_source: None,
        grid_bytes_sent: 1,
        grid_bytes_received: 2,
        signature: String::new(),
    };
    r.sign(&key(n)).unwrap();
    r
}

/// One POST: (status, the `Retry-After` header, the JSON answer's `status` or `reason`).
fn post(addr: SocketAddr, r: &Report) -> Answer {
    let body = serde_json::to_vec(r).unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head[9..12].parse().unwrap();
    let retry = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().to_owned())
    });
    let v: Value = serde_json::from_str(body).unwrap();
    let what = match v["status"].as_str().unwrap() {
        "refused" => v["reason"].as_str().unwrap().to_owned(),
        s => s.to_owned(),
    };
    (code, retry, what)
}

/// Posts every report at the same moment, one client each; the answers in order. With
/// `held`, a connection holding the store's write lock (as the daemon's interval commit
/// does), the lock is let go only once every request is verified and waits for the writer:
/// then all but the few the writer took first share one batch.
fn all_at_once(
    addr: SocketAddr,
    reports: &[Report],
    held: Option<(&rusqlite::Connection, &Mutex<Intake>)>,
) -> Vec<Answer> {
    if let Some((sql, _)) = held {
        sql.execute_batch("BEGIN IMMEDIATE").unwrap();
    }
    let start = Arc::new(Barrier::new(reports.len()));
    let clients: Vec<_> = reports
        .iter()
        .cloned()
        .map(|r| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                post(addr, &r)
            })
        })
        .collect();
    if let Some((sql, intake)) = held {
        let before = intake.lock().unwrap().batch_stats();
        let all = u64::try_from(reports.len()).unwrap();
        // Until all wait, or the writer gave up on the lock (its batch then fails, and the
        // answers below show it).
        loop {
            let now = intake.lock().unwrap().batch_stats();
            if now.waiting - before.waiting >= all || now.batches > before.batches {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        sql.execute_batch("COMMIT").unwrap();
    }
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}

#[test]
fn copies_conflicts_and_replays_posted_together_are_stored_once_and_answered_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let base = metered_week(&state);
    let sql = common::sqlite(&state);
    let (_rt, addr, intake) = intake(&state);

    // Per round and node: three copies of the next report (one with its signature in
    // capitals), a conflicting report under the same number, and the report accepted in the
    // round before, resent. All 30 requests of a round go at once; a round starts when the
    // previous one is answered, as a node sends its next report only after the last.
    let mut accepted: BTreeMap<usize, Report> = BTreeMap::new();
    for seq in 1..=8u64 {
        let mut round = Vec::new();
        for n in 0..NODES {
            let genuine = report(base, n, seq, 1_000);
            let mut shouted = genuine.clone();
            shouted.signature = genuine.signature.to_uppercase();
            round.push((n, "genuine", genuine.clone()));
            round.push((n, "genuine", genuine));
            round.push((n, "genuine", shouted));
            round.push((n, "conflict", report(base, n, seq, 2_000)));
            if let Some(last) = accepted.get(&n) {
                round.push((n, "replay", last.clone()));
            }
        }
        let bodies: Vec<Report> = round.iter().map(|r| r.2.clone()).collect();
        let answers = all_at_once(addr, &bodies, Some((&sql, &intake)));
        for n in 0..NODES {
            let mine: Vec<(&str, &Report, &Answer)> = round
                .iter()
                .zip(&answers)
                .filter(|((m, _, _), _)| *m == n)
                .map(|((_, kind, r), a)| (*kind, r, a))
                .collect();
            let winners: Vec<_> = mine.iter().filter(|(_, _, a)| a.2 == "accepted").collect();
            assert_eq!(winners.len(), 1, "round {seq}, node n{n}: {mine:?}");
            let won = winners[0].0;
            for (kind, _, answer) in &mine {
                let want = match (*kind, won) {
                    ("replay", _) => (200, "already_recorded"),
                    (k, w) if k == w => (200, "already_recorded"),
                    _ => (409, "stale_sequence"),
                };
                if answer.2 != "accepted" {
                    assert_eq!(
                        (answer.0, answer.2.as_str()),
                        want,
                        "round {seq}, node n{n}, {kind}: {mine:?}"
                    );
                }
            }
            accepted.insert(n, winners[0].1.clone());
        }
    }

    let stats = intake.lock().unwrap().batch_stats();
    eprintln!("{} reports in {} batches", stats.reports, stats.batches);
    // Exactly once each, and the stored copy is the accepted one.
    let store = Store::open(&state).unwrap();
    assert_eq!(store.report_count().unwrap(), 8 * 6);
    for (n, r) in &accepted {
        assert_eq!(
            store.report_signature(&format!("n{n}"), 8).unwrap(),
            Some(r.signature_bytes().unwrap())
        );
    }
}

#[test]
fn a_batch_the_store_refuses_answers_503_with_retry_after_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let base = metered_week(&state);
    let (_rt, addr, _) = intake(&state);
    // The disk refuses node n0's reports: any batch holding one fails as a whole.
    let sql = common::sqlite(&state);
    sql.execute_batch(
        "CREATE TRIGGER refuse BEFORE INSERT ON reports WHEN NEW.node = 'n0'
         BEGIN SELECT RAISE(ABORT, 'disk refused the write'); END;",
    )
    .unwrap();
    let round: Vec<Report> = (0..NODES).map(|n| report(base, n, 1, 1_000)).collect();
    let answers = all_at_once(addr, &round, None);
    assert_eq!(
        answers[0],
        (503, Some("1".into()), "store_unavailable".into())
    );
    let store = Store::open(&state).unwrap();
    for (r, answer) in round.iter().zip(&answers) {
        // Whatever shared n0's batch failed with it; the rest were committed. Never a 200
        // for what is not stored, nor a 503 for what is.
        let stored = store.report_signature(&r.node, 1).unwrap().is_some();
        match answer {
            (200, None, what) if what == "accepted" => assert!(stored, "{r:?}"),
            (503, Some(_), what) if what == "store_unavailable" => assert!(!stored, "{r:?}"),
            other => panic!("{other:?} for {r:?}"),
        }
    }
    // Once the disk takes writes again, every refused report is accepted when resent: none
    // was half-remembered as recorded.
    sql.execute_batch("DROP TRIGGER refuse").unwrap();
    for (r, answer) in round.iter().zip(&answers) {
        let want = if answer.0 == 503 {
            "accepted"
        } else {
            "already_recorded"
        };
        assert_eq!(post(addr, r), (200, None, want.into()), "{r:?}");
    }
    assert_eq!(store.report_count().unwrap(), 6);
}
