#![cfg(test)]
//! A simulated year through the real books: 24 subscribers on three plans, hourly intervals on
//! a manual clock from 2025-12-01 to 2026-12-01, traffic with a daily and a weekly cycle on a
//! steady rise, three nodes reporting every day and settled against the meter, daily debits,
//! monthly allowances and the roll-up into days as the daemon runs them. One subscriber moves
//! from `basic` to `pro` in the middle of November 2026 (13:20, inside an hour). November's
//! report, its re-pricing, `--solve` and the uplink forecast are checked against figures worked
//! out here from the traffic and the reports given, by the rules the docs state.

use std::collections::BTreeMap;

use quid_common::{
    CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters, pair_index,
};

use super::{
    month_fold,
    percentile::nearest_rank,
    period_books,
    report::{Directions, ReadFrom, Report, SubscriberP95, report, report_from_rows},
    simulate::{PlanFigures, Totals, simulate},
    solve::{Price, solve},
    uplink::uplink,
};
use crate::{
    clock::{Clock, month_bounds, rfc3339},
    kernel::subscriber_maps::Slots,
    ledger::tariff::Tariff,
    metering::interval::Books,
    settlement::{
        matching::SettlementConfig,
        nodes::{Node, Nodes},
        report::{Period, Report as NodeReport},
    },
    store::{Retention, Store},
    subscribers::table::Table,
};

/// 2025-12-01T00:00:00Z: the books start a year before December 2026.
const START: i64 = 1_764_547_200;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// Hours from START to 2026-12-01.
const YEAR_HOURS: usize = 365 * 24;
/// 2026-11-01T00:00:00Z, the month reported.
const NOV: i64 = 1_793_491_200;
const DEC: i64 = NOV + 30 * DAY;
/// November's first hour, counted from START (335 days after December 1st).
const NOV_HOUR: usize = 335 * 24;
const _: () = assert!(START + 335 * DAY == NOV);
const N: usize = 24;
/// The subscriber that changes plan, and when (inside an hour: it counts from the next).
const MOVER: usize = 5;
const MOVE_AT: i64 = NOV + 13 * DAY + 13 * HOUR + 20 * 60;
/// The subscribers with a node, and the node's daily CPU: two cores busy all day.
const NODES: [usize; 3] = [MOVER, 20, 21];
const CPU: u64 = 2 * 86_399 * 1_000_000;
/// Core-microseconds in a core-hour.
const CORE_HOUR: u128 = 3_600_000_000;
const GB: u128 = 1_000_000_000;

/// A count of hours or days as a factor of seconds.
fn secs(n: usize) -> i64 {
    i64::try_from(n).unwrap()
}

fn id(s: usize) -> String {
    format!("sub{s:02}")
}

/// Subscriber `s`'s plan at unix time `t`.
fn plan_at(s: usize, t: i64) -> &'static str {
    match s {
        MOVER if t >= MOVE_AT => "pro",
        0..12 => "basic",
        12..20 => "home",
        _ => "pro",
    }
}

/// The plan an hour starting at `t` is attributed to: the one in force when it began.
fn hour_plan(s: usize, t: i64) -> &'static str {
    plan_at(s, t)
}

/// Mean of the day's cycle (milli-points), hour by hour (UTC): quiet nights, a busy evening.
const DAILY: [u64; 24] = [
    30, 20, 15, 12, 10, 12, 20, 35, 50, 55, 55, 60, 65, 60, 60, 65, 70, 80, 95, 110, 120, 100, 70,
    45,
];

