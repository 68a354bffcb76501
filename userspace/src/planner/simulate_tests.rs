#![cfg(test)]
//! Re-pricing and solving on a period whose figures are worked out by hand below.

use quid_common::{CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters, pair_index};

use super::{
    period_books::PeriodBooks,
    simulate::{PlanFigures, SignChange, Totals, UNKNOWN_PLAN, simulate},
    solve::{Price, SolveError, solve},
};
use crate::{ledger::tariff::Tariff, settlement::outcome::Outcome, store::SettledReport};

/// Core-microseconds in a core-hour.
const CORE_HOUR: u64 = 3_600_000_000;

fn current() -> Tariff {
    Tariff {
        download_internet_gb: 10_000,
        upload_internet_gb: 5_000,
        cpu_core_hour: 20_000,
        monthly_allowance: 1_000_000,
        ..Tariff::default()
    }
}

fn new() -> Tariff {
    Tariff {
        download_internet_gb: 20_000,
        upload_internet_gb: 5_000,
        cpu_core_hour: 50_000,
        ..Tariff::default()
    }
}

fn usage(down: u64, up: u64) -> SubscriberCounters {
    let mut c = SubscriberCounters::default();
    c.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes = down;
    c.pairs[pair_index(DIR_UPLOAD, CLASS_INTERNET)].bytes = up;
    c
}

fn report(subscriber: &str, outcome: Outcome, cpu: u64, credit: i64) -> SettledReport {
    SettledReport {
        subscriber: subscriber.into(),
        key: None,
        period_end: 0,
        outcome,
        cpu_core_micros: cpu,
        storage_byte_seconds: 0,
        energy_microjoules: 0,
        credit,
    }
}

/// alice (1) and bob (2) on `home`, carol (3) on `pro`, dave never in the table.
fn books() -> PeriodBooks {
    let (home, pro, unknown) = (0, 1, 2);
    PeriodBooks {
        plans: vec!["home".into(), "pro".into(), UNKNOWN_PLAN.into()],
        usage: vec![
            (1, home, usage(100_000_000_001, 10_000_000_000)),
            (2, home, usage(50_000_000_000, 0)),
            (3, pro, usage(20_000_100_000, 0)),
        ],
        reports: vec![
            (
                -1,
                unknown,
                report("dave", Outcome::Matched, CORE_HOUR + 1, 20_000),
            ),
            // Disputed with nothing earned: earns nothing at any price.
            (
                -1,
                unknown,
                report("dave", Outcome::Disputed, 10 * CORE_HOUR, 0),
            ),
            (
                2,
                home,
                report("bob", Outcome::Matched, 100 * CORE_HOUR, 2_000_000),
            ),
            // Settled at half its full 200,000 (capped).
            (
                3,
                pro,
                report("carol", Outcome::Disputed, 10 * CORE_HOUR, 100_000),
            ),
        ],
        allowances: vec![(1, home, 1), (2, home, 1), (3, pro, 1)],
        unknown: vec!["dave".into()],
        ids: [(1, "alice".into()), (2, "bob".into()), (3, "carol".into())].into(),
    }
}

fn totals(debits: i128, credits: i128, net: i128) -> Totals {
    assert_eq!(debits + credits, net, "the hand figures add up");
    Totals {
        debits,
        credits,
        net,
    }
}

fn plan(name: &str, subscribers: u64, before: Totals, after: Totals) -> PlanFigures {
    PlanFigures {
        plan: name.into(),
        subscribers,
        before,
        after,
    }
}

/// alice: 100 GB + 1 byte down (the byte floors away), 10 GB up, an allowance:
///   before -1,000,000 - 50,000 + 1,000,000 = -50,000; after -2,000,000 - 50,000 = -2,050,000.
/// bob: 50 GB down, an allowance, 100 core-hours matched:
///   before -500,000 + 1,000,000 + 2,000,000 = 2,500,000; after -1,000,000 + 5,000,000.
/// carol: 20.0001 GB down, an allowance, 10 core-hours disputed at half:
///   before -200,001 + 1,000,000 + 100,000 = 899,999; after -400,002 + 250,000 = -150,002.
/// dave: one core-hour and a microsecond matched (floored to 20,000, then 50,000).
#[test]
fn a_period_reprices_per_plan_and_fleet_with_the_sign_changes() {
    let sim = simulate(&books(), &current(), &new());
    assert_eq!(
        sim.plans,
        vec![
            plan(
                UNKNOWN_PLAN,
                1,
                totals(0, 20_000, 20_000),
                totals(0, 50_000, 50_000)
            ),
            plan(
                "home",
                2,
                totals(-1_550_000, 4_000_000, 2_450_000),
                totals(-3_050_000, 5_000_000, 1_950_000)
            ),
            plan(
                "pro",
                1,
                totals(-200_001, 1_100_000, 899_999),
                totals(-400_002, 250_000, -150_002)
            ),
        ]
    );
    assert_eq!(
        sim.fleet,
        plan(
            "fleet",
            4,
            totals(-1_750_001, 5_120_000, 3_369_999),
            totals(-3_450_002, 5_300_000, 1_849_998)
        )
    );
    assert_eq!(
        sim.sign_changes,
        vec![SignChange {
            sub: 3,
            subscriber: "carol".into(),
            plan: "pro".into(),
            before: 899_999,
            after: -150_002,
        }]
    );
    // The same tariff on both sides changes nothing.
    let same = simulate(&books(), &current(), &current());
    assert!(same.sign_changes.is_empty());
    assert_eq!(same.fleet.before, same.fleet.after);
}

/// pro under the new tariff: carol earns half of 10 core-hours, 5p, against 400,002 of debits:
/// p = 80,001 nets 3, 80,000 nets -2. home: bob's 100 core-hours, 100p, against 3,050,000:
/// exactly 30,500.
#[test]
fn solve_finds_the_least_price_that_balances_a_plan() {
    let b = books();
    let pro = solve(&b, &current(), &new(), Price::CpuCoreHour, "pro").unwrap();
    assert_eq!((pro.rate, pro.net, pro.net_below), (80_001, 3, Some(-2)));
    let home = solve(&b, &current(), &new(), Price::CpuCoreHour, "home").unwrap();
    assert_eq!(
        (home.rate, home.net, home.net_below),
        (30_500, 0, Some(-100))
    );
    // home already balances on its CPU credit: no storage price is needed.
    let free = solve(&b, &current(), &new(), Price::StorageGibDay, "home").unwrap();
    assert_eq!((free.rate, free.net_below), (0, None));
    assert_eq!(
        solve(&b, &current(), &new(), Price::StorageGibDay, "pro"),
        Err(SolveError::Unreachable {
            plan: "pro".into(),
            net: -150_002
        })
    );
    assert_eq!(
        solve(&b, &current(), &new(), Price::CpuCoreHour, "gold"),
        Err(SolveError::Plan("gold".into()))
    );
    assert_eq!("energy_kwh".parse(), Ok(Price::EnergyKwh));
    assert!("cpu".parse::<Price>().is_err());
}
