//! The RADIUS metrics: every datagram at the accounting port by what became of it (forgeries,
//! unknown clients and unknown subscribers show here), and the accounting client's requests
//! to the billing server by outcome. One counter family per endpoint, a series per outcome.

use prometheus::{IntCounterVec, Registry};

use super::families::{advance, counter_vec};
use crate::radius::outcome::{Labelled, OutcomeCounts};

/// Every family of the RADIUS listener's metrics (for the dashboards' checks).
pub const FAMILIES: [&str; 1] = ["quid_radius_requests_total"];
/// The listener family's help.
pub const HELP: &str = "Datagrams at the RADIUS accounting port, by what became of them.";

/// A family counting a RADIUS endpoint's outcomes.
pub struct OutcomeMetrics {
    family: IntCounterVec,
}

impl OutcomeMetrics {
    /// Registers the family `name` in `registry`.
    pub fn new(registry: &Registry, name: &str, help: &str) -> OutcomeMetrics {
        OutcomeMetrics {
            family: counter_vec(registry, name, help, &["outcome"]),
        }
    }

    /// Brings the family up to date; every outcome's series exists from the start.
    pub fn render<O: Labelled>(&self, counts: &OutcomeCounts<O>) {
        for &o in O::ALL {
            advance(&self.family.with_label_values(&[o.label()]), counts.get(o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::outcome::{Counts, Outcome};

    #[test]
    fn every_outcome_is_a_series() {
        let registry = Registry::new();
        let m = OutcomeMetrics::new(&registry, FAMILIES[0], HELP);
        let counts = Counts::default();
        counts.add(Outcome::BadAuthenticator);
        counts.add(Outcome::BadAuthenticator);
        m.render(&counts);
        let families = registry.gather();
        let series = &families[0].get_metric();
        assert_eq!(series.len(), Outcome::ALL.len());
        let bad = series
            .iter()
            .find(|s| s.get_label()[0].value() == "bad_authenticator")
            .unwrap();
        assert_eq!(bad.get_counter().get_value(), 2.0);
    }
}