/// Subscriber `s`'s Internet (down, up) and grid down bytes in hour `t` (hours since START;
/// defined beyond the year too, for the truth the forecast is held to). Additive: a level
/// rising 100 points a year from 100, the day's cycle, weekends busier, a small wobble.
fn traffic(s: usize, t: usize) -> (u64, u64, u64) {
    let t64 = t as u64;
    let level = 100_000 + t64 * 100_000 / YEAR_HOURS as u64;
    let weekend = if (t / 24) % 7 >= 5 { 15_000 } else { 0 };
    let milli = level + DAILY[t % 24] * 1_000 + weekend;
    // Bytes per milli-point: 1 kB, 2 kB ... by subscriber, pro subscribers three times that.
    let unit = (1 + (s % 5) as u64) * 1_000 * if s >= 20 { 3 } else { 1 };
    let wobble = ((t64 * 7_919 + s as u64 * 104_729) % 13) * 10_000;
    let down = unit * milli + wobble;
    let grid = if NODES.contains(&s) {
        20_000_000 + s as u64 * 1_000
    } else {
        0
    };
    (down, down / 8, grid)
}

fn counters(down: u64, up: u64, grid: u64) -> SubscriberCounters {
    let mut c = SubscriberCounters::default();
    c.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes = down;
    c.pairs[pair_index(DIR_UPLOAD, CLASS_INTERNET)].bytes = up;
    c.pairs[pair_index(DIR_DOWNLOAD, CLASS_GRID)].bytes = grid;
    c
}

fn table(at: i64) -> Table {
    let mut text = String::from("id,name,plan,prefixes\n");
    for s in 0..N {
        text += &format!("{},S{s},{},100.64.0.{}\n", id(s), plan_at(s, at), s + 1);
    }
    Table::parse(text.as_bytes(), "t.csv".as_ref()).unwrap()
}

fn tariff() -> Tariff {
    Tariff {
        download_internet_gb: 10_000,
        upload_internet_gb: 5_000,
        cpu_core_hour: 20_000,
        // Enough that the lightest subscribers end the month ahead; the new tariff has none.
        monthly_allowance: 5_000_000,
        ..Tariff::default()
    }
}

/// The tariff the re-pricing tries: dearer downloads, dearer CPU, no allowance.
fn new_tariff() -> Tariff {
    Tariff {
        download_internet_gb: 20_000,
        upload_internet_gb: 5_000,
        cpu_core_hour: 30_000,
        ..Tariff::default()
    }
}

fn node_key(s: usize) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[u8::try_from(s + 1).unwrap(); 32])
}

fn node_id(s: usize) -> String {
    format!("node-{s}")
}

