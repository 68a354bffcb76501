//! Whether the supply subscribers contribute keeps covering the demand they are debited for:
//! this month's credits and debits against the month before, each grown at its own rate, month
//! by month, until credits fall below debits.

use serde::Serialize;

/// Months ahead the crossing is looked for.
pub const HORIZON_MONTHS: i32 = 36;

/// Supply against demand for the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Supply {
    /// Month-on-month growth of credits and of debits (size), in percent.
    pub credits_growth_percent: Option<f64>,
    pub debits_growth_percent: Option<f64>,
    /// The first month (YYYY-MM) whose credits no longer cover its debits at these rates.
    pub uncovered_from: Option<String>,
    /// Why there is no month: not enough history, uncovered already, or covered throughout.
    pub note: Option<String>,
}

impl Supply {
    /// The answer as a reader sees it: the month, or why there is none.
    pub fn text(&self) -> &str {
        self.uncovered_from
            .as_deref()
            .or(self.note.as_deref())
            .unwrap_or("-")
    }
}

/// The month `k` months after `period` (YYYY-MM), if `period` is one.
fn month_after(period: &str, k: i32) -> Option<String> {
    let (y, m) = period.split_once('-')?;
    let index = y.parse::<i32>().ok()? * 12 + m.parse::<i32>().ok()?.checked_sub(1)? + k;
    Some(format!("{:04}-{:02}", index / 12, index % 12 + 1))
}

/// From this `period`'s (credits, debits) and the previous month's (debits negative, as in
/// the ledger).
pub fn supply(period: &str, now: (i128, i128), before: Option<(i128, i128)>) -> Supply {
    let (c0, d0) = (now.0 as f64, -now.1 as f64);
    let growth = before.and_then(|(c1, d1)| {
        let (c1, d1) = (c1 as f64, -d1 as f64);
        (c1 > 0.0 && d1 > 0.0).then(|| (c0 / c1, d0 / d1))
    });
    let Some((gc, gd)) = growth else {
        return Supply {
            credits_growth_percent: None,
            debits_growth_percent: None,
            uncovered_from: None,
            note: Some(
                "not enough history: the month before needs credits and debits to give growth"
                    .into(),
            ),
        };
    };
    let mut out = Supply {
        credits_growth_percent: Some((gc - 1.0) * 100.0),
        debits_growth_percent: Some((gd - 1.0) * 100.0),
        uncovered_from: None,
        note: None,
    };
    if c0 < d0 {
        out.note = Some("credits do not cover debits already this month".into());
        return out;
    }
    let first = (1..=HORIZON_MONTHS).find(|&k| c0 * gc.powi(k) < d0 * gd.powi(k));
    match first {
        Some(k) => out.uncovered_from = month_after(period, k),
        None => {
            out.note = Some(format!(
                "covered for the next {HORIZON_MONTHS} months at these rates"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debits_growing_faster_pass_credits_in_the_month_computed() {
        // Credits 1,000 growing 10 %, debits 500 growing 50 %: 1000·1.1^k < 500·1.5^k first
        // at k = 3 (1331 < 1687.5; at k = 2, 1210 > 1125).
        let s = supply(
            "2026-11",
            (1_000, -500),
            Some((1_000 * 10 / 11, -1_000 / 3)),
        );
        assert_eq!(s.uncovered_from.as_deref(), Some("2027-02"), "{s:?}");
        let g = s.debits_growth_percent.unwrap();
        assert!((g - 50.15).abs() < 0.1, "{g}");
        // Steady figures stay covered; no month before, no answer.
        let steady = supply("2026-11", (1_000, -500), Some((1_000, -500)));
        assert_eq!(steady.uncovered_from, None);
        assert!(steady.note.unwrap().contains("covered for the next 36"));
        assert!(
            supply("2026-11", (1, -2), None)
                .note
                .unwrap()
                .contains("not enough")
        );
        assert!(
            supply("2026-11", (1, -2), Some((1, -2)))
                .note
                .unwrap()
                .contains("already")
        );
        assert_eq!(month_after("2026-12", 1).as_deref(), Some("2027-01"));
    }
}
