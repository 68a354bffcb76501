//! The RADIUS accounting client's metric: what became of its requests and of the answers
//! (a response that does not verify shows here).

use prometheus::{IntCounterVec, Registry};

use super::families::{advance, counter_vec};
use crate::radius::accounting_out::outcome::{Counts, Outcome};

/// Every family of the accounting-out metrics (for the dashboards' checks).
pub const FAMILIES: [&str; 1] = ["quid_radius_accounting_out_total"];

/// The accounting-out family.
pub struct AccountingOutMetrics {
    events: IntCounterVec,
}

impl AccountingOutMetrics {
    /// Registers the family in `registry`.
    pub fn new(registry: &Registry) -> AccountingOutMetrics {
        AccountingOutMetrics {
            events: counter_vec(
                registry,
                FAMILIES[0],
                "RADIUS accounting requests to the billing server and their answers, by outcome.",
                &["outcome"],
            ),
        }
    }

    /// Brings the family up to date; every outcome's series exists from the start.
    pub fn render(&self, counts: &Counts) {
        for o in Outcome::ALL {
            advance(&self.events.with_label_values(&[o.label()]), counts.get(o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_a_series() {
        let registry = Registry::new();
        let m = AccountingOutMetrics::new(&registry);
        let counts = Counts::default();
        counts.add(Outcome::BadResponse);
        m.render(&counts);
        let families = registry.gather();
        let series = &families[0].get_metric();
        assert_eq!(series.len(), Outcome::ALL.len());
        let bad = series
            .iter()
            .find(|s| s.get_label()[0].value() == "bad_response")
            .unwrap();
        assert_eq!(bad.get_counter().get_value(), 1.0);
    }
}
