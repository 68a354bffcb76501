//! Settlement periods: usage debits enter the ledger once per period per subscriber (UTC
//! boundaries), not once per interval, so the hash chain grows by one entry per subscriber per
//! day instead of 8,640. The traffic of the period not yet settled is pending (kept durably in
//! the books and shown beside the balance).
//!
//! Which period traffic belongs to: an interval's traffic belongs to the period holding its
//! last second (`end - 1`), that is the period it was read in. An interval that straddles a
//! boundary, and the first interval after the daemon was down across one or more boundaries,
//! therefore belongs wholly to the later period; what was pending before the gap is settled
//! as its own period's debit at the first commit after the boundary.

use serde::Deserialize;

use crate::clock::{self, ClockError};

/// `[settlement] period`: how often usage debits enter the ledger.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SettlementPeriod {
    /// Every UTC hour.
    Hourly,
    /// Every UTC day (the default: hourly detail stays in the usage rows).
    #[default]
    Daily,
    /// Every UTC calendar month.
    Monthly,
}

impl SettlementPeriod {
    /// `[start, end)` of the period holding unix time `t` (UTC boundaries).
    pub fn bounds(self, t: u64) -> Result<(u64, u64), ClockError> {
        let fixed = |len: u64| {
            let start = t - t % len;
            start
                .checked_add(len)
                .map(|end| (start, end))
                .ok_or(ClockError::OutOfRange(i64::MAX))
        };
        match self {
            SettlementPeriod::Hourly => fixed(3_600),
            SettlementPeriod::Daily => fixed(86_400),
            SettlementPeriod::Monthly => {
                let at = i64::try_from(t).map_err(|_| ClockError::OutOfRange(i64::MAX))?;
                let month = clock::month_number(at)?;
                let (from, to) =
                    clock::month_bounds(&format!("{:04}-{:02}", month / 100, month % 100))?;
                let unsigned = |s: i64| u64::try_from(s).map_err(|_| ClockError::OutOfRange(s));
                Ok((unsigned(from)?, unsigned(to)?))
            }
        }
    }

    /// The period's name as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SettlementPeriod::Hourly => "hourly",
            SettlementPeriod::Daily => "daily",
            SettlementPeriod::Monthly => "monthly",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_have_utc_boundaries() {
        let (nov, dec) = clock::month_bounds("2026-11").unwrap();
        let (nov, dec) = (u64::try_from(nov).unwrap(), u64::try_from(dec).unwrap());
        let t = nov + 86_400 * 29 + 3_600 * 23 + 59;
        assert_eq!(
            SettlementPeriod::Hourly.bounds(t).unwrap(),
            (t - 59, t - 59 + 3_600)
        );
        assert_eq!(
            SettlementPeriod::Daily.bounds(t).unwrap(),
            (nov + 86_400 * 29, dec)
        );
        assert_eq!(SettlementPeriod::Monthly.bounds(t).unwrap(), (nov, dec));
        assert_eq!(SettlementPeriod::Monthly.bounds(dec).unwrap().0, dec);
        let parsed: std::collections::HashMap<String, SettlementPeriod> =
            toml::from_str("a = \"hourly\"\nb = \"monthly\"").unwrap();
        assert_eq!(parsed["b"], SettlementPeriod::Monthly);
        assert_eq!(SettlementPeriod::default().as_str(), "daily");
    }
}
