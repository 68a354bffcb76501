//! `quid report`: a period's figures per plan and for the fleet, each attributed to the plan in
//! force when it happened (see `plan_attribution`): subscribers active and contributing, bytes
//! by direction and class, the peak hour and the busy hour of the day, 95th percentiles of
//! hourly traffic (each plan's, and each subscriber's), contributions by resource, credits,
//! debits and net, and growth against the previous periods.
//!
//! Memory stays bounded at a million subscribers: subscribers are numbers (their store key),
//! per-subscriber hourly values are held for one group of [`GROUP`] subscribers at a time (the
//! store reads hourly rows by range of keys), and everything else is per plan and hour.

use serde::Serialize;

use super::{
    forecast::Forecast,
    percentile::nearest_rank,
    plan_attribution::{PlanAt, in_force},
    report_acc::Acc,
    report_assemble, report_money,
};
use crate::store::{Figures, PeriodReader, Store, StoreError};

/// The report reads bytes only.
const BYTES: Figures = Figures::Bytes;

/// Subscribers whose hourly values are held at once: 4,096 × 744 hours × 16 bytes = 48 MiB.
pub const GROUP: usize = 4_096;
/// Seconds in an hour.
pub(super) const HOUR: i64 = 3_600;
/// The percentile of hourly values reported.
pub(super) const PERCENTILE: u32 = 95;
/// Previous periods whose bytes the growth figures compare with.
pub const PREVIOUS: usize = 3;
/// Hours the fleet's demand is forecast ahead: four weeks.
pub const FORECAST_HOURS: usize = 4 * super::forecast::SEASON;

/// A figure per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Directions {
    /// Towards the subscriber.
    pub down: u64,
    /// From the subscriber.
    pub up: u64,
}

impl Directions {
    pub(super) fn add(&mut self, o: Directions) {
        self.down = self.down.saturating_add(o.down);
        self.up = self.up.saturating_add(o.up);
    }

    /// Both directions together.
    pub fn total(self) -> u64 {
        self.down.saturating_add(self.up)
    }
}

/// Bytes by direction and class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Bytes {
    pub internet: Directions,
    pub grid: Directions,
}

impl Bytes {
    fn of(c: &quid_common::SubscriberCounters) -> Bytes {
        use quid_common::{CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, pair_index};
        let b = |d, k| c.pairs[pair_index(d, k)].bytes;
        Bytes {
            internet: Directions {
                down: b(DIR_DOWNLOAD, CLASS_INTERNET),
                up: b(DIR_UPLOAD, CLASS_INTERNET),
            },
            grid: Directions {
                down: b(DIR_DOWNLOAD, CLASS_GRID),
                up: b(DIR_UPLOAD, CLASS_GRID),
            },
        }
    }

    pub(super) fn add(&mut self, o: &Bytes) {
        self.internet.add(o.internet);
        self.grid.add(o.grid);
    }

    /// Both classes per direction.
    pub fn directions(&self) -> Directions {
        let mut d = self.internet;
        d.add(self.grid);
        d
    }
}

/// What settled reports supplied, in their base units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Contributions {
    pub reports: u64,
    pub cpu_core_micros: u64,
    pub storage_byte_seconds: u64,
    pub energy_microjoules: u64,
}

