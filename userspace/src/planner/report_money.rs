//! `quid report`'s money: settled reports into each plan's contributions, ledger entries into
//! its credits and debits, and the spread of subscribers' nets.

use super::{plan_attribution::PlanAt, report_acc::Acc};
use crate::store::{PeriodReader, StoreError};

/// Where the period's money is read from: the reader, the plan history, the subscribers'
/// keys (positions index their sets), and the period.
#[derive(Clone, Copy)]
pub(super) struct Money<'a, 'r> {
    pub(super) reader: &'a PeriodReader<'r>,
    pub(super) plans: &'a PlanAt,
    pub(super) keys: &'a [i64],
    pub(super) from: i64,
    pub(super) to: i64,
}

/// Settled reports of the period into each plan's contributions.
pub(super) fn contributions(
    m: &Money<'_, '_>,
    acc: &mut [Acc],
    slot: impl Fn(Option<u32>) -> usize,
) -> Result<(), StoreError> {
    for r in m.reader.settled_reports(m.from, m.to)? {
        let a = &mut acc[slot(m.plans.at_opt(r.key, r.period_end.saturating_sub(1)))];
        let c = &mut a.contributions;
        c.reports += 1;
        c.cpu_core_micros = c.cpu_core_micros.saturating_add(r.cpu_core_micros);
        c.storage_byte_seconds = c
            .storage_byte_seconds
            .saturating_add(r.storage_byte_seconds);
        c.energy_microjoules = c.energy_microjoules.saturating_add(r.energy_microjoules);
        match r.key.and_then(|k| m.keys.binary_search(&k).ok()) {
            Some(i) => a.contributing.set(i),
            None => {
                a.unknown_contributing.insert(r.subscriber);
            }
        }
    }
    Ok(())
}

/// Ledger entries of the period into each plan's credits and debits; returns the deciles of
/// each subscriber's net.
pub(super) fn ledger(
    m: &Money<'_, '_>,
    acc: &mut [Acc],
    slot: impl Fn(Option<u32>) -> usize,
) -> Result<Vec<i64>, StoreError> {
    // Each subscriber's net by position (a million i64s, not a map of ids).
    let mut nets: Vec<Option<i64>> = vec![None; m.keys.len()];
    let mut unknown: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    m.reader.entries(m.from, m.to, |e| {
        let a = &mut acc[slot(m.plans.at_opt(e.key, e.at))];
        if e.amount > 0 {
            a.credits += i128::from(e.amount);
        } else {
            a.debits += i128::from(e.amount);
        }
        let net = match e.key.and_then(|k| m.keys.binary_search(&k).ok()) {
            Some(i) => nets[i].get_or_insert(0),
            None => unknown.entry(e.subscriber.clone()).or_insert(0),
        };
        *net = net.saturating_add(e.amount);
    })?;
    let mut all: Vec<i64> = nets
        .into_iter()
        .flatten()
        .chain(unknown.into_values())
        .collect();
    if all.is_empty() {
        return Ok(Vec::new());
    }
    all.sort_unstable();
    let last = all.len() - 1;
    Ok((0..=10).map(|d| all[last * d / 10]).collect())
}
