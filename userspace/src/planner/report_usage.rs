//! What a period's usage gives `quid report` per plan, whichever way it was read (the hourly
//! rows in `report`, or the month digests in `report_digest`): the accumulators, and each
//! subscriber's own percentiles counted under its plan.

use super::{
    plan_attribution::in_force,
    report_acc::Acc,
    report_figures::{Directions, HOUR, SubscriberP95},
};

/// What a period's usage gave per plan, however it was read.
pub(super) struct Usage {
    pub(super) acc: Vec<Acc>,
    /// The fleet's Internet bytes per hour held (what crosses the uplinks).
    pub(super) internet: Vec<Directions>,
    pub(super) hours_from: i64,
    pub(super) hours_to: i64,
}

/// Accumulators for `n_plans` plan slots over `n_hours` hours and `n_days` days.
pub(super) fn accumulators(n_plans: usize, n_hours: usize, n_days: usize) -> Vec<Acc> {
    (0..n_plans)
        .map(|_| Acc {
            hourly: vec![Directions::default(); n_hours],
            daily: vec![0; n_days],
            ..Acc::default()
        })
        .collect()
}

/// Counts one subscriber's own percentiles (`own`: key, plan spans, percentiles, bytes of the
/// hours `[from, to)` held) under its plan at the end of them, and gives them to `each`.
pub(super) fn subscriber_figures(
    acc: &mut [Acc],
    (key, spans, p95, bytes): (i64, &[crate::store::PlanSpan], Directions, Directions),
    (from, to): (i64, i64),
    each: &mut impl FnMut(&SubscriberP95),
) {
    let plan = in_force(spans, to - HOUR);
    // The last slot is the unknown plan.
    let slot = plan.map_or(acc.len() - 1, |p| p as usize);
    if let Some(a) = acc.get_mut(slot) {
        a.subscriber_p95.0.push(p95.down);
        a.subscriber_p95.1.push(p95.up);
    }
    each(&SubscriberP95 {
        key,
        plan,
        plans: plans_over(spans, from, to),
        p95_hour: p95,
        bytes,
    });
}

/// The plans in force over the hours `[from, to)` among one subscriber's `spans`, oldest first.
fn plans_over(spans: &[crate::store::PlanSpan], from: i64, to: i64) -> Vec<u32> {
    let mut plans: Vec<u32> = in_force(spans, from).into_iter().collect();
    for s in spans.iter().filter(|s| s.since > from && s.since < to) {
        // Hours are attributed by their start: a change counts from the first hour it covers.
        let hour = (s.since + HOUR - 1).div_euclid(HOUR) * HOUR;
        let Some(p) = in_force(spans, hour).filter(|_| hour < to) else {
            continue;
        };
        if plans.last() != Some(&p) {
            plans.push(p);
        }
    }
    plans
}
