#![cfg(test)]
//! The daily fold into month digests (`month_fold`) at its edges: where it starts, a month it
//! holds only in part, a fold that lost a race, and hours rolled up before they were folded.

use std::time::Duration;

use quid_common::{CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters, pair_index};

use super::{
    month_fold::fold,
    report::{ReadFrom, Report, report, report_from_rows},
};
use crate::{
    clock::month_bounds,
    store::{DigestCursor, DigestWrites, Record, Store, Usage},
};

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

fn record(id: &str, plan: &str, key: i64) -> Record {
    Record {
        plan: plan.into(),
        ..Record::fresh(id, key, 0)
    }
}

/// `down` bytes downloaded and a tenth of them uploaded, in the ten seconds from `start`.
fn usage(start: i64, down: u64) -> Usage {
    let mut c = SubscriberCounters::default();
    c.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes = down;
    c.pairs[pair_index(DIR_UPLOAD, CLASS_INTERNET)].bytes = down / 10;
    Usage {
        start: u64::try_from(start).unwrap(),
        end: u64::try_from(start + 10).unwrap(),
        counters: c,
    }
}

fn set_last_interval_end(store: &mut Store, t: i64) {
    store
        .execute_unchecked_for_tests(&format!(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_interval_end', {t})"
        ))
        .unwrap();
}

fn cursor(store: &Store) -> Option<DigestCursor> {
    store.period_reader().unwrap().digest_cursor().unwrap()
}

/// `r` with `read_from` set as the digests would give it, to compare the figures alone.
fn as_digests(r: Report) -> Report {
    Report {
        read_from: ReadFrom::MonthDigests,
        ..r
    }
}

#[test]
fn a_month_is_read_from_digests_only_when_every_day_of_it_was_folded() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let (oct, nov) = (
        month_bounds("2026-10").unwrap(),
        month_bounds("2026-11").unwrap(),
    );
    let (alice, bob) = (record("alice", "home", 1), record("bob", "pro", 2));
    // The oldest hour is mid-day on October 31st: that day is not whole, folding starts on
    // November 1st.
    for (r, start, down) in [
        (&alice, oct.1 - 14 * HOUR, 7_000),
        (&alice, nov.0 + 10 * HOUR, 1_000),
        (&bob, nov.0 + 11 * HOUR, 5_000),
        (&alice, nov.0 + DAY + 10 * HOUR, 3_000),
        (&bob, nov.1 - HOUR, 9_000),
    ] {
        store.commit(&[r], &[(&r.id, usage(start, down))]).unwrap();
    }
    // Metered to November 2nd, 00:30: only November 1st is closed.
    set_last_interval_end(&mut store, nov.0 + DAY + HOUR / 2);
    let p = fold(&store, Duration::MAX).unwrap();
    assert!(p.caught_up && p.days == 1, "{p:?}");
    let c = cursor(&store).unwrap();
    assert_eq!((c.since, c.day, c.key), (nov.0, nov.0 + DAY, 0));
    let r = report(&store, nov.0, nov.1, &[oct], |_| {}).unwrap();
    assert_eq!(
        r.read_from,
        ReadFrom::HourlyRows,
        "November is folded in part"
    );

    // Metered into December: every day of November folds, and November reads from its
    // digests exactly what it reads from the rows; October (folding began after it) and a
    // period that is not one month read the rows.
    set_last_interval_end(&mut store, nov.1 + HOUR / 2);
    let p = fold(&store, Duration::MAX).unwrap();
    assert_eq!((p.caught_up, p.days), (true, 29), "{p:?}");
    let (mut digest_lines, mut row_lines) = (Vec::new(), Vec::new());
    let r = report(&store, nov.0, nov.1, &[oct], |l| {
        digest_lines.push(l.clone())
    })
    .unwrap();
    let rows =
        report_from_rows(&store, nov.0, nov.1, &[oct], |l| row_lines.push(l.clone())).unwrap();
    assert_eq!(r.read_from, ReadFrom::MonthDigests);
    assert_eq!(r, as_digests(rows));
    assert_eq!(digest_lines, row_lines);
    assert_eq!(r.fleet.bytes.internet.down, 18_000);
    assert_eq!(r.fleet.previous_bytes, [7_000 + 700]);
    for (from, to) in [oct, (nov.0, nov.0 + 7 * DAY)] {
        let r = report(&store, from, to, &[], |_| {}).unwrap();
        assert_eq!(r.read_from, ReadFrom::HourlyRows);
    }
    // Folding again with nothing new closed changes nothing.
    let p = fold(&store, Duration::MAX).unwrap();
    assert_eq!((p.caught_up, p.batches), (true, 0));
    assert_eq!(report(&store, nov.0, nov.1, &[oct], |_| {}).unwrap(), r);
}

#[test]
fn a_fold_that_lost_the_race_writes_nothing_and_rolled_up_hours_restart_the_folding() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let nov = month_bounds("2026-11").unwrap();
    let alice = record("alice", "home", 1);
    store
        .commit(&[&alice], &[("alice", usage(nov.0, 1_000))])
        .unwrap();
    set_last_interval_end(&mut store, nov.1 + HOUR);
    fold(&store, Duration::MAX).unwrap();
    let folded = cursor(&store).unwrap();
    assert_eq!((folded.since, folded.day), (nov.0, nov.1));

    // A batch computed against a cursor another fold has moved since is dropped whole.
    let folder = store.digest_folder().unwrap();
    let stale = DigestCursor {
        day: nov.0,
        ..folded
    };
    let writes = DigestWrites {
        month: nov.0,
        digests: vec![(1, crate::store::MonthDigest::default())],
        plan_hours: Vec::new(),
    };
    assert!(!folder.commit_fold(Some(stale), folded, &writes).unwrap());
    let r = report(&store, nov.0, nov.1, &[], |_| {}).unwrap();
    assert_eq!(
        (r.read_from, r.fleet.bytes.internet.down),
        (ReadFrom::MonthDigests, 1_000)
    );

    // The daemon was away longer than the hourly retention: December's first days were
    // rolled up before they were folded. Folding starts again after them, and November,
    // whose digests no longer join the days folded since, reads the rows.
    let dec10 = nov.1 + 9 * DAY;
    store
        .commit(&[&alice], &[("alice", usage(dec10 + 10 * HOUR, 2_000))])
        .unwrap();
    store
        .execute_unchecked_for_tests(&format!(
            "DELETE FROM usage_hour WHERE start < {dec10};
             DELETE FROM usage_hour_blocks WHERE start < {dec10};"
        ))
        .unwrap();
    set_last_interval_end(&mut store, dec10 + 2 * DAY + HOUR);
    let p = fold(&store, Duration::MAX).unwrap();
    assert!(p.caught_up, "{p:?}");
    let c = cursor(&store).unwrap();
    assert_eq!(
        (c.since, c.day),
        (dec10 + DAY, dec10 + 2 * DAY),
        "December 10th is not whole in the hours held"
    );
    let r = report(&store, nov.0, nov.1, &[], |_| {}).unwrap();
    assert_eq!(r.read_from, ReadFrom::HourlyRows);
}
