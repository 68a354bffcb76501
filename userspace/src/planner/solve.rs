//! `quid tariff simulate --solve`: the single contribution price that makes one plan's period
//! settle at zero, everything else as the simulated tariff has it.
//!
//! Rounding: each report's credit is floored (as settlement floors it), so the net moves in
//! steps and an exact zero may not be reachable. The answer is the smallest price (integer
//! micro-credits per unit) at which the plan's net for the period is zero or more: one
//! micro-credit less leaves the subscribers of the plan paying.

use serde::Serialize;

use super::period_books::PeriodBooks;
use super::simulate::{Subscriber, priced, subscribers};
use crate::ledger::tariff::Tariff;

/// A contribution price `--solve` can find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Price {
    CpuCoreHour,
    StorageGibDay,
    EnergyKwh,
}

impl Price {
    /// The tariff's key for it.
    pub fn name(self) -> &'static str {
        match self {
            Price::CpuCoreHour => "cpu_core_hour",
            Price::StorageGibDay => "storage_gib_day",
            Price::EnergyKwh => "energy_kwh",
        }
    }

    /// `t` with this price set to `rate`.
    fn with(self, t: &Tariff, rate: u64) -> Tariff {
        let mut t = t.clone();
        match self {
            Price::CpuCoreHour => t.cpu_core_hour = rate,
            Price::StorageGibDay => t.storage_gib_day = rate,
            Price::EnergyKwh => t.energy_kwh = rate,
        }
        t
    }
}

impl std::str::FromStr for Price {
    type Err = SolveError;

    fn from_str(s: &str) -> Result<Self, SolveError> {
        [Price::CpuCoreHour, Price::StorageGibDay, Price::EnergyKwh]
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| SolveError::Price(s.to_owned()))
    }
}

/// Why no price was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolveError {
    #[error(
        "`{0}` is not a price --solve can find: use cpu_core_hour, storage_gib_day or energy_kwh"
    )]
    Price(String),
    #[error(
        "no subscriber of plan `{0}` has usage, a settled report or an allowance in the period: name a plan the simulation lists"
    )]
    Plan(String),
    #[error(
        "even at the largest price quid records, plan `{plan}` still pays {net} micro-credits over the period: its contributions of this kind cannot balance its usage"
    )]
    Unreachable { plan: String, net: i128 },
}

/// The price found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Solution {
    pub plan: String,
    pub price: Price,
    /// Micro-credits per unit (core-hour, GiB-day, kWh).
    pub rate: u64,
    /// The plan's net for the period at `rate` (zero or more).
    pub net: i128,
    /// Its net at one micro-credit less (negative), when `rate` is above zero.
    pub net_below: Option<i128>,
}

/// The smallest `price` at which `plan`'s period nets to zero or more, the rest of the tariff
/// as `base` (reports disputed keep the share settled under `current`, as in the simulation).
pub fn solve(
    books: &PeriodBooks,
    current: &Tariff,
    base: &Tariff,
    price: Price,
    plan: &str,
) -> Result<Solution, SolveError> {
    let members: Vec<Subscriber<'_>> = subscribers(books)
        .into_iter()
        .filter(|s| books.plan(s.plan) == plan)
        .collect();
    if members.is_empty() {
        return Err(SolveError::Plan(plan.to_owned()));
    }
    let net = |rate: u64| -> i128 {
        let t = price.with(base, rate);
        members
            .iter()
            .map(|s| {
                let (d, c) = priced(&t, current, s.usage, s.reports, s.allowances);
                d + c
            })
            .sum()
    };
    // The net never falls as the price rises (every credit is a floor of amount × rate), so a
    // binary search over the rates a tariff may hold finds the least one that balances.
    let top = i64::MAX.unsigned_abs();
    if net(top) < 0 {
        return Err(SolveError::Unreachable {
            plan: plan.to_owned(),
            net: net(top),
        });
    }
    let (mut lo, mut hi) = (0u64, top);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if net(mid) >= 0 {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(Solution {
        plan: plan.to_owned(),
        price,
        rate: lo,
        net: net(lo),
        net_below: lo.checked_sub(1).map(net),
    })
}
