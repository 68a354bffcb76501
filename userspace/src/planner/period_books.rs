//! What `quid tariff simulate` re-prices: a period's usage, settled reports and allowances,
//! each attributed to the plan in force when it happened (see `plan_attribution`).

use std::collections::HashMap;

use quid_common::SubscriberCounters;

use super::plan_attribution::PlanAt;
use crate::{
    ledger::chain::EntryKind,
    store::{SettledReport, Store, StoreError},
};

/// A subscriber on one plan: (subscriber id, plan name).
pub type Segment = (String, String);

/// A period of the books, for re-pricing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodBooks {
    /// Usage of each subscriber under each plan it was on in the period (rows starting in it).
    pub usage: HashMap<Segment, SubscriberCounters>,
    /// Reports matched or disputed whose period ends in `(from, to]`, as statements count
    /// them, each with the plan it is attributed to.
    pub reports: Vec<(String, SettledReport)>,
    /// Monthly allowances granted in the period, by the plan in force when granted.
    pub allowances: HashMap<Segment, u64>,
}

/// The books of `[from, to)` (`from` a whole hour), read in one moment.
pub fn read(store: &Store, from: i64, to: i64) -> Result<PeriodBooks, StoreError> {
    let reader = store.period_reader()?;
    let plans = PlanAt::new(reader.plan_history()?);
    let ids = reader.ids()?;
    // Summed by key and plan index first: one id string per subscriber, made at the end.
    let mut by_key: HashMap<(i64, Option<u32>), SubscriberCounters> = HashMap::new();
    let mut add = |start: i64, key: i64, c: &SubscriberCounters| {
        by_key
            .entry((key, plans.at(key, start)))
            .or_default()
            .add(c);
    };
    reader.hourly((i64::MIN, i64::MAX), from, to, &mut add)?;
    reader.daily(from, to, &mut add)?;
    let id = |key: i64| ids.get(&key).cloned().unwrap_or_else(|| format!("#{key}"));
    let mut books = PeriodBooks {
        usage: by_key
            .into_iter()
            .map(|((key, plan), c)| ((id(key), plans.name(plan).to_owned()), c))
            .collect(),
        ..PeriodBooks::default()
    };
    for r in reader.settled_reports(from, to)? {
        let plan = plans.name(plans.at_opt(r.key, r.period_end.saturating_sub(1)));
        books.reports.push((plan.to_owned(), r));
    }
    reader.entries(from, to, |e| {
        if e.kind == EntryKind::Allowance {
            let plan = plans.name(plans.at_opt(e.key, e.at)).to_owned();
            *books
                .allowances
                .entry((e.subscriber.clone(), plan))
                .or_default() += 1;
        }
    })?;
    Ok(books)
}