/// One plan's (or the fleet's) figures for the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanReport {
    pub plan: String,
    /// Subscribers with usage in the period (one on two plans counts in both, once in the
    /// fleet).
    pub active: u64,
    /// Subscribers with a settled report in the period.
    pub contributing: u64,
    pub bytes: Bytes,
    /// Bytes in the fleet's peak hour.
    pub peak_hour: Directions,
    /// Mean bytes per hour in the busy hour of the day.
    pub busy_hour_average: Directions,
    /// The 95th percentile of the plan's hourly bytes (all its subscribers together).
    pub p95_hour: Directions,
    /// The median and the largest of its subscribers' own 95th percentiles of hourly bytes
    /// (subscribers with traffic in the hours held; each under its plan at the period's end).
    pub subscriber_p95_median: Directions,
    pub subscriber_p95_max: Directions,
    pub contributions: Contributions,
    /// Ledger entries of the period (micro-credits): positive ones, negative ones, their sum.
    pub credits: i128,
    pub debits: i128,
    pub net: i128,
    /// Bytes (both directions and classes) per day of the period.
    pub daily_bytes: Vec<u64>,
    /// Mean bytes per hour for each hour of the day (UTC), over the hours held.
    pub hour_of_day: Vec<u64>,
    /// Bytes of the previous periods, most recent first.
    pub previous_bytes: Vec<u64>,
    /// Growth of bytes against the previous period, in percent (`None`: none then).
    pub growth_percent: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub from: i64,
    pub to: i64,
    /// The hours whose hourly figures are held, `[hours_from, hours_to)` (older hours are
    /// rolled up into days, later ones not metered yet): busy hour and percentiles cover them.
    pub hours_from: i64,
    pub hours_to: i64,
    /// Start of the hour with the most fleet traffic (both directions).
    pub peak_hour: Option<i64>,
    /// The hour of the day (UTC) with the most fleet traffic on average.
    pub busy_hour_of_day: Option<u8>,
    /// By plan name.
    pub plans: Vec<PlanReport>,
    pub fleet: PlanReport,
    /// The previous periods compared, most recent first: `[from, to)`.
    pub previous: Vec<(i64, i64)>,
    /// Deciles (0 %, 10 %, ... 100 %) of each subscriber's net for the period (micro-credits),
    /// over the subscribers with ledger entries in it.
    pub net_deciles: Vec<i64>,
    /// The fleet's hourly bytes (both directions) for [`FORECAST_HOURS`] from `hours_to`, from
    /// the hours held (see `forecast`); `None` with `forecast_note` saying why.
    pub forecast: Option<Forecast>,
    pub forecast_note: Option<String>,
    /// The fleet's bytes (both directions) per hour held.
    pub fleet_hourly_bytes: Vec<u64>,
    /// The fleet's Internet bytes per hour held, per direction (what crosses the uplinks).
    pub internet_hourly: Vec<Directions>,
    /// The uplinks' utilisation, when their capacity is configured (see `uplink`).
    pub uplink: Option<super::uplink::Uplink>,
    /// Whether credits keep covering debits at the growth since the month before.
    pub supply: Option<super::supply::Supply>,
}

/// One subscriber's hourly figures, as the report computed them (for checks and exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberP95 {
    pub key: i64,
    /// Its plan at the end of the hours held (index into the plan history's names).
    pub plan: Option<u32>,
    pub p95_hour: Directions,
}

/// The report of `[from, to)` (whole hours) compared with the `previous` periods before it
/// (most recent first); `each` gets every subscriber's own percentiles.
pub fn report(
    store: &Store,
    from: i64,
    to: i64,
    previous: &[(i64, i64)],
    mut each: impl FnMut(&SubscriberP95),
) -> Result<Report, StoreError> {
    let reader = store.period_reader()?;
    let plans = PlanAt::new(reader.plan_history()?);
    let keys = reader.keys()?;
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
    let mut acc: Vec<Acc> = (0..n_plans)
        .map(|_| Acc {
            hourly: vec![Directions::default(); n_hours],
            daily: vec![0; n_days],
            ..Acc::default()
        })
        .collect();
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
            for (h, v) in values[i * n_hours..(i + 1) * n_hours].iter().enumerate() {
                down[h] = v.down;
                up[h] = v.up;
            }
            let plan = in_force(spans[i], hours_to - HOUR);
            let p95 = Directions {
                down: nearest_rank(&mut down, PERCENTILE),
                up: nearest_rank(&mut up, PERCENTILE),
            };
            let a = &mut acc[slot(plan)];
            a.subscriber_p95.0.push(p95.down);
            a.subscriber_p95.1.push(p95.up);
            each(&SubscriberP95 {
                key,
                plan,
                p95_hour: p95,
            });
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
        .map(|&(f, t)| bytes_by_plan(&reader, &plans, f, t, n_plans))
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

/// Each plan's bytes (all directions and classes) in `[from, to)`, by plan slot.
fn bytes_by_plan(
    reader: &PeriodReader<'_>,
    plans: &PlanAt,
    from: i64,
    to: i64,
    n_plans: usize,
) -> Result<Vec<u64>, StoreError> {
    let mut out = vec![0u64; n_plans];
    let mut add = |start: i64, key: i64, c: &quid_common::SubscriberCounters| {
        let p = plans.at(key, start).map_or(n_plans - 1, |p| p as usize);
        out[p] = out[p].saturating_add(Bytes::of(c).directions().total());
    };
    reader.hourly((i64::MIN, i64::MAX), from, to, BYTES, &mut add)?;
    reader.daily(from, to, BYTES, &mut add)?;
    Ok(out)
}