/// Runs the year through the books; returns the store's directory.
fn year() -> tempfile::TempDir {
    // In memory where the system has it: 9,000 commits, each synced, are the test's slowest part
    // on a disk, and durability is not what it checks.
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let clock = Clock::manual(START);
    let (mut books, _) =
        Books::open(Store::open(dir.path()).unwrap(), 1, false, clock.clone()).unwrap();
    books.tariff = tariff();
    let slots = Slots::from_assignments((0..N).map(|s| (id(s), u32::try_from(s).unwrap())));
    let secs = |t: i64| u64::try_from(t).unwrap();
    books
        .install_at(&table(START), &slots, &[], secs(START))
        .unwrap();
    let ids: Vec<String> = NODES.iter().map(|&s| node_id(s)).collect();
    books
        .store_mut()
        .nodes_seen(ids.iter().map(String::as_str), START)
        .unwrap();
    let nodes = Nodes::from_iter(NODES.map(|s| Node {
        id: node_id(s),
        subscriber: id(s),
        key: node_key(s).verifying_key(),
        cpu_cores: 4,
        storage_bytes: 0,
        max_watts: 0,
    }));
    let rules = SettlementConfig::default();
    let keep = Retention::default();
    let mut totals = [SubscriberCounters::default(); N];
    let mut moved = false;
    // The year and one hour more: December's first interval debits November 30th.
    for t in 0..=YEAR_HOURS {
        let now = START + HOUR * i64::try_from(t + 1).unwrap();
        if !moved && now > MOVE_AT {
            clock.set(MOVE_AT);
            books
                .install_at(&table(MOVE_AT), &slots, &[], secs(MOVE_AT))
                .unwrap();
            moved = true;
        }
        for (s, c) in totals.iter_mut().enumerate() {
            let (down, up, grid) = traffic(s, t);
            c.add(&counters(down, up, grid));
        }
        clock.set(now);
        let snapshot = totals;
        books.interval(|slot| snapshot[slot], secs(now)).unwrap();
        if (now - START) % DAY != 0 {
            continue;
        }
        // Midnight: each node reports the day just ended, settled against the meter; then the
        // roll-up the daemon runs between intervals.
        let start = now - DAY;
        let day = u64::try_from((start - START) / DAY).unwrap();
        for &s in &NODES {
            let mut r = NodeReport {
                node: node_id(s),
                seq: day + 1,
                period_start: crate::settlement::report::rfc3339(start),
                period_end: crate::settlement::report::rfc3339(start + DAY - 1),
                cpu_core_micros: CPU,
                storage_byte_seconds: 0,
                energy_microjoules: 0,
                energy_source: None,
                grid_bytes_sent: 0,
                grid_bytes_received: 24 * traffic(s, 0).2,
                signature: String::new(),
            };
            r.sign(&node_key(s)).unwrap();
            let p = Period {
                start,
                end: start + DAY - 1,
            };
            books.store_mut().insert_report(&r, p, now, &id(s)).unwrap();
        }
        let settled = books
            .settle(
                &nodes,
                &rules,
                crate::settlement::matching::StorageProof::Declared,
            )
            .unwrap();
        assert_eq!(settled.len(), NODES.len(), "{settled:?}");
        assert!(
            settled
                .iter()
                .all(|x| x.outcome == crate::settlement::outcome::Outcome::Matched),
            "{settled:?}"
        );
        // The daemon folds the closed day into the month digests before the roll-up.
        let folded = month_fold::fold(books.store(), std::time::Duration::MAX).unwrap();
        assert!(folded.caught_up && folded.days == 1, "{folded:?} at {now}");
        while !books.roll_up(&keep).unwrap().done {}
    }
    dir
}

/// The months before November, most recent first.
fn previous() -> Vec<(i64, i64)> {
    ["2026-10", "2026-09", "2026-08"]
        .iter()
        .map(|m| month_bounds(m).unwrap())
        .collect()
}

/// Debit due for cumulative counters (one floor per class, as the ledger prices them).
fn due(t: &Tariff, down: u128, up: u128) -> i128 {
    i128::try_from(
        down * u128::from(t.download_internet_gb) / GB + up * u128::from(t.upload_internet_gb) / GB,
    )
    .unwrap()
}

fn credit(t: &Tariff) -> i128 {
    i128::try_from(u128::from(CPU) * u128::from(t.cpu_core_hour) / CORE_HOUR).unwrap()
}

/// What each plan's November should show, worked out from `traffic` and the rules.
#[derive(Default, Debug)]
struct Expected {
    /// Internet down, up; grid down.
    bytes: (u64, u64, u64),
    hourly: Vec<Directions>,
    active: std::collections::BTreeSet<usize>,
    contributing: std::collections::BTreeSet<usize>,
    reports: u64,
    credits: i128,
    debits: i128,
    previous: Vec<u64>,
}

