#![cfg(test)]
//! Exports through the real books: rows written by interval commits, partly rolled up into
//! days, exported as CSV and read back, sum per subscriber to the counts the meter was given.

use std::collections::BTreeMap;

use quid_common::{
    CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters, pair_index,
};

use super::export_csv;
use crate::{
    clock::Clock,
    kernel::subscriber_maps::Slots,
    metering::interval::Books,
    store::{COUNTERS, Resolution, Retention, Store},
    subscribers::table::Table,
};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const IDS: [&str; 3] = ["alice", "bob", "carol"];

/// Three days of 50-minute intervals (straddling hour edges) for three subscribers counting
/// different amounts in every class; returns the books and each subscriber's running total.
fn books() -> (tempfile::TempDir, Books, Clock, [SubscriberCounters; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let (mut books, _) =
        Books::open(Store::open(dir.path()).unwrap(), 1, false, clock.clone()).unwrap();
    let table = Table::parse(
        b"id,name,plan,prefixes\nalice,A,home,100.64.0.1\nbob,B,home,100.64.0.2\n\
          carol,C,pro,100.64.0.3\n",
        "t.csv".as_ref(),
    )
    .unwrap();
    let slots = Slots::from_assignments(IDS.iter().zip(0..).map(|(id, s)| ((*id).to_owned(), s)));
    books
        .install_at(&table, &slots, &[], u64::try_from(T0).unwrap())
        .unwrap();
    let mut totals = [SubscriberCounters::default(); 3];
    for k in 1..=3 * 24 * 60 / 50 {
        let now = T0 + k * 3_000;
        for (s, t) in totals.iter_mut().enumerate() {
            let s = u64::try_from(s).unwrap();
            let k = u64::try_from(k).unwrap();
            // carol idles on odd intervals: her rows are sparse.
            if s == 2 && k % 2 == 1 {
                continue;
            }
            t.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes += 1_000 * k + s;
            t.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].packets += k;
            t.pairs[pair_index(DIR_UPLOAD, CLASS_GRID)].bytes += 7 * k * (s + 1);
            t.pairs[pair_index(DIR_UPLOAD, CLASS_INTERNET)].packets += s + 1;
        }
        clock.set(now);
        let now_totals = totals;
        books
            .interval(|slot| now_totals[slot], u64::try_from(now).unwrap())
            .unwrap();
    }
    (dir, books, clock, totals)
}

/// An export read back: each subscriber's sum, and the rows as (subscriber, start, end).
type ReadBack = (
    BTreeMap<String, SubscriberCounters>,
    Vec<(String, i64, i64)>,
);

/// Reads an export back: each subscriber's sum, and the rows as (subscriber, start, end).
fn read_back(csv: &[u8]) -> ReadBack {
    let mut r = csv::Reader::from_reader(csv);
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let mut want = vec!["subscriber", "start", "end"];
    want.extend(COUNTERS);
    assert_eq!(header, want);
    let mut sums: BTreeMap<String, SubscriberCounters> = BTreeMap::new();
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.unwrap();
        let t = |i: usize| rec[i].parse::<jiff::Timestamp>().unwrap().as_second();
        let mut c = SubscriberCounters::default();
        for (i, p) in c.pairs.iter_mut().enumerate() {
            p.packets = rec[3 + 2 * i].parse().unwrap();
            p.bytes = rec[4 + 2 * i].parse().unwrap();
        }
        sums.entry(rec[0].to_owned()).or_default().add(&c);
        rows.push((rec[0].to_owned(), t(1), t(2)));
    }
    (sums, rows)
}

fn export(store: &Store, resolution: Resolution, from: i64, to: i64) -> (u64, Vec<u8>) {
    let mut out = Vec::new();
    let n = export_csv::write(store, resolution, from, to, &mut out).unwrap();
    (n, out)
}

