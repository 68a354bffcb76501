//! A forecast of hourly demand with its daily and weekly cycles: additive Holt-Winters (level,
//! trend, and a season of one week of hours, which holds the daily cycle within it), its three
//! smoothing factors chosen from a grid by the smallest squared one-step error over the
//! history. The band is the forecast ± 1.96 standard deviations of the error that far ahead
//! (the one-step residuals' deviation, widened by the model's formula: see [`spread`]), an
//! approximate 95 % interval.
//!
//! Below [`MIN_HOURS`] of history (two weeks: one to start the season from, one to learn it)
//! there is no forecast, said as such rather than guessed.

use serde::Serialize;

/// Hours in the season: a week.
pub const SEASON: usize = 168;
/// The least history a forecast is made from.
pub const MIN_HOURS: usize = 2 * SEASON;
/// The smoothing factors tried, each for level, trend and season.
const GRID: [f64; 6] = [0.02, 0.05, 0.1, 0.2, 0.35, 0.5];

/// Why there is no forecast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForecastError {
    #[error("not enough history for a forecast: {0} hours held, {MIN_HOURS} (two weeks) needed")]
    TooShort(usize),
}

/// Hourly demand ahead, with its band (all in the unit of the history).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub mean: Vec<f64>,
    pub low: Vec<f64>,
    pub high: Vec<f64>,
    /// The smoothing factors chosen: level, trend, season.
    pub factors: [f64; 3],
}

/// The model's state after the history, and its squared one-step errors.
struct Fit {
    level: f64,
    trend: f64,
    season: Vec<f64>,
    sse: f64,
    n: usize,
}

/// Runs the model over `y` with factors `(a, b, g)`.
fn fit(y: &[f64], (a, b, g): (f64, f64, f64)) -> Fit {
    // Start from the first two weeks: the trend from their means, the level where the first
    // week ends, each hour's season its average distance from its week's mean with the trend
    // taken out (a season holding the rise within a week would carry it forward twice).
    let mean = |w: &[f64]| w.iter().sum::<f64>() / w.len() as f64;
    let first = mean(&y[..SEASON]);
    let second = mean(&y[SEASON..2 * SEASON]);
    let mut trend = (second - first) / SEASON as f64;
    let middle = (SEASON - 1) as f64 / 2.0;
    let mut level = first + trend * middle;
    let mut season: Vec<f64> = (0..SEASON)
        .map(|i| {
            let off = trend * (i as f64 - middle);
            ((y[i] - first - off) + (y[SEASON + i] - second - off)) / 2.0
        })
        .collect();
    let (mut sse, mut n) = (0.0, 0);
    for (t, &v) in y.iter().enumerate().skip(SEASON) {
        let s = season[t % SEASON];
        let predicted = level + trend + s;
        sse += (v - predicted).powi(2);
        n += 1;
        let last = level;
        level = a * (v - s) + (1.0 - a) * (level + trend);
        trend = b * (level - last) + (1.0 - b) * trend;
        season[t % SEASON] = g * (v - level) + (1.0 - g) * s;
    }
    Fit {
        level,
        trend,
        season,
        sse,
        n,
    }
}

/// How much the one-step error variance grows `h` hours ahead: the additive Holt-Winters
/// formula (Hyndman and Athanasopoulos, Forecasting: Principles and Practice, ETS(A,A,A)), with
/// the factors as this model uses them (ETS's trend factor is level × trend, its season
/// factor (1 − level) × season).
fn spread([a, b, g]: [f64; 3], h: usize) -> f64 {
    let (beta, gamma) = (a * b, (1.0 - a) * g);
    let hf = h as f64;
    let k = ((h - 1) / SEASON) as f64;
    let m = SEASON as f64;
    1.0 + (hf - 1.0) * (a * a + a * beta * hf + beta * beta * hf * (2.0 * hf - 1.0) / 6.0)
        + k * gamma * (2.0 * a + gamma + beta * m * (k + 1.0))
}

/// The next `ahead` hours after `history` (hourly, oldest first).
pub fn forecast(history: &[f64], ahead: usize) -> Result<Forecast, ForecastError> {
    if history.len() < MIN_HOURS {
        return Err(ForecastError::TooShort(history.len()));
    }
    let mut best: Option<(Fit, [f64; 3])> = None;
    for a in GRID {
        for b in GRID {
            for g in GRID {
                let f = fit(history, (a, b, g));
                if best.as_ref().is_none_or(|(x, _)| f.sse < x.sse) {
                    best = Some((f, [a, b, g]));
                }
            }
        }
    }
    let Some((f, factors)) = best else {
        return Err(ForecastError::TooShort(history.len()));
    };
    let sigma = (f.sse / f.n.max(1) as f64).sqrt();
    let t0 = history.len();
    let mut out = Forecast {
        mean: Vec::with_capacity(ahead),
        low: Vec::with_capacity(ahead),
        high: Vec::with_capacity(ahead),
        factors,
    };
    for h in 1..=ahead {
        let m = f.level + h as f64 * f.trend + f.season[(t0 + h - 1) % SEASON];
        let width = 1.96 * sigma * spread(factors, h).sqrt();
        out.mean.push(m.max(0.0));
        out.low.push((m - width).max(0.0));
        out.high.push((m + width).max(0.0));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A planted week: an evening peak every day, quieter weekends, a steady rise, and a
    /// deterministic wobble.
    fn truth(t: usize) -> f64 {
        let hour = t % 24;
        let day = (t / 24) % 7;
        let daily = 400.0 * (std::f64::consts::TAU * (hour as f64 - 14.0) / 24.0).cos();
        let weekend = if day >= 5 { -150.0 } else { 0.0 };
        let wobble = ((t * 7_919) % 13) as f64 - 6.0;
        2_000.0 + 0.5 * t as f64 + daily + weekend + wobble
    }

    #[test]
    fn four_weeks_forecast_the_fifth_within_its_band() {
        let history: Vec<f64> = (0..4 * SEASON).map(truth).collect();
        let f = forecast(&history, SEASON).unwrap();
        let mut inside = 0;
        for h in 0..SEASON {
            let want = truth(4 * SEASON + h);
            // Within 3 % of the truth, trend, days and weekend included.
            assert!(
                (f.mean[h] - want).abs() < 0.03 * want,
                "hour {h}: {} against {want}",
                f.mean[h]
            );
            if f.low[h] <= want && want <= f.high[h] {
                inside += 1;
            }
        }
        // The wobble is not random noise, so the band (made for it) need not hold 95 % of
        // it; it must hold most of the week and stay narrow against the level.
        assert!(
            inside >= SEASON * 4 / 5,
            "{inside} of {SEASON} inside the band"
        );
        let width = (0..SEASON).map(|h| f.high[h] - f.low[h]).sum::<f64>() / SEASON as f64;
        assert!(width < 0.05 * truth(4 * SEASON), "band {width} wide");
        // The busiest forecast hour is an evening of a weekday.
        let peak = (0..SEASON)
            .max_by(|&a, &b| f.mean[a].total_cmp(&f.mean[b]))
            .unwrap();
        assert_eq!((4 * SEASON + peak) % 24, 14);
    }

    #[test]
    fn less_than_two_weeks_is_not_enough() {
        let history: Vec<f64> = (0..MIN_HOURS - 1).map(truth).collect();
        assert_eq!(
            forecast(&history, 24),
            Err(ForecastError::TooShort(MIN_HOURS - 1))
        );
    }
}