fn expected() -> BTreeMap<&'static str, Expected> {
    let mut plans: BTreeMap<&'static str, Expected> = BTreeMap::new();
    let hours = usize::try_from((DEC - NOV) / HOUR).unwrap();
    for p in ["basic", "home", "pro"] {
        plans.insert(
            p,
            Expected {
                hourly: vec![Directions::default(); hours],
                previous: vec![0; 3],
                ..Expected::default()
            },
        );
    }
    let at = |t: usize| START + HOUR * i64::try_from(t).unwrap();
    for s in 0..N {
        // Cumulative Internet bytes at each midnight, for the daily debits.
        let mut cum = (0u128, 0u128);
        let mut at_midnight = Vec::new();
        for t in 0..YEAR_HOURS {
            let (down, up, grid) = traffic(s, t);
            let start = at(t);
            let e = plans.get_mut(hour_plan(s, start)).unwrap();
            if t >= NOV_HOUR {
                let h = t - NOV_HOUR;
                e.bytes.0 += down;
                e.bytes.1 += up;
                e.bytes.2 += grid;
                e.hourly[h].add(Directions {
                    down: down + grid,
                    up,
                });
                e.active.insert(s);
            }
            for (i, (from, to)) in previous().into_iter().enumerate() {
                if (from..to).contains(&start) {
                    e.previous[i] += down + up + grid;
                }
            }
            cum.0 += u128::from(down);
            cum.1 += u128::from(up);
            if (t + 1) % 24 == 0 {
                at_midnight.push(cum);
            }
        }
        // One debit a day, dated the day's last second, for the day's rise of what is due.
        let t = tariff();
        for d in 0..365 {
            let dated = START + DAY * secs(d + 1) - 1;
            if !(NOV..DEC).contains(&dated) {
                continue;
            }
            let (a, b) = (at_midnight[d - 1], at_midnight[d]);
            let debit = due(&t, b.0, b.1) - due(&t, a.0, a.1);
            plans.get_mut(plan_at(s, dated)).unwrap().debits -= debit;
        }
        // The allowance, granted at November's first interval (its first second).
        plans.get_mut(plan_at(s, NOV)).unwrap().credits += i128::from(tariff().monthly_allowance);
        if NODES.contains(&s) {
            for d in 0..365 {
                let start = START + DAY * d;
                let end = start + DAY - 1;
                // Counted by the statement of the month its period ends in, on the plan at
                // its last second; credited when settled (the next midnight), on the plan
                // then.
                if (NOV + 1..=DEC).contains(&end) {
                    let e = plans.get_mut(plan_at(s, end - 1)).unwrap();
                    e.reports += 1;
                    e.contributing.insert(s);
                }
                let settled = start + DAY;
                if (NOV..DEC).contains(&settled) {
                    plans.get_mut(plan_at(s, settled)).unwrap().credits += credit(&t);
                }
            }
        }
    }
    plans
}

fn p95(values: impl Iterator<Item = u64>) -> u64 {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    // Nearest rank: ceil(0.95 × 720) = 684th smallest.
    assert_eq!(v.len(), 720);
    v[684 - 1]
}

/// Each subscriber's (down, up) November hours, both classes.
fn own_hours(s: usize) -> Vec<Directions> {
    (NOV_HOUR..NOV_HOUR + 720)
        .map(|t| {
            let (down, up, grid) = traffic(s, t);
            Directions {
                down: down + grid,
                up,
            }
        })
        .collect()
}

fn run(dir: &tempfile::TempDir) -> (Report, Vec<SubscriberP95>) {
    let store = Store::open(dir.path()).unwrap();
    let mut lines = Vec::new();
    let r = report(&store, NOV, DEC, &previous(), |l| lines.push(l.clone())).unwrap();
    (r, lines)
}

/// The fleet's hourly Internet bytes in the busier direction (downloads), hour `t` from START.
fn fleet_down(t: usize) -> u64 {
    (0..N).map(|s| traffic(s, t).0).sum()
}

fn month_of(t: i64) -> String {
    rfc3339(t).unwrap()[..7].to_owned()
}

/// Months from 2026-01 to `m` (YYYY-MM).
fn month_number(m: &str) -> i64 {
    let (y, mo) = m.split_at(4);
    y.parse::<i64>().unwrap() * 12 + mo[1..].parse::<i64>().unwrap()
}

