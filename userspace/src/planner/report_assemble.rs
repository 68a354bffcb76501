//! `quid report`'s figures from what was gathered: per plan and for the fleet, the peak hour,
//! the busy hour of the day, percentiles, growth, and the forecast.

use super::{
    forecast::forecast,
    percentile::nearest_rank,
    plan_attribution::PlanAt,
    report_acc::Acc,
    report_figures::{Bytes, Directions, FORECAST_HOURS, HOUR, PERCENTILE, PlanReport, Report},
};

/// The report from the plans' accumulators.
pub(super) fn assemble(
    plans: &PlanAt,
    acc: Vec<Acc>,
    prev: &[Vec<u64>],
    mut report: Report,
) -> Report {
    let n_hours = acc.first().map_or(0, |a| a.hourly.len());
    let n_days = acc.first().map_or(0, |a| a.daily.len());
    // The fleet's hourly series, its peak hour and busy hour of the day.
    let mut fleet_hourly = vec![Directions::default(); n_hours];
    for a in &acc {
        for (f, h) in fleet_hourly.iter_mut().zip(&a.hourly) {
            f.add(*h);
        }
    }
    let peak = (0..n_hours)
        .filter(|&h| fleet_hourly[h].total() > 0)
        .max_by_key(|&h| (fleet_hourly[h].total(), std::cmp::Reverse(h)));
    let hour_of_day = |s: &[Directions]| -> Vec<(Directions, u64)> {
        let mut sums = vec![(Directions::default(), 0u64); 24];
        for (h, v) in s.iter().enumerate() {
            let t = report.hours_from + HOUR * i64::try_from(h).unwrap_or(0);
            let d = usize::try_from(t.rem_euclid(86_400) / HOUR).unwrap_or(0);
            sums[d].0.add(*v);
            sums[d].1 += 1;
        }
        sums
    };
    let mean = |(d, n): (Directions, u64)| Directions {
        down: d.down.checked_div(n).unwrap_or(0),
        up: d.up.checked_div(n).unwrap_or(0),
    };
    let fleet_profile = hour_of_day(&fleet_hourly);
    let busy = (0..24)
        .filter(|&d| fleet_profile[d].1 > 0 && fleet_profile[d].0.total() > 0)
        .max_by_key(|&d| (mean(fleet_profile[d]).total(), std::cmp::Reverse(d)));
    report.fleet_hourly_bytes = fleet_hourly.iter().map(|d| d.total()).collect();
    let history: Vec<f64> = report
        .fleet_hourly_bytes
        .iter()
        .map(|b| *b as f64)
        .collect();
    match forecast(&history, FORECAST_HOURS) {
        Ok(f) => report.forecast = Some(f),
        Err(e) => report.forecast_note = Some(e.to_string()),
    }
    report.peak_hour = peak.map(|h| report.hours_from + HOUR * i64::try_from(h).unwrap_or(0));
    report.busy_hour_of_day = busy.and_then(|d| u8::try_from(d).ok());

    let figures = |name: &str, a: &Acc, hourly: &[Directions], previous: Vec<u64>| {
        let profile = hour_of_day(hourly);
        let mut down: Vec<u64> = hourly.iter().map(|d| d.down).collect();
        let mut up: Vec<u64> = hourly.iter().map(|d| d.up).collect();
        let (mut sd, mut su) = a.subscriber_p95.clone();
        let bytes_total = a.bytes.directions().total();
        PlanReport {
            plan: name.to_owned(),
            active: a.active.count(),
            contributing: a.contributing.count() + a.unknown_contributing.len() as u64,
            bytes: a.bytes,
            peak_hour: peak.map(|h| hourly[h]).unwrap_or_default(),
            busy_hour_average: busy.map(|d| mean(profile[d])).unwrap_or_default(),
            p95_hour: Directions {
                down: nearest_rank(&mut down, PERCENTILE),
                up: nearest_rank(&mut up, PERCENTILE),
            },
            subscriber_p95_median: Directions {
                down: nearest_rank(&mut sd, 50),
                up: nearest_rank(&mut su, 50),
            },
            subscriber_p95_max: Directions {
                down: sd.iter().copied().max().unwrap_or(0),
                up: su.iter().copied().max().unwrap_or(0),
            },
            contributions: a.contributions,
            credits: a.credits,
            debits: a.debits,
            net: a.credits + a.debits,
            daily_bytes: a.daily.clone(),
            hour_of_day: profile.into_iter().map(|p| mean(p).total()).collect(),
            growth_percent: previous
                .first()
                .and_then(|&p| (p > 0).then(|| (bytes_total as f64 - p as f64) * 100.0 / p as f64)),
            previous_bytes: previous,
        }
    };
    let mut fleet = Acc {
        daily: vec![0; n_days],
        ..Acc::default()
    };
    for (i, a) in acc.iter().enumerate() {
        let empty = a.bytes == Bytes::default()
            && a.contributions.reports == 0
            && a.credits == 0
            && a.debits == 0;
        if !empty {
            let name = plans.name(
                u32::try_from(i)
                    .ok()
                    .filter(|&i| (i as usize) < plans.names().len()),
            );
            let previous = prev.iter().map(|p| p[i]).collect();
            report.plans.push(figures(name, a, &a.hourly, previous));
        }
        fleet.active.union(&a.active);
        fleet.contributing.union(&a.contributing);
        fleet
            .unknown_contributing
            .extend(a.unknown_contributing.iter().cloned());
        fleet.bytes.add(&a.bytes);
        for (f, d) in fleet.daily.iter_mut().zip(&a.daily) {
            *f = f.saturating_add(*d);
        }
        fleet.subscriber_p95.0.extend(&a.subscriber_p95.0);
        fleet.subscriber_p95.1.extend(&a.subscriber_p95.1);
        let c = &mut fleet.contributions;
        c.reports += a.contributions.reports;
        c.cpu_core_micros = c
            .cpu_core_micros
            .saturating_add(a.contributions.cpu_core_micros);
        c.storage_byte_seconds = c
            .storage_byte_seconds
            .saturating_add(a.contributions.storage_byte_seconds);
        c.energy_microjoules = c
            .energy_microjoules
            .saturating_add(a.contributions.energy_microjoules);
        fleet.credits += a.credits;
        fleet.debits += a.debits;
    }
    report.plans.sort_by(|a, b| a.plan.cmp(&b.plan));
    let previous = prev.iter().map(|p| p.iter().sum()).collect();
    report.fleet = figures("fleet", &fleet, &fleet_hourly, previous);
    report
}
