//! What `quid tariff simulate` re-prices: a period's usage, settled reports and allowances,
//! each attributed to the plan in force when it happened (see `plan_attribution`).
//!
//! Subscribers are numbers ([`Sub`]) and plans indexes into [`PeriodBooks::plans`], so a
//! million subscribers' month is a sorted vector of (number, plan, counters), not maps of ids:
//! ids are looked up only for the subscribers a caller names.

use std::collections::HashMap;

use quid_common::SubscriberCounters;

use super::plan_attribution::{PlanAt, UNKNOWN_PLAN};
use crate::{
    ledger::chain::EntryKind,
    store::{Figures, SettledReport, Store, StoreError},
};

/// A subscriber of the period: its store key, or, for one the table never held (a report or
/// an entry naming it), `-1 - i` where `i` indexes [`PeriodBooks::unknown`].
pub type Sub = i64;

/// A plan: an index into [`PeriodBooks::plans`].
pub type Plan = u32;

/// A period of the books, for re-pricing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodBooks {
    /// Plan names by index.
    pub plans: Vec<String>,
    /// Usage of each subscriber under each plan it was on in the period (rows starting in
    /// it), in (subscriber, plan) order.
    pub usage: Vec<(Sub, Plan, SubscriberCounters)>,
    /// Reports matched or disputed whose period ends in `(from, to]`, as statements count
    /// them, with the subscriber and plan they are attributed to, in (subscriber, plan) order.
    pub reports: Vec<(Sub, Plan, SettledReport)>,
    /// Monthly allowances granted in the period, by the plan in force when granted, in
    /// (subscriber, plan) order.
    pub allowances: Vec<(Sub, Plan, u64)>,
    /// Ids of the subscribers the table never held.
    pub unknown: Vec<String>,
    /// Ids of the subscribers a caller may name, by key (filled by [`name`]).
    pub ids: HashMap<Sub, String>,
}

impl PeriodBooks {
    /// The name of plan `p`.
    pub fn plan(&self, p: Plan) -> &str {
        self.plans
            .get(p as usize)
            .map_or(UNKNOWN_PLAN, String::as_str)
    }

    /// Subscriber `s`'s usage on the plan named `plan`.
    pub fn usage_of(&self, s: Sub, plan: &str) -> Option<&SubscriberCounters> {
        self.usage
            .iter()
            .find(|u| u.0 == s && self.plan(u.1) == plan)
            .map(|u| &u.2)
    }

    /// Subscriber `s`'s allowances on the plan named `plan`.
    pub fn allowances_of(&self, s: Sub, plan: &str) -> u64 {
        self.allowances
            .iter()
            .filter(|a| a.0 == s && self.plan(a.1) == plan)
            .map(|a| a.2)
            .sum()
    }

    /// The id of subscriber `s` (`#key` if not named yet).
    pub fn id(&self, s: Sub) -> String {
        if s < 0 {
            let i = usize::try_from(-1 - s).unwrap_or(usize::MAX);
            return self.unknown.get(i).cloned().unwrap_or_default();
        }
        self.ids.get(&s).cloned().unwrap_or_else(|| format!("#{s}"))
    }

    /// The subscriber standing for `id`, a key or a number for an id the table never held.
    fn sub(&mut self, key: Option<i64>, id: &str) -> Sub {
        if let Some(k) = key {
            return k;
        }
        let i = match self.unknown.iter().position(|u| u == id) {
            Some(i) => i,
            None => {
                self.unknown.push(id.to_owned());
                self.unknown.len() - 1
            }
        };
        -1 - i64::try_from(i).unwrap_or(i64::MAX - 1)
    }
}

/// No plan yet, in the dense usage vector.
const NONE: Plan = Plan::MAX;

/// The books of `[from, to)` (`from` a whole hour), read in one moment.
pub fn read(store: &Store, from: i64, to: i64) -> Result<PeriodBooks, StoreError> {
    let reader = store.period_reader()?;
    let at = PlanAt::new(reader.plan_history()?);
    let keys = reader.keys()?;
    let unknown_plan = Plan::try_from(at.names().len()).unwrap_or(NONE - 1);
    let plan = |key: Option<i64>, t: i64| at.at_opt(key, t).unwrap_or(unknown_plan);
    // One entry per subscriber (most are on one plan all period), the rest aside.
    let mut usage: Vec<(Sub, Plan, SubscriberCounters)> = keys
        .iter()
        .map(|&k| (k, NONE, SubscriberCounters::default()))
        .collect();
    let mut more: HashMap<(Sub, Plan), SubscriberCounters> = HashMap::new();
    let mut add = |start: i64, key: i64, c: &SubscriberCounters| {
        let p = plan(Some(key), start);
        match keys.binary_search(&key).ok().map(|i| &mut usage[i]) {
            Some(e) if e.1 == NONE || e.1 == p => {
                e.1 = p;
                e.2.add(c);
            }
            _ => more.entry((key, p)).or_default().add(c),
        }
    };
    reader.hourly((i64::MIN, i64::MAX), from, to, Figures::All, &mut add)?;
    reader.daily(from, to, Figures::All, &mut add)?;
    usage.retain(|e| e.1 != NONE);
    usage.extend(more.into_iter().map(|((s, p), c)| (s, p, c)));
    usage.sort_unstable_by_key(|e| (e.0, e.1));
    let mut books = PeriodBooks {
        plans: at.names().to_vec(),
        usage,
        ..PeriodBooks::default()
    };
    books.plans.push(UNKNOWN_PLAN.to_owned());
    for r in reader.settled_reports(from, to)? {
        let p = plan(r.key, r.period_end.saturating_sub(1));
        let s = books.sub(r.key, &r.subscriber);
        books.reports.push((s, p, r));
    }
    books.reports.sort_by_key(|r| (r.0, r.1));
    let mut allowances: HashMap<(Sub, Plan), u64> = HashMap::new();
    let mut unknown = Vec::new();
    reader.entries(from, to, |e| {
        if e.kind == EntryKind::Allowance {
            let p = plan(e.key, e.at);
            match e.key {
                Some(k) => *allowances.entry((k, p)).or_default() += 1,
                None => unknown.push((e.subscriber.clone(), p)),
            }
        }
    })?;
    for (id, p) in unknown {
        *allowances.entry((books.sub(None, &id), p)).or_default() += 1;
    }
    books.allowances = allowances
        .into_iter()
        .map(|((s, p), n)| (s, p, n))
        .collect();
    books.allowances.sort_unstable_by_key(|a| (a.0, a.1));
    Ok(books)
}

/// Fills `books.ids` with the ids of `subs` (the subscribers a caller is about to name).
pub fn name(store: &Store, books: &mut PeriodBooks, subs: &[Sub]) -> Result<(), StoreError> {
    let reader = store.period_reader()?;
    for &s in subs.iter().filter(|s| **s >= 0) {
        if let Some(id) = reader.id_of(s)? {
            books.ids.insert(s, id);
        }
    }
    Ok(())
}