#[test]
fn a_simulated_year_reports_its_november_exactly() {
    let began = std::time::Instant::now();
    let dir = year();
    let simulated = began.elapsed();
    eprintln!("simulated year: books written in {simulated:?}");
    let (r, lines) = run(&dir);
    let want = expected();
    let store = Store::open(dir.path()).unwrap();

    // November is read from its month digests, and they give exactly what the hourly rows
    // give (the previous months' bytes too: from the plan-hours, against the rows).
    assert_eq!(r.read_from, ReadFrom::MonthDigests);
    let mut row_lines = Vec::new();
    let from_rows = report_from_rows(&store, NOV, DEC, &previous(), |l| {
        row_lines.push(l.clone());
    })
    .unwrap();
    assert_eq!(from_rows.read_from, ReadFrom::HourlyRows);
    assert_eq!(
        Report {
            read_from: ReadFrom::MonthDigests,
            ..from_rows
        },
        r
    );
    assert_eq!(row_lines, lines);
    // A period that is not one whole month is read from the rows.
    let half = report(&store, NOV, NOV + 15 * DAY, &[], |_| {}).unwrap();
    assert_eq!(half.read_from, ReadFrom::HourlyRows);

    // The hourly rows of November are all still held; October's older days are rolled up.
    assert_eq!((r.hours_from, r.hours_to), (NOV, DEC));
    let names: Vec<&str> = r.plans.iter().map(|p| p.plan.as_str()).collect();
    assert_eq!(names, ["basic", "home", "pro"]);
    for p in &r.plans {
        let e = &want[p.plan.as_str()];
        let plan = &p.plan;
        assert_eq!(
            p.bytes.internet,
            Directions {
                down: e.bytes.0,
                up: e.bytes.1
            },
            "{plan}"
        );
        assert_eq!(
            p.bytes.grid,
            Directions {
                down: e.bytes.2,
                up: 0
            },
            "{plan}"
        );
        assert_eq!(p.active, e.active.len() as u64, "{plan}");
        assert_eq!(p.contributing, e.contributing.len() as u64, "{plan}");
        assert_eq!(p.contributions.reports, e.reports, "{plan}");
        assert_eq!(p.contributions.cpu_core_micros, e.reports * CPU, "{plan}");
        assert_eq!((p.credits, p.debits), (e.credits, e.debits), "{plan}");
        assert_eq!(p.net, e.credits + e.debits, "{plan}");
        // The plan's 95th percentile of its hourly bytes, idle hours counting.
        assert_eq!(
            p.p95_hour.down,
            p95(e.hourly.iter().map(|d| d.down)),
            "{plan}"
        );
        assert_eq!(p.p95_hour.up, p95(e.hourly.iter().map(|d| d.up)), "{plan}");
        // The months before: rolled-up days and the hours still held, on the plan of then.
        assert_eq!(p.previous_bytes, e.previous, "{plan}");
    }
    // The mover counts in both plans, once in the fleet.
    assert_eq!(
        (want["basic"].active.len(), want["pro"].active.len()),
        (12, 5)
    );
    assert_eq!(r.fleet.active, N as u64);
    assert_eq!(r.fleet.contributing, NODES.len() as u64);
    assert_eq!(
        r.fleet.credits,
        want.values().map(|e| e.credits).sum::<i128>()
    );

    // The peak hour and the busy hour of the day.
    let fleet: Vec<Directions> = (0..720)
        .map(|h| {
            let mut d = Directions::default();
            for e in want.values() {
                d.add(e.hourly[h]);
            }
            d
        })
        .collect();
    let peak = (0..720)
        .max_by_key(|&h| (fleet[h].total(), std::cmp::Reverse(h)))
        .unwrap();
    assert_eq!(r.peak_hour, Some(NOV + HOUR * secs(peak)));
    assert_eq!(r.fleet.peak_hour, fleet[peak]);
    assert_eq!(r.busy_hour_of_day, Some(20));
    for p in &r.plans {
        let e = &want[p.plan.as_str()];
        let sum: u64 = (0..30).map(|d| e.hourly[d * 24 + 20].down).sum();
        assert_eq!(p.busy_hour_average.down, sum / 30, "{}", p.plan);
        assert_eq!(p.peak_hour, e.hourly[peak], "{}", p.plan);
    }

    // Each subscriber's own 95th percentile, and each plan's median and largest of them
    // (subscribers under their plan at the month's end).
    let keys: BTreeMap<String, i64> = store
        .records()
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.base.key))
        .collect();
    assert_eq!(lines.len(), N);
    let mut own: BTreeMap<&str, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for s in 0..N {
        let line = lines.iter().find(|l| l.key == keys[&id(s)]).unwrap();
        let hours = own_hours(s);
        let want_p95 = Directions {
            down: p95(hours.iter().map(|d| d.down)),
            up: p95(hours.iter().map(|d| d.up)),
        };
        assert_eq!(line.p95_hour, want_p95, "{}", id(s));
        let o = own.entry(plan_at(s, DEC - 1)).or_default();
        o.0.push(want_p95.down);
        o.1.push(want_p95.up);
    }
    for p in &r.plans {
        let (down, up) = own.get_mut(p.plan.as_str()).unwrap();
        assert_eq!(
            p.subscriber_p95_max.down,
            *down.iter().max().unwrap(),
            "{}",
            p.plan
        );
        assert_eq!(
            p.subscriber_p95_median,
            Directions {
                down: nearest_rank(down, 50),
                up: nearest_rank(up, 50)
            },
            "{}",
            p.plan
        );
    }

    repricing_and_solve(&store);
    uplink_crossing(&r);
    eprintln!("simulated year: all checked in {:?}", began.elapsed());
}

