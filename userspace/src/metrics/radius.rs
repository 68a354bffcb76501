//! The RADIUS accounting listener's metric: every datagram by what became of it (forgeries,
//! unknown clients and unknown subscribers show here).

use prometheus::{IntCounterVec, Registry};

use super::families::{advance, counter_vec};
use crate::radius::outcome::{Counts, Outcome};

/// Every family of the RADIUS metrics (for the dashboards' checks).
pub const FAMILIES: [&str; 1] = ["quid_radius_requests_total"];

/// The RADIUS family.
pub struct RadiusMetrics {
    requests: IntCounterVec,
}

impl RadiusMetrics {
    /// Registers the family in `registry`.
    pub fn new(registry: &Registry) -> RadiusMetrics {
        RadiusMetrics {
            requests: counter_vec(
                registry,
                "quid_radius_requests_total",
                "Datagrams at the RADIUS accounting port, by what became of them.",
                &["outcome"],
            ),
        }
    }

    /// Brings the family up to date; every outcome's series exists from the start.
    pub fn render(&self, counts: &Counts) {
        for o in Outcome::ALL {
            advance(
                &self.requests.with_label_values(&[o.label()]),
                counts.get(o),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_a_series() {
        let registry = Registry::new();
        let m = RadiusMetrics::new(&registry);
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
