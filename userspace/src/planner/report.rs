//! `quid report`: a period's figures per plan and for the fleet, each attributed to the plan in
//! force when it happened (see `plan_attribution`): subscribers active and contributing, bytes
//! by direction and class, the peak hour and the busy hour of the day, 95th percentiles of
//! hourly traffic (each plan's, and each subscriber's), contributions by resource, credits,
//! debits and net, and growth against the previous periods.
//!
//! Memory stays bounded at a million subscribers: subscribers are numbers (their store key),
//! per-subscriber hourly values are held for one group of [`GROUP`] subscribers at a time (the
//! store reads hourly rows by range of keys), and everything else is per plan and hour.

use super::{
    percentile::nearest_rank,
    plan_attribution::{PlanAt, in_force},
    report_acc::Acc,
    report_assemble, report_digest, report_money,
    report_usage::{Usage, accumulators, subscriber_figures},
};
use crate::store::{Figures, PeriodReader, Store, StoreError};

/// The report reads bytes only.
const BYTES: Figures = Figures::Bytes;

pub use super::report_figures::{
    Bytes, Contributions, Directions, FORECAST_HOURS, GROUP, PREVIOUS, PlanReport, ReadFrom,
    Report, SubscriberP95,
};
use super::report_figures::{HOUR, PERCENTILE};

/// The report of `[from, to)` (whole hours) compared with the `previous` periods before it
/// (most recent first); `each` gets every subscriber's own percentiles. A calendar month the
/// month digests hold whole is read from them (`report_digest`), any other period from the
/// hourly and daily rows.
pub fn report(
    store: &Store,
    from: i64,
    to: i64,
    previous: &[(i64, i64)],
    each: impl FnMut(&SubscriberP95),
) -> Result<Report, StoreError> {
    report_reading(store, (from, to), previous, each, true)
}

/// [`report`] from the hourly and daily rows alone, digests or not (for checking the digests,
/// and timing them against the rows).
pub fn report_from_rows(
    store: &Store,
    from: i64,
    to: i64,
    previous: &[(i64, i64)],
    each: impl FnMut(&SubscriberP95),
) -> Result<Report, StoreError> {
    report_reading(store, (from, to), previous, each, false)
}

/// [`report`], reading digests where they hold the period if `digests`.
fn report_reading(
    store: &Store,
    (from, to): (i64, i64),
    previous: &[(i64, i64)],
    each: impl FnMut(&SubscriberP95),
    digests: bool,
) -> Result<Report, StoreError> {
    let reader = store.period_reader()?;
    let plans = PlanAt::new(reader.plan_history()?);
    let keys = reader.keys()?;
    let n_plans = plans.names().len() + 1;
    let read_from = if digests && report_digest::whole_month(&reader, from, to)? {
        ReadFrom::MonthDigests
    } else {
        ReadFrom::HourlyRows
    };
    let usage = match read_from {
        ReadFrom::MonthDigests => report_digest::usage(&reader, &plans, &keys, (from, to), each)?,
        ReadFrom::HourlyRows => hourly_usage(&reader, &plans, &keys, (from, to), each)?,
    };
    let Usage {
        mut acc,
        internet,
        hours_from,
        hours_to,
    } = usage;
    // Plan index `names.len()` is the unknown plan.
    let slot = |p: Option<u32>| p.map_or(n_plans - 1, |p| p as usize);
    let money = report_money::Money {
        reader: &reader,
        plans: &plans,
        keys: &keys,
        from,
        to,
    };
    report_money::contributions(&money, &mut acc, slot)?;
    let net_deciles = report_money::ledger(&money, &mut acc, slot)?;
    let prev: Vec<Vec<u64>> = previous
        .iter()
        .map(|&(f, t)| bytes_by_plan(&reader, &plans, (f, t), n_plans, digests))
        .collect::<Result<_, _>>()?;
    // The month before's credits and debits, for the growth of supply against demand.
    let before = match previous.first() {
        Some(&(f, t)) => {
            let mut sums = (0i128, 0i128);
            reader.entries(f, t, |e| {
                if e.amount > 0 {
                    sums.0 += i128::from(e.amount);
                } else {
                    sums.1 += i128::from(e.amount);
                }
            })?;
            Some(sums)
        }
        None => None,
    };
    let mut r = report_assemble::assemble(
        &plans,
        acc,
        &prev,
        Report {
            from,
            to,
            hours_from,
            hours_to,
            previous: previous.to_vec(),
            net_deciles,
            internet_hourly: internet,
            read_from,
            ..Report::default()
        },
    );
    let period = crate::clock::rfc3339(from).map_or_else(|_| String::new(), |s| s[..7].to_owned());
    r.supply = Some(super::supply::supply(
        &period,
        (r.fleet.credits, r.fleet.debits),
        before,
    ));
    Ok(r)
}