/// `tariff simulate` and `--solve` on November, against the month's totals priced by hand.
fn repricing_and_solve(store: &Store) {
    let books = period_books::read(store, NOV, DEC).unwrap();
    let (current, new) = (tariff(), new_tariff());
    let sim = simulate(&books, &current, &new);
    // Per (plan, subscriber): the month's usage on it, its allowances and its reports.
    #[derive(Default)]
    struct Part {
        down: u128,
        up: u128,
        allowances: i128,
        reports: i128,
    }
    let mut parts: BTreeMap<(&str, usize), Part> = BTreeMap::new();
    for s in 0..N {
        for t in NOV_HOUR..NOV_HOUR + 720 {
            let (down, up, _) = traffic(s, t);
            let p = parts
                .entry((hour_plan(s, START + HOUR * secs(t)), s))
                .or_default();
            p.down += u128::from(down);
            p.up += u128::from(up);
        }
        parts.entry((plan_at(s, NOV), s)).or_default().allowances += 1;
        if NODES.contains(&s) {
            for d in 0..30 {
                let end = NOV + DAY * d + DAY - 1;
                parts.entry((plan_at(s, end - 1), s)).or_default().reports += 1;
            }
        }
    }
    let priced = |t: &Tariff, p: &Part| -> (i128, i128) {
        (
            -due(t, p.down, p.up),
            p.allowances * i128::from(t.monthly_allowance) + p.reports * credit(t),
        )
    };
    let mut want: BTreeMap<&str, PlanFigures> = BTreeMap::new();
    let mut fleet = PlanFigures {
        plan: "fleet".into(),
        subscribers: N as u64,
        ..PlanFigures::default()
    };
    let add = |to: &mut Totals, (d, c): (i128, i128)| {
        to.debits += d;
        to.credits += c;
        to.net += d + c;
    };
    for ((plan, _), part) in &parts {
        let f = want.entry(plan).or_insert_with(|| PlanFigures {
            plan: (*plan).to_owned(),
            ..PlanFigures::default()
        });
        f.subscribers += 1;
        add(&mut f.before, priced(&current, part));
        add(&mut f.after, priced(&new, part));
        add(&mut fleet.before, priced(&current, part));
        add(&mut fleet.after, priced(&new, part));
    }
    assert_eq!(sim.plans, want.into_values().collect::<Vec<_>>());
    assert_eq!(sim.fleet, fleet);
    // The ledger's own debits (priced day by day, each on the plan of its date) against the
    // month priced whole (hour by hour on the plan of the hour): for the fleet, under one
    // micro-credit per class and subscriber-plan.
    let r = run_report(store);
    assert!((r.fleet.debits - sim.fleet.before.debits).abs() <= 2 * 25);
    assert_ne!(r.fleet.debits, 0);
    // The subscribers whose month (all their plans together) changes sign.
    let mut nets: BTreeMap<usize, (i128, i128)> = BTreeMap::new();
    for ((_, s), part) in &parts {
        let (b, a) = (priced(&current, part), priced(&new, part));
        let e = nets.entry(*s).or_default();
        e.0 += b.0 + b.1;
        e.1 += a.0 + a.1;
    }
    let flips = nets
        .values()
        .filter(|(b, a)| b.signum() != a.signum())
        .count();
    assert!(flips > 0);
    assert_eq!(sim.sign_changes.len(), flips);

    // pro pays its usage from CPU alone: the least price per core-hour at which its month nets
    // to zero. With n reports of CPU core-microseconds each, the net at rate r is
    // debits + n × floor(CPU × r / core-hour); the least r for which that is ≥ 0 is
    // ceil(k × core-hour / CPU) for k = ceil(-debits / n).
    let pro: Vec<&Part> = parts
        .iter()
        .filter(|((p, _), _)| *p == "pro")
        .map(|(_, part)| part)
        .collect();
    let debits: i128 = pro.iter().map(|p| -due(&new, p.down, p.up)).sum();
    let n: i128 = pro.iter().map(|p| p.reports).sum();
    assert_eq!(
        n,
        30 * 2 + 17,
        "two nodes all month, the mover's from November 14th"
    );
    let k = u128::try_from((-debits + n - 1) / n).unwrap();
    let rate = (k * CORE_HOUR).div_ceil(u128::from(CPU));
    let net = |r: u128| debits + n * i128::try_from(u128::from(CPU) * r / CORE_HOUR).unwrap();
    let solved = solve(&books, &current, &new, Price::CpuCoreHour, "pro").unwrap();
    assert_eq!(u128::from(solved.rate), rate);
    assert_eq!(solved.net, net(rate));
    assert_eq!(solved.net_below, Some(net(rate - 1)));
    assert!(net(rate) >= 0 && net(rate - 1) < 0);
}

