//! `quid tariff simulate`: a period's real usage and settled contributions priced under the
//! current tariff and under another, per plan and for the fleet, with the subscribers whose
//! balance for the period changes sign. Prices come from [`Tariff::usage_debit`] and
//! [`Tariff::contribution_credit`], the functions settlement itself uses.
//!
//! Rounding: a subscriber's debit is priced on the period's total bytes per class (floored
//! once per class), where the ledger prices cumulative totals interval by interval; the two
//! differ by less than one micro-credit per class and subscriber. Each report is priced on
//! its own, floored, as settlement does.

use std::collections::BTreeMap;

use quid_common::SubscriberCounters;
use serde::Serialize;

use crate::{
    ledger::tariff::Tariff,
    settlement::outcome::Outcome,
    store::{SettledReport, Store, StoreError},
};

use super::period_books::{self, PeriodBooks, Plan, Sub};

pub use super::plan_attribution::UNKNOWN_PLAN;

/// Debits, credits and net of some subscribers under one tariff (micro-credits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Usage debits (zero or negative).
    pub debits: i128,
    /// Contribution credits and allowances.
    pub credits: i128,
    /// credits + debits: what the subscribers gained (positive) or paid (negative).
    pub net: i128,
}

impl Totals {
    fn add(&mut self, debit: i128, credit: i128) {
        self.debits += debit;
        self.credits += credit;
        self.net += debit + credit;
    }
}

/// One plan's (or the fleet's) figures before and after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanFigures {
    pub plan: String,
    /// Subscribers with usage, a settled report or an allowance in the period (one on two
    /// plans in the period counts in both plans, once in the fleet).
    pub subscribers: u64,
    pub before: Totals,
    pub after: Totals,
}

/// A subscriber whose net for the period changes sign (negative, zero, positive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignChange {
    /// Its number in the period's books.
    #[serde(skip)]
    pub sub: Sub,
    /// Its id (`#key` until [`named`] looks it up).
    pub subscriber: String,
    /// The plans it was on in the period, comma-separated.
    pub plan: String,
    pub before: i128,
    pub after: i128,
}

/// The whole comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Simulation {
    /// Per plan, by name.
    pub plans: Vec<PlanFigures>,
    pub fleet: PlanFigures,
    /// By subscriber id.
    pub sign_changes: Vec<SignChange>,
}

/// A subscriber's figures under one tariff: (debit, credit).
pub(super) fn priced(
    t: &Tariff,
    current: &Tariff,
    usage: Option<&SubscriberCounters>,
    reports: &[(Sub, Plan, SettledReport)],
    allowances: u64,
) -> (i128, i128) {
    let debit = usage.map_or(0, |u| {
        i128::from(t.usage_debit(&SubscriberCounters::default(), u))
    });
    let mut credit = i128::from(allowances) * i128::from(t.monthly_allowance);
    for (_, _, r) in reports {
        credit += report_credit(t, current, r);
    }
    (debit, credit)
}

/// What report `r` earns under `t`. A matched report earns its full price; a disputed one the
/// share of its full price it was settled at under `current` (its recorded credit over that
/// price: all, a capped part, or nothing), so the re-pricing keeps each settlement's judgement.
pub fn report_credit(t: &Tariff, current: &Tariff, r: &SettledReport) -> i128 {
    let full = |t: &Tariff| {
        i128::from(t.contribution_credit(
            r.cpu_core_micros,
            r.storage_byte_seconds,
            r.energy_microjoules,
        ))
    };
    let new = full(t);
    match r.outcome {
        Outcome::Matched => new,
        Outcome::Disputed => {
            let old = full(current);
            let got = i128::from(r.credit.max(0));
            if old > 0 {
                // Both below 2^63: the product fits in i128.
                new * got.min(old) / old
            } else if got > 0 {
                new
            } else {
                0
            }
        }
        Outcome::Pending | Outcome::Unmetered => 0,
    }
}

/// A subscriber on one plan in the period, with its usage, reports and allowances under it.
pub struct Subscriber<'a> {
    pub sub: Sub,
    pub plan: Plan,
    pub usage: Option<&'a SubscriberCounters>,
    pub reports: &'a [(Sub, Plan, SettledReport)],
    pub allowances: u64,
}

