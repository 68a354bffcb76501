//! The tariff: what contributions earn and traffic costs, in micro-credits (exact integers).
//!
//! Debits are computed from cumulative bytes (the debit due for all bytes so far, minus what
//! was already debited), so rounding never drifts however short the intervals. Report figures
//! are floored to whole units (core-seconds, byte-seconds, joules) before pricing.

use quid_common::{
    CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters, pair_index,
};
use serde::Deserialize;

/// `[tariff]`; every rate in micro-credits.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    /// Credit per CPU core-hour supplied.
    #[serde(default)]
    pub cpu_core_hour: u64,
    /// Credit per GiB-day of storage supplied.
    #[serde(default)]
    pub storage_gib_day: u64,
    /// Credit per kWh of electricity supplied.
    #[serde(default)]
    pub energy_kwh: u64,
    /// Debit per GB (10^9 bytes) of Internet traffic, per direction.
    #[serde(default)]
    pub download_internet_gb: u64,
    #[serde(default)]
    pub upload_internet_gb: u64,
    /// Debit per GB of grid traffic (free unless set).
    #[serde(default)]
    pub download_grid_gb: u64,
    #[serde(default)]
    pub upload_grid_gb: u64,
    /// Credit every active subscriber receives once a calendar month (UTC).
    #[serde(default)]
    pub monthly_allowance: u64,
}

const GB: u128 = 1_000_000_000;

impl Tariff {
    /// The debit due for all the traffic in `c` (micro-credits, not negated).
    fn debit_due(&self, c: &SubscriberCounters) -> u128 {
        [
            (DIR_DOWNLOAD, CLASS_INTERNET, self.download_internet_gb),
            (DIR_UPLOAD, CLASS_INTERNET, self.upload_internet_gb),
            (DIR_DOWNLOAD, CLASS_GRID, self.download_grid_gb),
            (DIR_UPLOAD, CLASS_GRID, self.upload_grid_gb),
        ]
        .iter()
        .map(|&(d, k, rate)| u128::from(c.pairs[pair_index(d, k)].bytes) * u128::from(rate) / GB)
        .sum()
    }

    /// The (negative) ledger amount for traffic going from `before` to `after` in total.
    pub fn usage_debit(&self, before: &SubscriberCounters, after: &SubscriberCounters) -> i64 {
        let due = self.debit_due(after).saturating_sub(self.debit_due(before));
        -(i64::try_from(due).unwrap_or(i64::MAX))
    }

    /// The credit a report's figures earn in full.
    pub fn contribution_credit(
        &self,
        cpu_core_seconds: f64,
        storage_byte_seconds: f64,
        energy_joules: f64,
    ) -> i64 {
        // Admission guarantees finite, non-negative figures; `as` saturates anyway.
        let whole = |f: f64| f.floor().max(0.0) as u128;
        let cpu = whole(cpu_core_seconds) * u128::from(self.cpu_core_hour) / 3_600;
        let storage = whole(storage_byte_seconds) * u128::from(self.storage_gib_day)
            / ((1u128 << 30) * 86_400);
        let energy = whole(energy_joules) * u128::from(self.energy_kwh) / 3_600_000;
        i64::try_from(cpu + storage + energy).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_of_usage_and_contributions_prices_exactly() {
        let t = Tariff {
            cpu_core_hour: 20_000,        // 0.02 credits per core-hour
            storage_gib_day: 1_000,       // 0.001 credits per GiB-day
            energy_kwh: 150_000,          // 0.15 credits per kWh
            download_internet_gb: 10_000, // 0.01 credits per GB down
            upload_internet_gb: 5_000,
            download_grid_gb: 0,
            upload_grid_gb: 0,
            monthly_allowance: 0,
        };
        // 30 days of 10-second intervals, 1,000,000 bytes down and 250,000 up each, plus grid.
        let mut total = SubscriberCounters::default();
        let mut debits = 0i64;
        for _ in 0..30 * 8640 {
            let before = total;
            total.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes += 1_000_000;
            total.pairs[pair_index(DIR_UPLOAD, CLASS_INTERNET)].bytes += 250_000;
            total.pairs[pair_index(DIR_DOWNLOAD, CLASS_GRID)].bytes += 9_999_999;
            debits += t.usage_debit(&before, &total);
        }
        // 259.2 GB down x 10,000 + 64.8 GB up x 5,000, grid free: no rounding loss.
        assert_eq!(debits, -(2_592_000 + 324_000));
        // A month of one node: 4 cores always on, 500 GiB stored, 15 W continuously.
        let secs = 30.0 * 86_400.0;
        let credit =
            t.contribution_credit(4.0 * secs, 500.0 * (1u64 << 30) as f64 * secs, 15.0 * secs);
        // 2,880 core-hours x 20,000 + 15,000 GiB-days x 1,000 + 10.8 kWh x 150,000.
        assert_eq!(credit, 57_600_000 + 15_000_000 + 1_620_000);
        assert_eq!(debits + credit, 71_304_000);
    }
}
