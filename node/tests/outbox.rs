//! The agent against a router on loopback that is down for a while: every period is committed
//! to the outbox, survives the agent being dropped without clean-up (as by kill -9), and is
//! delivered exactly once, contiguous and in order, when the router is back.
#![cfg(test)]

mod support;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use quid_node::{agent::Agent, config::Config};
use quid_report::{
    clock::Clock,
    report::{EnergySource, Report},
};

/// 2026-01-01T00:00:00Z.
const NEW_YEAR: i64 = 1_767_225_600;

fn config(router: &str, state: &std::path::Path) -> Config {
    let text = format!(
        "node = \"farm-pi-1\"\nrouter = \"{router}\"\nkey = \"{}\"\nstate_dir = \"{}\"\nperiod_secs = 900\n",
        state.join("node.key").display(),
        state.display()
    );
    Config::parse(&text, "test").unwrap()
}

#[test]
fn a_router_down_for_hours_and_an_agent_killed_lose_and_repeat_nothing() {
    let up = Arc::new(AtomicBool::new(false));
    let recorded = Arc::new(Mutex::new(HashSet::new()));
    let (u, r) = (up.clone(), recorded.clone());
    let router = support::serve(Arc::new(move |line: &str, body: &str| {
        assert_eq!(line, "POST /v1/reports HTTP/1.1");
        if !u.load(Ordering::SeqCst) {
            return (
                503,
                r#"{"reason":"unavailable","message":"starting"}"#.to_owned(),
            );
        }
        let report: Report = serde_json::from_str(body).unwrap();
        if r.lock().unwrap().insert(report.seq) {
            (200, r#"{"status":"accepted"}"#.to_owned())
        } else {
            (200, r#"{"status":"already_recorded"}"#.to_owned())
        }
    }));
    let state = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let clock = Clock::manual(NEW_YEAR + 100);
    let open = || {
        Agent::open(
            config(&router.url, state.path()),
            key.clone(),
            clock.clone(),
        )
        .unwrap()
    };

    let mut agent = open();
    let mut committed = Vec::new();
    // Four hours with the router down; the agent is killed twice mid-period.
    for step in 1..=16 {
        clock.set(NEW_YEAR + step * 900 + 7);
        committed.extend(agent.close_due().unwrap());
        let d = agent.deliver().unwrap();
        assert!(d.acknowledged.is_empty() && d.waiting.is_some(), "{d:?}");
        if step % 6 == 0 {
            clock.set(NEW_YEAR + step * 900 + 450);
            drop(agent);
            agent = open();
            assert!(agent.close_due().unwrap().is_empty());
        }
    }
    assert_eq!(committed, (1..=16).collect::<Vec<u64>>());
    // The router comes back; retries are due within the backoff's 5 minutes at most.
    up.store(true, Ordering::SeqCst);
    clock.set(NEW_YEAR + 16 * 900 + 7 + 301);
    let d = agent.deliver().unwrap();
    assert_eq!(d.acknowledged, (1..=16).collect::<Vec<u64>>());
    assert!(d.waiting.is_none());
    assert!(agent.deliver().unwrap().acknowledged.is_empty());

    let reports: Vec<Report> = router.reports();
    let accepted: Vec<&Report> = reports
        .iter()
        .filter(|r| recorded.lock().unwrap().contains(&r.seq))
        .collect();
    let mut seen = HashSet::new();
    let delivered: Vec<&&Report> = accepted.iter().filter(|r| seen.insert(r.seq)).collect();
    assert_eq!(delivered.len(), 16);
    // Contiguous: the first starts at the anchor, each starts where the last ended.
    assert_eq!(delivered[0].period_start, "2026-01-01T00:01:40Z");
    for pair in delivered.windows(2) {
        assert_eq!(pair[0].period_end, pair[1].period_start);
        assert_eq!(pair[0].seq + 1, pair[1].seq);
    }
    for r in &delivered {
        assert!(r.verify(&key.verifying_key()).unwrap());
        // Version 3: the source is signed with the figures (no [energy] section: none).
        assert_eq!(r.energy_source, Some(EnergySource::None));
    }
    // After one more kill and restart the numbering and the periods go on.
    drop(agent);
    let mut agent = open();
    clock.set(NEW_YEAR + 17 * 900 + 7);
    assert_eq!(agent.close_due().unwrap(), vec![17]);
    assert_eq!(agent.deliver().unwrap().acknowledged, vec![17]);
}

#[test]
fn an_agent_off_for_two_days_splits_the_gap_into_reports_a_router_takes() {
    let router = support::serve(Arc::new(|_: &str, _: &str| {
        (200, r#"{"status":"accepted"}"#.to_owned())
    }));
    let state = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let clock = Clock::manual(NEW_YEAR);
    let mut agent = Agent::open(config(&router.url, state.path()), key, clock.clone()).unwrap();
    clock.set(NEW_YEAR + 2 * 86_400 + 3_600 + 5);
    assert_eq!(agent.close_due().unwrap(), vec![1, 2, 3]);
    assert_eq!(agent.deliver().unwrap().acknowledged, vec![1, 2, 3]);
    let ends: Vec<String> = router
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str::<Report>(b).unwrap().period_end)
        .collect();
    assert_eq!(
        ends,
        [
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-03T01:00:00Z"
        ]
    );
}
