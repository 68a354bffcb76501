#![cfg(test)]
//! The period's books as `quid tariff simulate` reads them (`planner::period_books`): exactly the usage, reports and
//! allowances a statement of the month counts, at the month's edges.

use quid_common::{CLASS_INTERNET, DIR_DOWNLOAD, SubscriberCounters, pair_index};

use super::{Record, SettledReport, Store, Usage};
use crate::{
    ledger::{chain::NewEntry, statement::month},
    settlement::outcome::Outcome,
};

fn record(id: &str, plan: &str, key: i64) -> Record {
    Record {
        plan: plan.into(),
        ..Record::fresh(id, key, 0)
    }
}

fn down(bytes: u64) -> SubscriberCounters {
    let mut c = SubscriberCounters::default();
    c.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes = bytes;
    c
}

#[test]
fn a_month_of_books_is_read_at_its_edges() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let (from, to) = month("2026-11").unwrap();
    let (alice, bob) = (record("alice", "home", 1), record("bob", "pro", 2));
    let at = |start: i64, bytes: u64| Usage {
        start: u64::try_from(start).unwrap(),
        end: u64::try_from(start + 10).unwrap(),
        counters: down(bytes),
    };
    // alice: the first and the last second of November count, October and December do not.
    for (id, start, bytes) in [
        ("alice", from - 10, 1),
        ("alice", from, 20),
        ("alice", to - 10, 300),
        ("alice", to, 4_000),
        ("bob", from + 3_600, 50_000),
    ] {
        let r = if id == "alice" { &alice } else { &bob };
        store.commit(&[r], &[(id, at(start, bytes))]).unwrap();
    }
    store
        .append(&[
            NewEntry::allowance("alice", from - 1, 7, 1),
            NewEntry::allowance("alice", from, 7, 2),
            NewEntry::allowance("bob", from + 5, 7, 2),
            NewEntry::allowance("bob", to, 7, 3),
            NewEntry::adjustment("bob", from + 6, 9, "not an allowance".into()),
        ])
        .unwrap();
    // Reports count as a statement counts them: settled, period ending in (from, to].
    let report = |seq: i64, end: i64, outcome: &str, credit: i64| {
        format!(
            "INSERT INTO reports (node, seq, period_start, period_end, cpu_core_micros,
               storage_byte_seconds, energy_microjoules, grid_bytes_sent, grid_bytes_received,
               signature, received_at, outcome, credit, subscriber)
             VALUES ('pi', {seq}, {}, {end}, {seq}000, 2, 3, 0, 0, 's', 0, '{outcome}', {credit},
               'bob');",
            end - 60
        )
    };
    let sql = [
        report(1, from, "matched", 1),
        report(2, from + 60, "matched", 2),
        report(3, to, "disputed", 3),
        report(4, to + 60, "matched", 4),
        report(5, from + 120, "pending", 0),
    ]
    .concat();
    store.execute_unchecked_for_tests(&sql).unwrap();

    let books = crate::planner::period_books::read(&store, from, to).unwrap();
    assert_eq!(books.usage_of(1, "home"), Some(&down(320)));
    assert_eq!(books.usage_of(2, "pro"), Some(&down(50_000)));
    assert_eq!(books.usage.len(), 2);
    assert_eq!(books.allowances_of(1, "home"), 1);
    assert_eq!(books.allowances_of(2, "pro"), 1);
    assert!(
        books
            .reports
            .iter()
            .all(|r| r.0 == 2 && books.plan(r.1) == "pro")
    );
    let mut reports: Vec<SettledReport> = books.reports.iter().map(|r| r.2.clone()).collect();
    reports.sort_by_key(|r| r.cpu_core_micros);
    let settled = |cpu: u64, outcome, credit| SettledReport {
        subscriber: "bob".into(),
        key: Some(2),
        period_end: if cpu == 2_000 { from + 60 } else { to },
        outcome,
        cpu_core_micros: cpu,
        storage_byte_seconds: 2,
        energy_microjoules: 3,
        credit,
    };
    assert_eq!(
        reports,
        vec![
            settled(2_000, Outcome::Matched, 2),
            settled(3_000, Outcome::Disputed, 3),
        ]
    );
    // The same bytes as the month's statement states.
    let statement = store.statement("alice", "2026-11").unwrap();
    assert_eq!(statement.bytes.download_internet, 320);
}