/// Day exports sum to each subscriber's counts whatever tier holds them (before, during and
/// after a roll-up); hour exports hold the hours still kept, in (start, subscriber) order.
#[test]
fn an_export_read_back_sums_to_the_books_in_every_tier() {
    let (_dir, mut books, clock, totals) = books();
    let end = T0 + 4 * DAY;
    let expect: BTreeMap<String, SubscriberCounters> = IDS
        .iter()
        .zip(totals)
        .map(|(id, t)| ((*id).to_owned(), t))
        .collect();
    let check_days = |store: &Store| {
        let (n, csv) = export(store, Resolution::Day, T0, end);
        let (sums, rows) = read_back(&csv);
        assert_eq!(sums, expect);
        assert_eq!(n, u64::try_from(rows.len()).unwrap());
        // One row per subscriber and day, whole UTC days, ordered by day.
        assert!(rows.iter().all(|(_, s, e)| e - s == DAY && s % DAY == 0));
        assert!(rows.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(
            store.usage_by_subscriber(T0, end).unwrap(),
            expect.clone().into_iter().collect()
        );
    };
    let store_hours = |store: &Store| {
        let (_, csv) = export(store, Resolution::Hour, T0, end);
        read_back(&csv)
    };
    // Everything still hourly: the hour export is the whole books too, in (start, key) order.
    let (sums, rows) = store_hours(books.store());
    assert_eq!(sums, expect);
    assert!(rows.iter().all(|(_, s, e)| e - s == HOUR));
    assert!(rows.windows(2).all(|w| w[0].1 <= w[1].1));
    check_days(books.store());
    // A roll-up stopped after its first small batch leaves a day in both tiers.
    clock.set(T0 + 4 * DAY);
    let keep = Retention {
        interval_secs: HOUR,
        hourly_secs: DAY + HOUR,
        daily_secs: 30 * DAY,
        rollup_batch_rows: 5,
    };
    let progress = books.roll_up(&keep).unwrap();
    assert!(!progress.done);
    check_days(books.store());
    while !books.roll_up(&keep).unwrap().done {}
    check_days(books.store());
    // The hours rolled up are gone from the hour export; what is left is exactly the hours
    // the books still hold.
    // (Hours from a subscriber's base on stay hourly: the base sums them.)
    let (sums, rows) = store_hours(books.store());
    assert!(rows.iter().filter(|(_, s, _)| *s < T0 + 2 * DAY).count() < 3);
    for id in IDS {
        let held: Vec<_> = books
            .store()
            .usage(id, u64::try_from(T0).unwrap(), u64::try_from(end).unwrap())
            .unwrap()
            .into_iter()
            .filter(|u| u.end - u.start == 3_600)
            .collect();
        let mut want = SubscriberCounters::default();
        for u in &held {
            want.add(&u.counters);
        }
        assert_eq!(sums.get(id).copied().unwrap_or_default(), want, "{id}");
    }
    // A range edge inside a day starts at the next whole day.
    let (_, csv) = export(books.store(), Resolution::Day, T0 + 1, end);
    assert!(read_back(&csv).1.iter().all(|(_, s, _)| *s >= T0 + DAY));
}

/// A row as both readers give it: subscriber, start, end (seconds), the eight counters.
type Flat = (String, i64, i64, Vec<u64>);

fn csv_rows(csv: &[u8]) -> Vec<Flat> {
    let mut r = csv::Reader::from_reader(csv);
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let t = |i: usize| rec[i].parse::<jiff::Timestamp>().unwrap().as_second();
            let counters = (3..11).map(|i| rec[i].parse().unwrap()).collect();
            (rec[0].to_owned(), t(1), t(2), counters)
        })
        .collect()
}

fn parquet_rows(path: &std::path::Path) -> Vec<Flat> {
    use parquet::{
        file::reader::{FileReader, SerializedFileReader},
        record::RowAccessor,
    };
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let names: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert_eq!(names, export_csv::header());
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            let counters = (3..11).map(|i| row.get_ulong(i).unwrap()).collect();
            (
                row.get_string(0).unwrap().clone(),
                row.get_timestamp_millis(1).unwrap() / 1_000,
                row.get_timestamp_millis(2).unwrap() / 1_000,
                counters,
            )
        })
        .collect()
}

/// The Parquet export read back (by the parquet crate's own reader) equals the CSV export, row
/// for row, at both resolutions, and so the books.
#[test]
fn a_parquet_export_reads_back_equal_to_the_csv() {
    let (dir, books, _, _) = books();
    let end = T0 + 4 * DAY;
    for resolution in [Resolution::Hour, Resolution::Day] {
        let (n, csv) = export(books.store(), resolution, T0, end);
        let path = dir.path().join("usage.parquet");
        let file = std::fs::File::create(&path).unwrap();
        let written =
            super::export_parquet::write(books.store(), resolution, T0, end, file).unwrap();
        assert_eq!(written, n);
        let rows = parquet_rows(&path);
        assert_eq!(rows, csv_rows(&csv));
        assert!(!rows.is_empty());
        // Many row groups (one of them short) read back the same.
        let file = std::fs::File::create(&path).unwrap();
        super::export_parquet::write_in_groups(books.store(), resolution, T0, end, file, 7)
            .unwrap();
        assert_eq!(parquet_rows(&path), rows);
    }
    // An empty range is a valid file with no rows.
    let path = dir.path().join("empty.parquet");
    let file = std::fs::File::create(&path).unwrap();
    super::export_parquet::write(books.store(), Resolution::Hour, 0, 1, file).unwrap();
    assert!(parquet_rows(&path).is_empty());
}
