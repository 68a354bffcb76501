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

use crate::{ledger::tariff::Tariff, settlement::outcome::Outcome, store::SettledReport};

use super::period_books::PeriodBooks;

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
    reports: &[&SettledReport],
    allowances: u64,
) -> (i128, i128) {
    let debit = usage.map_or(0, |u| {
        i128::from(t.usage_debit(&SubscriberCounters::default(), u))
    });
    let mut credit = i128::from(allowances) * i128::from(t.monthly_allowance);
    for r in reports {
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
    pub id: &'a str,
    pub plan: &'a str,
    pub usage: Option<&'a SubscriberCounters>,
    pub reports: Vec<&'a SettledReport>,
    pub allowances: u64,
}

/// The (subscriber, plan) pairs with anything in the period, by id then plan.
pub fn subscribers(books: &PeriodBooks) -> Vec<Subscriber<'_>> {
    let mut by_id: BTreeMap<(&str, &str), Subscriber<'_>> = BTreeMap::new();
    let segments = books
        .usage
        .keys()
        .chain(books.allowances.keys())
        .map(|(id, plan)| (id.as_str(), plan.as_str()))
        .chain(
            books
                .reports
                .iter()
                .map(|(plan, r)| (r.subscriber.as_str(), plan.as_str())),
        );
    for (id, plan) in segments {
        by_id.entry((id, plan)).or_insert_with(|| {
            let segment = (id.to_owned(), plan.to_owned());
            Subscriber {
                id,
                plan,
                usage: books.usage.get(&segment),
                reports: Vec::new(),
                allowances: books.allowances.get(&segment).copied().unwrap_or(0),
            }
        });
    }
    for (plan, r) in &books.reports {
        if let Some(s) = by_id.get_mut(&(r.subscriber.as_str(), plan.as_str())) {
            s.reports.push(r);
        }
    }
    by_id.into_values().collect()
}

/// Prices `books` under `current` and `new`.
pub fn simulate(books: &PeriodBooks, current: &Tariff, new: &Tariff) -> Simulation {
    let mut plans: BTreeMap<String, PlanFigures> = BTreeMap::new();
    let mut fleet = PlanFigures {
        plan: "fleet".into(),
        ..PlanFigures::default()
    };
    // Each subscriber's net before and after over all its plans, with the plans it was on.
    let mut nets: BTreeMap<&str, (i128, i128, Vec<&str>)> = BTreeMap::new();
    for s in subscribers(books) {
        let (d0, c0) = priced(current, current, s.usage, &s.reports, s.allowances);
        let (d1, c1) = priced(new, current, s.usage, &s.reports, s.allowances);
        let p = plans
            .entry(s.plan.to_owned())
            .or_insert_with(|| PlanFigures {
                plan: s.plan.to_owned(),
                ..PlanFigures::default()
            });
        p.subscribers += 1;
        p.before.add(d0, c0);
        p.after.add(d1, c1);
        fleet.before.add(d0, c0);
        fleet.after.add(d1, c1);
        let n = nets.entry(s.id).or_default();
        n.0 += d0 + c0;
        n.1 += d1 + c1;
        n.2.push(s.plan);
    }
    fleet.subscribers = u64::try_from(nets.len()).unwrap_or(u64::MAX);
    let sign_changes = nets
        .into_iter()
        .filter(|(_, (before, after, _))| before.signum() != after.signum())
        .map(|(id, (before, after, plans))| SignChange {
            subscriber: id.to_owned(),
            plan: plans.join(", "),
            before,
            after,
        })
        .collect();
    Simulation {
        plans: plans.into_values().collect(),
        fleet,
        sign_changes,
    }
}
