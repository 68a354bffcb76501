//! The daemon folds closed days into the month digests by itself: the hourly rows an earlier
//! run left two days back are folded at its first intervals, so a month's report can read
//! them without a pass by hand. Needs root.

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use common::{Daemon, write_config};
use quid::store::Store;

const TABLE: &str = "id,name,plan,prefixes\nalice,Alice,home,100.64.9.1\n";
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn the_daemon_folds_the_closed_days_it_holds_into_the_month_digests() {
    let (r, _s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[("acc", "access", "auto")], TABLE);
    let state = dir.path().join("state");
    // The two whole days before today (UTC): 1,000 bytes downloaded in every hour by key 1.
    let today = common::now().div_euclid(DAY) * DAY;
    let first = today - 2 * DAY;
    let c = common::sqlite(&state);
    for h in 0..48 {
        c.execute(
            "INSERT INTO usage_hour (start, key, up_packets, up_bytes, up_grid_packets,
                 up_grid_bytes, down_packets, down_bytes, down_grid_packets, down_grid_bytes)
             VALUES (?1, 1, 0, 0, 0, 0, 1, 1000, 0, 0)",
            [first + h * HOUR],
        )
        .unwrap();
    }
    drop(c);
    let daemon = Daemon::start(&r, &config);
    daemon.wait_for_log("month digests: 2 day(s) folded");
    daemon.stop();

    let store = Store::open(&state).unwrap();
    let reader = store.period_reader().unwrap();
    let cursor = reader.digest_cursor().unwrap().unwrap();
    assert_eq!((cursor.since, cursor.day), (first, today));
    // Key 1's month(s): the 48 hours' bytes, each hour one of its largest.
    let mut down = 0;
    let mut tops = 0;
    for day in [first, first + DAY] {
        let month = quid::clock::month_of(day).unwrap().0;
        reader
            .month_digests(month, (1, 2), |_, d| {
                down += d.down;
                tops = tops.max(d.top_down.len());
                assert!(d.top_down.iter().all(|&v| v == 1_000), "{d:?}");
            })
            .unwrap();
        if quid::clock::month_of(first).unwrap() == quid::clock::month_of(first + DAY).unwrap() {
            break;
        }
    }
    assert_eq!(down, 48 * 1_000);
    assert!(tops >= 24, "{tops}");
}
