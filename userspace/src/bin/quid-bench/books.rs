//! The books benchmarks (`bench/books.json`): one interval commit at a million active
//! subscribers, a simulated year of a smaller network through the real books (bytes per
//! subscriber-month, the store after a year), and one subscriber's month read from a store of
//! a million subscribers.

use std::{path::Path, time::Instant};

use quid::{
    clock::Clock,
    kernel::subscriber_maps::Slots,
    ledger::tariff::Tariff,
    metering::interval::Books,
    store::{Retention, Store, Tier},
};
use quid_common::{
    CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters, pair_index,
};

use super::{BooksRow, as_f64, table};

/// 2026-01-01T00:00:00Z.
pub const T0: u64 = 1_767_225_600;
const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;

/// What the books benchmarks measure, and at what size.
pub struct Sizes {
    /// Active subscribers of the commit and the query benchmarks.
    pub subscribers: u32,
    /// Subscribers of the simulated year.
    pub sim_subscribers: u32,
    /// Days simulated.
    pub sim_days: u64,
    /// Seconds between the simulated year's intervals (the rows per hour do not depend on it).
    pub sim_interval: u64,
    /// Hours of hourly rows per subscriber in the query benchmark's store (0: skip it).
    pub query_hours: u64,
}

/// One subscriber in this many exchanges grid traffic (0: none); `QUID_BENCH_GRID_EVERY`
/// overrides the default of 10.
fn grid_every() -> u64 {
    std::env::var("QUID_BENCH_GRID_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// A kernel-like cumulative counter for `slot` after `round` intervals: every subscriber
/// downloads and uploads Internet traffic, one in [`grid_every`] also exchanges grid traffic.
fn cumulative(slot: usize, round: u64, every: u64) -> SubscriberCounters {
    let s = u64::try_from(slot).unwrap_or(0);
    let mut c = SubscriberCounters::default();
    let per = (s % 997 + 1) * 12_345;
    let set = |c: &mut SubscriberCounters, d, k, bytes: u64| {
        c.pairs[pair_index(d, k)].bytes = bytes;
        c.pairs[pair_index(d, k)].packets = bytes / 1_000;
    };
    set(&mut c, DIR_DOWNLOAD, CLASS_INTERNET, round * per * 8);
    set(&mut c, DIR_UPLOAD, CLASS_INTERNET, round * per);
    if every > 0 && s % every == 0 {
        set(&mut c, DIR_DOWNLOAD, CLASS_GRID, round * per / 2);
        set(&mut c, DIR_UPLOAD, CLASS_GRID, round * per / 3);
    }
    c
}

/// Books on a fresh store in `dir` with `n` subscribers installed at `T0`, and a tariff that
/// prices traffic (so that settlement debits are written).
fn books(dir: &Path, n: u32, clock: &Clock) -> anyhow::Result<Books> {
    let (mut books, _) = Books::open(Store::open(dir)?, 1, false, clock.clone())?;
    books.tariff = Tariff {
        download_internet_gb: 1_000,
        upload_internet_gb: 1_000,
        ..Tariff::default()
    };
    let slots = Slots::from_assignments((0..n).map(|i| (format!("s{i}"), i)));
    books.install_at(&table(n)?, &slots, &[], T0)?;
    Ok(books)
}

/// Runs every books benchmark and returns its rows.
pub fn run(sizes: &Sizes, scratch: &Path) -> anyhow::Result<Vec<BooksRow>> {
    let mut rows = Vec::new();
    let dir = scratch.join(format!("quid-books-bench-{}", std::process::id()));
    let fresh = || -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(())
    };
    fresh()?;
    let result = (|| -> anyhow::Result<()> {
        rows.extend(commit(&dir, sizes.subscribers)?);
        fresh()?;
        rows.extend(year(&dir, sizes)?);
        fresh()?;
        rows.extend(query(&dir, sizes.subscribers, sizes.query_hours)?);
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(rows)
}

/// Interval commits at `n` active subscribers: each hour's first commit (new blocks, the hour
/// before folded), a day later the hours where about 1/24 of the bases move, then commits
/// within one hour (each adds into the blocks it wrote): the slowest of each kind.
fn commit(dir: &Path, n: u32) -> anyhow::Result<Vec<BooksRow>> {
    let clock = Clock::manual(i64::try_from(T0)?);
    let started = Instant::now();
    let mut books = books(dir, n, &clock)?;
    log::info!(
        "books: {n} subscribers installed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (mut new_hour, mut rebase, mut steady) = (0f64, 0f64, 0f64);
    let mut round = 0u64;
    let mut step = |books: &mut Books, now: u64| -> anyhow::Result<f64> {
        round += 1;
        let r = round;
        clock.set(i64::try_from(now)?);
        let every = grid_every();
        let s = books.interval(|slot| cumulative(slot, r, every), now)?;
        Ok(s.write_seconds)
    };
    for h in 1..=23 {
        new_hour = new_hour.max(step(&mut books, T0 + h * HOUR + 10)?);
    }
    // The first commit of day 2 settles day 1: one ledger debit per subscriber.
    let settlement = step(&mut books, T0 + 24 * HOUR + 10)?;
    for h in 25..=26 {
        rebase = rebase.max(step(&mut books, T0 + h * HOUR + 10)?);
    }
    // An interval's counts go into the hour of its start: the first interval starting in hour
    // 26 is the one whose bases move.
    rebase = rebase.max(step(&mut books, T0 + 26 * HOUR + 20)?);
    for k in 2..=7 {
        steady = steady.max(step(&mut books, T0 + 26 * HOUR + 10 + k * 10)?);
    }
    let subscribers = u64::from(n);
    println!(
        "interval commit at {n} active subscribers: {steady:.3} s within an hour, {new_hour:.3} \
         s at an hour's first commit, {rebase:.3} s where bases move, {settlement:.3} s with \
         the day's settlement debits"
    );
    let row = |measure: &str, value| BooksRow {
        measure: measure.into(),
        subscribers,
        value,
        unit: "s".into(),
    };
    Ok(vec![
        row("interval_commit_seconds", steady.max(new_hour).max(rebase)),
        row("interval_commit_seconds_within_hour", steady),
        row("interval_commit_seconds_new_hour", new_hour),
        row("interval_commit_seconds_rebase_hour", rebase),
        row("settlement_commit_seconds", settlement),
    ])
}

/// A simulated year of `sizes.sim_subscribers` through the real books with the default
/// tiers, rolled up every day: bytes per active subscriber-month (what a month adds, from
/// dbstat, the grid journal apart), the grid journal's steady size per subscriber with a node
/// at a 10 s interval, and the store after a year projected to 100,000 subscribers.
fn year(dir: &Path, sizes: &Sizes) -> anyhow::Result<Vec<BooksRow>> {
    let n = sizes.sim_subscribers;
    let clock = Clock::manual(i64::try_from(T0)?);
    let mut books = books(dir, n, &clock)?;
    let keep = Retention::default();
    let step = sizes.sim_interval.clamp(10, HOUR);
    let mut round = 0u64;
    let mut now = T0;
    let mut month = None;
    let end = T0 + sizes.sim_days * DAY;
    while now + step <= end {
        now += step;
        round += 1;
        clock.set(i64::try_from(now)?);
        books.interval(|slot| cumulative(slot, round, 10), now)?;
        if now % DAY < step {
            while !books.roll_up(&keep)?.done {}
            if now >= T0 + 30 * DAY && month.is_none() {
                month = Some(books.store().stats()?);
            }
        }
    }
    let year = books.store().stats()?;
    let month = month.ok_or_else(|| anyhow::anyhow!("simulate at least 30 days"))?;
    let journal_table = Tier::Interval.table();
    let without_journal = |s: &quid::store::StoreStats| -> u64 {
        s.tables
            .iter()
            .filter(|(t, _)| t != journal_table)
            .map(|(_, b)| b)
            .sum()
    };
    let per_month = as_f64(without_journal(&month)) / f64::from(n);
    drop(books);
    let journal_per_node = journal_day(dir)?;
    // The year's tables without its journal (written at the simulated interval), plus the
    // journal one in ten subscribers keeps at 10 s.
    let file = year.file_bytes;
    let per_subscriber_year =
        as_f64(without_journal(&year)) / f64::from(n) + journal_per_node / 10.0;
    let year_100k = per_subscriber_year * 100_000.0;
    println!(
        "simulated {} days of {n} subscribers at {step} s: {per_month:.0} B per subscriber-month \
         (hourly rows, daily debits, records); grid journal {journal_per_node:.0} B per \
         subscriber with a node at 10 s; file after the run {file} B, {:.2} GB at 100,000",
        sizes.sim_days,
        year_100k / 1e9
    );
    for (table, bytes) in &month.tables {
        println!("  after 30 days: {table:<16} {bytes:>12} B");
    }
    let row = |measure: &str, subscribers: u64, value, unit: &str| BooksRow {
        measure: measure.into(),
        subscribers,
        value,
        unit: unit.into(),
    };
    Ok(vec![
        row(
            "bytes_per_active_subscriber_month",
            u64::from(n),
            per_month,
            "B",
        ),
        row(
            "grid_journal_bytes_per_node_subscriber",
            u64::from(n),
            journal_per_node,
            "B",
        ),
        row("store_bytes_after_year", 100_000, year_100k, "B"),
    ])
}

/// The grid journal of a subscriber whose node exchanges grid traffic every interval, at a
/// 10 s interval and the default two days' retention: a simulated day of 100 such subscribers
/// through the real books, its journal bytes (dbstat) per subscriber, times two.
fn journal_day(dir: &Path) -> anyhow::Result<f64> {
    let day_dir = dir.join("journal-day");
    std::fs::create_dir_all(&day_dir)?;
    let n = 100;
    let clock = Clock::manual(i64::try_from(T0)?);
    let mut books = books(&day_dir, n, &clock)?;
    let mut now = T0;
    for round in 1..=DAY / 10 {
        now += 10;
        clock.set(i64::try_from(now)?);
        books.interval(|slot| cumulative(slot, round, 1), now)?;
    }
    let stats = books.store().stats()?;
    let journal: u64 = stats
        .tables
        .iter()
        .filter(|(t, _)| t == Tier::Interval.table())
        .map(|(_, b)| *b)
        .sum();
    Ok(as_f64(journal) / f64::from(n) * 2.0)
}

/// One subscriber's month (`quid usage`'s read) from a store of `n` subscribers with `hours`
/// hourly rows each, written straight into the tier table in time order: the median and the
/// slowest of 50 subscribers spread over the keys.
fn query(dir: &Path, n: u32, hours: u64) -> anyhow::Result<Vec<BooksRow>> {
    if hours == 0 {
        return Ok(Vec::new());
    }
    hourly_store(dir, n, hours)?;
    let store = Store::connect(dir)?;
    let (from, to) = (
        i64::try_from(T0)?,
        i64::try_from(T0 + hours.min(720) * HOUR)?,
    );
    let mut times = Vec::new();
    for k in 0..50u32 {
        let id = format!("s{}", u64::from(k) * u64::from(n) / 50);
        let t = Instant::now();
        let sum = store.usage_finest(&id, from, to)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(sum.rows == hours.min(720), "{id}: {} rows", sum.rows);
    }
    times.sort_by(f64::total_cmp);
    let (median, worst) = (times[times.len() / 2], times[times.len() - 1]);
    let bytes = store.file_bytes()?;
    println!(
        "usage of one subscriber's month in a store of {n} subscribers x {hours} hours \
         ({bytes} B): median {median:.2} ms, slowest {worst:.2} ms"
    );
    let row = |measure: &str, value| BooksRow {
        measure: measure.into(),
        subscribers: u64::from(n),
        value,
        unit: "ms".into(),
    };
    Ok(vec![
        row("usage_month_query_ms", median),
        row("usage_month_query_ms_slowest", worst),
    ])
}

/// Records `end` as the end of the last interval committed, as the daemon's interval commit
/// does (the daily pass folds only days before it).
pub fn set_last_interval_end(dir: &Path, end: i64) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(dir.join(quid::store::FILE))?;
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_interval_end', ?1)",
        [end],
    )?;
    Ok(())
}

/// Writes a fresh store of `n` subscribers (`s0`, `s1`, ..., plan `bench`) with one hourly row
/// each for `hours` hours from `T0`, straight through SQL (an interval commit per hour would
/// take far longer than what is measured on it).
pub fn hourly_store(dir: &Path, n: u32, hours: u64) -> anyhow::Result<()> {
    drop(Store::open(dir)?);
    let started = Instant::now();
    {
        let mut conn = rusqlite::Connection::open(dir.join(quid::store::FILE))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")?;
        let tx = conn.transaction()?;
        {
            let mut sub = tx.prepare(
                "INSERT INTO subscribers (id, name, plan, prefixes, slot, removed, last, total,
                     key, based) VALUES (?1, '', 'bench', '', NULL, 0, x'', x'', ?2, 0)",
            )?;
            for i in 0..n {
                sub.execute(rusqlite::params![format!("s{i}"), i64::from(i) + 1])?;
            }
        }
        tx.commit()?;
        let values: Vec<String> = (0..100)
            .map(|j| {
                let b = j * 3;
                format!("(?1, ?{}, ?{}, 0, 0, 0, ?{}, 0, 0, 0)", b + 2, b + 3, b + 4)
            })
            .collect();
        let sql = format!("INSERT INTO usage_hour VALUES {}", values.join(","));
        for h in 0..hours {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(&sql)?;
                let start = i64::try_from(T0 + h * HOUR)?;
                let mut key = 1i64;
                while key + 100 <= i64::from(n) + 1 {
                    let mut p: Vec<rusqlite::types::Value> = vec![start.into()];
                    for k in key..key + 100 {
                        p.extend([k.into(), (k % 50 + 1).into(), (k * 1_234).into()]);
                    }
                    stmt.execute(rusqlite::params_from_iter(p))?;
                    key += 100;
                }
            }
            tx.commit()?;
            if h % 24 == 23 {
                log::info!("query store: {} of {hours} hours written", h + 1);
            }
        }
    }
    log::info!(
        "query store written in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
