//! The live bindings' metrics: events per source and outcome (a RADIUS or DHCP peer naming an
//! unknown subscriber shows here), and the sessions live now.

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use super::families::{advance, counter_vec, gauge_vec};
use crate::bindings::{
    counts::BindingCounts,
    request::{BindingSource, Outcome},
};

/// Every family of the bindings' metrics (for the dashboards' checks).
pub const FAMILIES: [&str; 2] = ["quid_binding_events_total", "quid_bindings_active"];

/// The bindings' families.
pub struct BindingMetrics {
    events: IntCounterVec,
    active: IntGaugeVec,
}

impl BindingMetrics {
    /// Registers the families in `registry`.
    pub fn new(registry: &Registry) -> BindingMetrics {
        BindingMetrics {
            events: counter_vec(
                registry,
                "quid_binding_events_total",
                "Address binding events from RADIUS accounting or DHCP leases, by what became of them.",
                &["source", "outcome"],
            ),
            active: gauge_vec(
                registry,
                "quid_bindings_active",
                "Live sessions (RADIUS) or leases (DHCP) binding addresses to subscribers.",
                &["source"],
            ),
        }
    }

    /// Brings the families up to date; every (source, outcome) series exists from the start,
    /// so a rate over it never misses its first event.
    pub fn render(&self, c: &BindingCounts) {
        for source in BindingSource::ALL {
            for outcome in Outcome::ALL {
                advance(
                    &self
                        .events
                        .with_label_values(&[source.as_str(), outcome.as_str()]),
                    c.events(source, outcome),
                );
            }
            let live = c.active.get(&source).copied().unwrap_or(0);
            self.active
                .with_label_values(&[source.as_str()])
                .set(i64::try_from(live).unwrap_or(i64::MAX));
        }
    }
}