fn run_report(store: &Store) -> Report {
    report(store, NOV, DEC, &previous(), |_| {}).unwrap()
}

/// The uplinks sized so that the planted evening peak passes 80 % of them in February 2027:
/// the forecast from November's hours finds the month within one.
fn uplink_crossing(r: &Report) {
    let bps = |bytes: u64| bytes as f64 * 8.0 / 3_600.0;
    let hour_of = |t: i64| usize::try_from((t - START) / HOUR).unwrap();
    // The capacity whose 80 % the busiest hour of the week to 2027-02-15 reaches (a weekend
    // evening), so that the next weekend's evening passes it.
    let feb15 = month_bounds("2027-02").unwrap().0 + 14 * DAY;
    let busiest = (hour_of(feb15 - 7 * DAY)..hour_of(feb15))
        .map(fleet_down)
        .max()
        .unwrap();
    let capacity = busiest * 8 * 100 / (3_600 * 80);
    // The truth: the first hour after November whose demand passes 80 %.
    let truth = (hour_of(DEC)..hour_of(DEC) + 24 * 400)
        .find(|&t| bps(fleet_down(t)) > 0.8 * capacity as f64)
        .unwrap();
    let planted = month_of(START + HOUR * secs(truth));
    assert_eq!(planted, "2027-02");
    let u = uplink(r, capacity, 80.0);
    let found = u.crossing_month.clone().expect("a crossing within a year");
    eprintln!("uplink: planted crossing {planted}, forecast {found}");
    assert!(
        (month_number(&found) - month_number(&planted)).abs() <= 1,
        "forecast {found}, planted {planted}: {u:?}"
    );
    // November's own peak and 95th percentile against the same capacity.
    let nov: Vec<u64> = (NOV_HOUR..NOV_HOUR + 720).map(fleet_down).collect();
    let percent = |b: u64| bps(b) * 100.0 / capacity as f64;
    assert!((u.peak_percent - percent(*nov.iter().max().unwrap())).abs() < 1e-9);
    assert!((u.p95_percent - percent(p95(nov.iter().copied()))).abs() < 1e-9);
}