/// The usage of `[from, to)` from the hourly rows (a group of subscribers at a time) and the
/// daily rows.
fn hourly_usage(
    reader: &PeriodReader<'_>,
    plans: &PlanAt,
    keys: &[i64],
    (from, to): (i64, i64),
    mut each: impl FnMut(&SubscriberP95),
) -> Result<Usage, StoreError> {
    let hours_from = reader.oldest_hour()?.map_or(to, |o| o.max(from)).min(to);
    let hours_to = reader
        .last_interval_end()?
        .map_or(to, |end| (end + HOUR - 1).div_euclid(HOUR) * HOUR)
        .clamp(hours_from, to);
    let n_hours = usize::try_from((hours_to - hours_from) / HOUR).unwrap_or(0);
    let n_days = usize::try_from((to - from + 86_399) / 86_400).unwrap_or(0);
    // Plan index `names.len()` is the unknown plan.
    let n_plans = plans.names().len() + 1;
    let slot = |p: Option<u32>| p.map_or(n_plans - 1, |p| p as usize);
    let mut acc = accumulators(n_plans, n_hours, n_days);
    // Usage of subscriber `key` (at `pos` among the keys, if known) under plan slot `p`.
    let usage = |acc: &mut [Acc], start: i64, pos: Option<usize>, p: usize, b: &Bytes| {
        let a = &mut acc[p];
        a.bytes.add(b);
        if let Some(i) = pos {
            a.active.set(i);
        }
        if let Some(d) = usize::try_from((start - from) / 86_400)
            .ok()
            .and_then(|d| a.daily.get_mut(d))
        {
            *d = d.saturating_add(b.directions().total());
        }
    };
    // The fleet's Internet bytes per hour held (what crosses the uplinks).
    let mut internet = vec![Directions::default(); n_hours];
    // Hourly rows, a group of subscribers at a time.
    let mut values = vec![Directions::default(); GROUP.min(keys.len().max(1)) * n_hours];
    for (g, group) in keys.chunks(GROUP).enumerate() {
        let (Some(&lo), Some(&hi)) = (group.first(), group.last()) else {
            continue;
        };
        values.iter_mut().for_each(|v| *v = Directions::default());
        let mut seen = vec![false; group.len()];
        // Each subscriber's plans, looked up once per group rather than once per row.
        let spans: Vec<_> = group.iter().map(|&k| plans.spans(k)).collect();
        reader.hourly(
            (lo, hi + 1),
            hours_from,
            hours_to,
            BYTES,
            |start, key, c| {
                let b = Bytes::of(c);
                let Ok(i) = group.binary_search(&key) else {
                    return;
                };
                let p = slot(in_force(spans[i], start));
                usage(&mut acc, start, Some(g * GROUP + i), p, &b);
                let Some(h) = usize::try_from((start - hours_from) / HOUR)
                    .ok()
                    .filter(|&h| h < n_hours)
                else {
                    return;
                };
                acc[p].hourly[h].add(b.directions());
                internet[h].add(b.internet);
                values[i * n_hours + h].add(b.directions());
                seen[i] = true;
            },
        )?;
        let mut down = vec![0u64; n_hours];
        let mut up = vec![0u64; n_hours];
        for (i, &key) in group.iter().enumerate() {
            if !seen[i] {
                continue;
            }
            let mut bytes = Directions::default();
            for (h, v) in values[i * n_hours..(i + 1) * n_hours].iter().enumerate() {
                down[h] = v.down;
                up[h] = v.up;
                bytes.add(*v);
            }
            let p95 = Directions {
                down: nearest_rank(&mut down, PERCENTILE),
                up: nearest_rank(&mut up, PERCENTILE),
            };
            let own = (key, spans[i], p95, bytes);
            subscriber_figures(&mut acc, own, (hours_from, hours_to), &mut each);
        }
        log::debug!("report: subscriber group {g} read");
    }
    drop(values);
    // Days already rolled up: bytes and activity, no hourly figures.
    reader.daily(from, to, BYTES, |start, key, c| {
        let p = slot(plans.at(key, start));
        usage(
            &mut acc,
            start,
            keys.binary_search(&key).ok(),
            p,
            &Bytes::of(c),
        );
    })?;
    Ok(Usage {
        acc,
        internet,
        hours_from,
        hours_to,
    })
}

/// Each plan's bytes (all directions and classes) in `[from, to)`, by plan slot (from the
/// digests' plan-hours where they hold the period, if `digests`).
fn bytes_by_plan(
    reader: &PeriodReader<'_>,
    plans: &PlanAt,
    (from, to): (i64, i64),
    n_plans: usize,
    digests: bool,
) -> Result<Vec<u64>, StoreError> {
    let mut out = vec![0u64; n_plans];
    if digests && reader.digested(from, to)? {
        let slots = report_digest::plan_slots(reader, plans)?;
        reader.plan_hours(from, to, |_, plan, h| {
            let p = slots.get(&plan).copied().unwrap_or(n_plans - 1);
            out[p] = out[p].saturating_add(report_digest::bytes_of(&h).directions().total());
        })?;
        return Ok(out);
    }
    let mut add = |start: i64, key: i64, c: &quid_common::SubscriberCounters| {
        let p = plans.at(key, start).map_or(n_plans - 1, |p| p as usize);
        out[p] = out[p].saturating_add(Bytes::of(c).directions().total());
    };
    reader.hourly((i64::MIN, i64::MAX), from, to, BYTES, &mut add)?;
    reader.daily(from, to, BYTES, &mut add)?;
    Ok(out)
}
