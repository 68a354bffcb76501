//! Uplink utilisation for `quid report`: the fleet's Internet traffic (what crosses the core
//! interfaces) against their configured capacity, hour by hour in the busier direction, and
//! the first month in which the forecast's demand passes a threshold of that capacity.

use super::{
    forecast::{SEASON, forecast},
    percentile::nearest_rank,
    report_figures::{Report, Uplink},
};
use crate::clock;

/// How far ahead the crossing is looked for: a year of weeks.
pub const HORIZON_HOURS: usize = 52 * SEASON;

/// Bits per second of `bytes` in an hour.
fn bps(bytes: f64) -> f64 {
    bytes * 8.0 / 3_600.0
}

/// The uplinks of `r` at `capacity` bits per second, the crossing looked for at `threshold`
/// percent.
pub fn uplink(r: &Report, capacity: u64, threshold: f64) -> Uplink {
    let cap = (capacity as f64).max(1.0);
    let busier: Vec<u64> = r.internet_hourly.iter().map(|d| d.down.max(d.up)).collect();
    let percent = |bytes: f64| bps(bytes) * 100.0 / cap;
    let peak = busier.iter().copied().max().unwrap_or(0);
    let mut sorted = busier.clone();
    let p95 = nearest_rank(&mut sorted, 95);
    let history: Vec<f64> = busier.iter().map(|b| *b as f64).collect();
    let (crossing_month, note) = match forecast(&history, HORIZON_HOURS) {
        Ok(f) => {
            let limit = threshold / 100.0 * cap;
            let month = f.mean.iter().position(|m| bps(*m) > limit).and_then(|h| {
                let t = r.hours_to + 3_600 * i64::try_from(h).ok()?;
                clock::rfc3339(t).ok().map(|s| s[..7].to_owned())
            });
            (month, None)
        }
        Err(e) => (None, Some(e.to_string())),
    };
    Uplink {
        capacity_bits_per_second: capacity,
        peak_percent: percent(peak as f64),
        p95_percent: percent(p95 as f64),
        threshold_percent: threshold,
        crossing_month,
        note,
    }
}
