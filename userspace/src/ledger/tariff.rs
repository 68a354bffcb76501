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
        // Each product is below 2^128 (u64 × u64); their sum saturates rather than wraps.
        .map(|&(d, k, rate)| u128::from(c.pairs[pair_index(d, k)].bytes) * u128::from(rate) / GB)
        .fold(0u128, u128::saturating_add)
    }

    /// The (negative) ledger amount for traffic going from `before` to `after` in total.
    pub fn usage_debit(&self, before: &SubscriberCounters, after: &SubscriberCounters) -> i64 {
        let due = self.debit_due(after).saturating_sub(self.debit_due(before));
        // i64::MIN + 1 at worst: the negation cannot overflow.
        -(i64::try_from(due).unwrap_or(i64::MAX))
    }

    /// The credit a report's figures earn in full (micro-credits), priced exactly from the
    /// integers the node signed: core-microseconds, byte-seconds and microjoules. Products
    /// are taken in u128 (u64 x u64 always fits) and the sum saturates at i64::MAX, which
    /// `Tariff::check` keeps out of reach at declared capacities.
    pub fn contribution_credit(
        &self,
        cpu_core_micros: u64,
        storage_byte_seconds: u64,
        energy_microjoules: u64,
    ) -> i64 {
        let price = |amount: u64, rate: u64, per: u128| u128::from(amount) * u128::from(rate) / per;
        // Rates are per core-hour, GiB-day and kWh.
        let cpu = price(cpu_core_micros, self.cpu_core_hour, 3_600_000_000);
        let storage = price(
            storage_byte_seconds,
            self.storage_gib_day,
            (1u128 << 30) * 86_400,
        );
        let energy = price(energy_microjoules, self.energy_kwh, 3_600_000_000_000);
        let total = cpu.saturating_add(storage).saturating_add(energy);
        i64::try_from(total).unwrap_or(i64::MAX)
    }

    /// The most one report can earn from a node of this capacity over `max_period_secs`, or
    /// `None` when it does not fit in an amount (i64 micro-credits).
    pub fn max_credit(
        &self,
        cpu_cores: u32,
        storage_bytes: u64,
        max_watts: u32,
        max_period_secs: i64,
    ) -> Option<i64> {
        let secs = u128::try_from(max_period_secs.max(0)).ok()?;
        let price = |capacity: u128, rate: u64, per: u128| -> Option<u128> {
            Some(capacity.checked_mul(secs)?.checked_mul(u128::from(rate))? / per)
        };
        let cpu = price(u128::from(cpu_cores), self.cpu_core_hour, 3_600)?;
        let storage = price(
            u128::from(storage_bytes),
            self.storage_gib_day,
            (1u128 << 30) * 86_400,
        )?;
        let energy = price(u128::from(max_watts), self.energy_kwh, 3_600_000)?;
        i64::try_from(cpu.checked_add(storage)?.checked_add(energy)?).ok()
    }

    /// Refuses a tariff whose amounts could leave i64: a rate or allowance beyond it, or a
    /// report at a node's declared capacity over the longest period earning more than it.
    pub fn check(
        &self,
        nodes: Option<&crate::settlement::nodes::Nodes>,
        max_period_secs: i64,
    ) -> Result<(), TariffError> {
        for (name, rate) in [
            ("cpu_core_hour", self.cpu_core_hour),
            ("storage_gib_day", self.storage_gib_day),
            ("energy_kwh", self.energy_kwh),
            ("download_internet_gb", self.download_internet_gb),
            ("upload_internet_gb", self.upload_internet_gb),
            ("download_grid_gb", self.download_grid_gb),
            ("upload_grid_gb", self.upload_grid_gb),
            ("monthly_allowance", self.monthly_allowance),
        ] {
            if i64::try_from(rate).is_err() {
                return Err(TariffError::Rate { name, rate });
            }
        }
        let mut ids: Vec<&String> = nodes.map(|n| n.by_id.keys().collect()).unwrap_or_default();
        ids.sort();
        for id in ids {
            let Some(n) = nodes.and_then(|all| all.by_id.get(id)) else {
                continue;
            };
            if self
                .max_credit(n.cpu_cores, n.storage_bytes, n.max_watts, max_period_secs)
                .is_none()
            {
                return Err(TariffError::Capacity {
                    node: n.id.clone(),
                    max_period_secs,
                });
            }
        }
        Ok(())
    }
}

/// A tariff quid refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TariffError {
    #[error(
        "tariff.{name} = {rate} is beyond the largest amount quid records \
         (9223372036854775807 micro-credits); lower it"
    )]
    Rate { name: &'static str, rate: u64 },
    #[error(
        "the tariff would credit node `{node}` more than the largest amount quid records \
         (9223372036854775807 micro-credits) for one report at its declared capacity over \
         reports.max_period_secs = {max_period_secs}; lower the contribution rates, the node's \
         capacity or max_period_secs"
    )]
    Capacity { node: String, max_period_secs: i64 },
}

impl Tariff {}

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
        let secs: u64 = 30 * 86_400;
        let credit = t.contribution_credit(
            4 * secs * 1_000_000,
            500 * (1u64 << 30) * secs,
            15 * secs * 1_000_000,
        );
        // 2,880 core-hours x 20,000 + 15,000 GiB-days x 1,000 + 10.8 kWh x 150,000.
        assert_eq!(credit, 57_600_000 + 15_000_000 + 1_620_000);
        assert_eq!(debits + credit, 71_304_000);
    }

    #[test]
    fn a_tariff_that_could_overflow_is_refused_and_pricing_never_wraps() {
        let node = |cores, storage, watts| crate::settlement::nodes::Node {
            id: "pi".into(),
            subscriber: "alice".into(),
            key: ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]).verifying_key(),
            cpu_cores: cores,
            storage_bytes: storage,
            max_watts: watts,
        };
        let nodes = crate::settlement::nodes::Nodes::from_iter([node(4, 1 << 40, 100)]);
        let sane = Tariff {
            cpu_core_hour: 20_000,
            storage_gib_day: 1_000,
            energy_kwh: 150_000,
            ..Tariff::default()
        };
        assert_eq!(sane.check(Some(&nodes), 86_400), Ok(()));
        let extreme = Tariff {
            cpu_core_hour: u64::MAX,
            ..Tariff::default()
        };
        assert!(matches!(
            extreme.check(None, 86_400),
            Err(TariffError::Rate {
                name: "cpu_core_hour",
                ..
            })
        ));
        let steep = Tariff {
            cpu_core_hour: i64::MAX as u64,
            ..Tariff::default()
        };
        assert!(matches!(
            steep.check(Some(&nodes), 86_400),
            Err(TariffError::Capacity { .. })
        ));
        // Pricing saturates, never wraps or panics.
        assert_eq!(
            steep.contribution_credit(u64::MAX, u64::MAX, u64::MAX),
            i64::MAX
        );
        assert_eq!(steep.contribution_credit(0, 0, 0), 0);
        let mut c = SubscriberCounters::default();
        for p in c.pairs.iter_mut() {
            p.bytes = u64::MAX;
        }
        let all = Tariff {
            download_internet_gb: u64::MAX,
            upload_internet_gb: u64::MAX,
            download_grid_gb: u64::MAX,
            upload_grid_gb: u64::MAX,
            ..Tariff::default()
        };
        assert_eq!(
            all.usage_debit(&SubscriberCounters::default(), &c),
            -i64::MAX
        );
    }
}