/// The (subscriber, plan) pairs with anything in the period, in that order.
pub fn subscribers(books: &PeriodBooks) -> Vec<Subscriber<'_>> {
    let mut pairs: Vec<(Sub, Plan)> = books
        .usage
        .iter()
        .map(|u| (u.0, u.1))
        .chain(books.allowances.iter().map(|a| (a.0, a.1)))
        .chain(books.reports.iter().map(|r| (r.0, r.1)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
        .into_iter()
        .map(|(sub, plan)| {
            let usage = books
                .usage
                .binary_search_by_key(&(sub, plan), |u| (u.0, u.1))
                .ok()
                .map(|i| &books.usage[i].2);
            let allowances = books
                .allowances
                .binary_search_by_key(&(sub, plan), |a| (a.0, a.1))
                .map_or(0, |i| books.allowances[i].2);
            let first = books.reports.partition_point(|r| (r.0, r.1) < (sub, plan));
            let end = books.reports.partition_point(|r| (r.0, r.1) <= (sub, plan));
            Subscriber {
                sub,
                plan,
                usage,
                reports: &books.reports[first..end],
                allowances,
            }
        })
        .collect()
}

/// Prices `books` under `current` and `new`.
pub fn simulate(books: &PeriodBooks, current: &Tariff, new: &Tariff) -> Simulation {
    let mut plans: BTreeMap<String, PlanFigures> = BTreeMap::new();
    let mut fleet = PlanFigures {
        plan: "fleet".into(),
        ..PlanFigures::default()
    };
    let mut per_plan: Vec<PlanFigures> = books
        .plans
        .iter()
        .map(|p| PlanFigures {
            plan: p.clone(),
            ..PlanFigures::default()
        })
        .collect();
    // Each subscriber's net before and after over all its plans (its pairs come together).
    let mut sign_changes = Vec::new();
    let mut current_sub: Option<(Sub, i128, i128, Vec<Plan>)> = None;
    let mut close = |c: Option<(Sub, i128, i128, Vec<Plan>)>, fleet: &mut PlanFigures| {
        if let Some((sub, before, after, plans)) = c {
            fleet.subscribers += 1;
            if before.signum() != after.signum() {
                let names: Vec<&str> = plans.iter().map(|p| books.plan(*p)).collect();
                sign_changes.push(SignChange {
                    sub,
                    subscriber: books.id(sub),
                    plan: names.join(", "),
                    before,
                    after,
                });
            }
        }
    };
    for s in subscribers(books) {
        let (d0, c0) = priced(current, current, s.usage, s.reports, s.allowances);
        let (d1, c1) = priced(new, current, s.usage, s.reports, s.allowances);
        if let Some(p) = per_plan.get_mut(s.plan as usize) {
            p.subscribers += 1;
            p.before.add(d0, c0);
            p.after.add(d1, c1);
        }
        fleet.before.add(d0, c0);
        fleet.after.add(d1, c1);
        if current_sub.as_ref().is_none_or(|c| c.0 != s.sub) {
            close(current_sub.take(), &mut fleet);
        }
        let c = current_sub.get_or_insert_with(|| (s.sub, 0, 0, Vec::new()));
        c.1 += d0 + c0;
        c.2 += d1 + c1;
        c.3.push(s.plan);
    }
    close(current_sub.take(), &mut fleet);
    sign_changes.sort_by(|a, b| a.subscriber.cmp(&b.subscriber));
    for p in per_plan.into_iter().filter(|p| p.subscribers > 0) {
        plans.insert(p.plan.clone(), p);
    }
    Simulation {
        plans: plans.into_values().collect(),
        fleet,
        sign_changes,
    }
}

/// Gives `sim`'s sign changes their subscribers' ids (looked up for them alone), in id order.
pub fn named(
    store: &Store,
    books: &mut PeriodBooks,
    sim: &mut Simulation,
) -> Result<(), StoreError> {
    let subs: Vec<Sub> = sim.sign_changes.iter().map(|c| c.sub).collect();
    period_books::name(store, books, &subs)?;
    for c in &mut sim.sign_changes {
        c.subscriber = books.id(c.sub);
    }
    sim.sign_changes
        .sort_by(|a, b| a.subscriber.cmp(&b.subscriber));
    Ok(())
}
