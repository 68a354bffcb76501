//! A whole calendar month's usage for `quid report` from the month digests
//! (`store::month_digests`, folded by `month_fold`): the plans' hourly bytes, and each
//! subscriber's month bytes, plans and largest hourly values. It gives the same figures as the
//! hourly rows (`report::hourly_usage`) in a millionth of the rows at a million subscribers.

use std::collections::HashMap;

use super::{
    month_fold::TOP,
    plan_attribution::PlanAt,
    report_figures::{Bytes, Directions, HOUR, PERCENTILE, SubscriberP95},
    report_usage::{Usage, accumulators, subscriber_figures},
};
use crate::store::{PeriodReader, PlanHour, StoreError};

/// Whether `[from, to)` is one calendar month the digests hold every day of.
pub(super) fn whole_month(
    reader: &PeriodReader<'_>,
    from: i64,
    to: i64,
) -> Result<bool, StoreError> {
    let month = crate::clock::month_of(from).ok();
    Ok(month == Some((from, to)) && reader.digested(from, to)?)
}

/// Digest plan id → plan slot (an index into the plan history's names; plans the history does
/// not name, and the unknown plan, are absent: the caller's unknown slot).
pub(super) fn plan_slots(
    reader: &PeriodReader<'_>,
    plans: &PlanAt,
) -> Result<HashMap<i64, usize>, StoreError> {
    let index: HashMap<&str, usize> = plans
        .names()
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    Ok(reader
        .digest_plan_names()?
        .into_iter()
        .filter_map(|(id, name)| index.get(name.as_str()).map(|&i| (id, i)))
        .collect())
}

/// A plan-hour's bytes.
pub(super) fn bytes_of(h: &PlanHour) -> Bytes {
    Bytes {
        internet: Directions {
            down: h.internet_down,
            up: h.internet_up,
        },
        grid: Directions {
            down: h.grid_down,
            up: h.grid_up,
        },
    }
}

/// The nearest-rank `PERCENTILE` of `n` hourly values whose largest are `top` (largest
/// first; the others zero or smaller than the last held).
fn percentile_of_top(top: &[u64], n: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    let rank = (u128::from(PERCENTILE) * n as u128).div_ceil(100).max(1);
    // The rank-th smallest of n is the (n - rank + 1)-th largest.
    let from_top = n - usize::try_from(rank).unwrap_or(n).min(n);
    top.get(from_top).copied().unwrap_or(0)
}

/// The month `[from, to)`'s usage from the digests (see [`whole_month`]).
pub(super) fn usage(
    reader: &PeriodReader<'_>,
    plans: &PlanAt,
    keys: &[i64],
    (from, to): (i64, i64),
    mut each: impl FnMut(&SubscriberP95),
) -> Result<Usage, StoreError> {
    let n_hours = usize::try_from((to - from) / HOUR).unwrap_or(0);
    debug_assert!(
        n_hours - n_hours * usize::try_from(PERCENTILE).unwrap_or(0) / 100 <= TOP,
        "a month's percentile lies within the values a digest keeps"
    );
    let n_days = usize::try_from((to - from + 86_399) / 86_400).unwrap_or(0);
    let n_plans = plans.names().len() + 1;
    let slots = plan_slots(reader, plans)?;
    let slot_of = |id: i64| slots.get(&id).copied().unwrap_or(n_plans - 1);
    let mut acc = accumulators(n_plans, n_hours, n_days);
    let mut internet = vec![Directions::default(); n_hours];
    reader.plan_hours(from, to, |start, plan, h| {
        let b = bytes_of(&h);
        let a = &mut acc[slot_of(plan)];
        a.bytes.add(&b);
        if let Some(d) = usize::try_from((start - from) / 86_400)
            .ok()
            .and_then(|d| a.daily.get_mut(d))
        {
            *d = d.saturating_add(b.directions().total());
        }
        if let Some(h) = usize::try_from((start - from) / HOUR)
            .ok()
            .filter(|&h| h < n_hours)
        {
            a.hourly[h].add(b.directions());
            internet[h].add(b.internet);
        }
    })?;
    reader.month_digests(from, (i64::MIN, i64::MAX), |key, d| {
        // As from the hourly rows: keys the table no longer holds have no figures of their own.
        let Ok(pos) = keys.binary_search(&key) else {
            return;
        };
        for &plan in &d.plans {
            acc[slot_of(plan)].active.set(pos);
        }
        let p95 = Directions {
            down: percentile_of_top(&d.top_down, n_hours),
            up: percentile_of_top(&d.top_up, n_hours),
        };
        let bytes = Directions {
            down: d.down,
            up: d.up,
        };
        let own = (key, plans.spans(key), p95, bytes);
        subscriber_figures(&mut acc, own, (from, to), &mut each);
    })?;
    Ok(Usage {
        acc,
        internet,
        hours_from: from,
        hours_to: to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::percentile::nearest_rank;

    #[test]
    fn the_percentile_from_the_largest_values_equals_the_one_from_every_hour() {
        // Months of 672, 720 and 744 hours, with idle hours, ties and a heavy tail.
        for n in [672usize, 696, 720, 744, 1, 20] {
            for seed in 0..20u64 {
                let mut all: Vec<u64> = (0..n as u64)
                    .map(|h| {
                        let x = (h * 2_654_435_761 + seed * 97) % 1_000;
                        if x < 300 { 0 } else { x * x * (seed + 1) }
                    })
                    .collect();
                let mut top = Vec::new();
                super::super::month_fold::keep_largest(&mut top, all.clone());
                assert_eq!(
                    percentile_of_top(&top, n),
                    nearest_rank(&mut all, PERCENTILE),
                    "n {n} seed {seed}"
                );
            }
        }
    }
}
