//! The DHCP lease follower's metrics: lease lines it skipped, active leases no mapping row
//! names, mapping file reloads refused. Its binding events are in `metrics/bindings.rs`.

use prometheus::{IntCounter, IntGauge, Registry};

use super::families::{advance, register};
use crate::bindings::dhcp::figures::DhcpFigures;

/// Every family of the DHCP follower's metrics.
pub const FAMILIES: [&str; 3] = [
    "quid_dhcp_lease_lines_skipped_total",
    "quid_dhcp_leases_unmapped",
    "quid_dhcp_map_reloads_refused_total",
];

/// The DHCP follower's families.
pub struct DhcpMetrics {
    skipped: IntCounter,
    unmapped: IntGauge,
    refused: IntCounter,
}

impl DhcpMetrics {
    /// Registers the families in `registry`.
    pub fn new(registry: &Registry) -> DhcpMetrics {
        DhcpMetrics {
            skipped: register(
                registry,
                IntCounter::new(
                    FAMILIES[0],
                    "Lines of Kea's lease files skipped as unreadable (each logged with file and line).",
                ),
            ),
            unmapped: register(
                registry,
                IntGauge::new(
                    FAMILIES[1],
                    "Active DHCP leases that no row of the mapping file names (not bound).",
                ),
            ),
            refused: register(
                registry,
                IntCounter::new(
                    FAMILIES[2],
                    "DHCP mapping file reloads refused for a bad file (the current mapping stays).",
                ),
            ),
        }
    }

    /// Brings the families up to date.
    pub fn render(&self, f: &DhcpFigures) {
        let (skipped, unmapped, refused) = f.read();
        advance(&self.skipped, skipped);
        self.unmapped
            .set(i64::try_from(unmapped).unwrap_or(i64::MAX));
        advance(&self.refused, refused);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use prometheus::{Encoder, TextEncoder};

    use super::*;

    #[test]
    fn the_follower_s_figures_are_rendered_and_counters_never_go_down() {
        let registry = Registry::new();
        let m = DhcpMetrics::new(&registry);
        let f = DhcpFigures::default();
        f.lines_skipped.store(3, Ordering::Relaxed);
        f.leases_unmapped.store(2, Ordering::Relaxed);
        f.map_reloads_refused.store(1, Ordering::Relaxed);
        m.render(&f);
        f.leases_unmapped.store(0, Ordering::Relaxed);
        m.render(&f);
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut buf)
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        for series in [
            "quid_dhcp_lease_lines_skipped_total 3",
            "quid_dhcp_leases_unmapped 0",
            "quid_dhcp_map_reloads_refused_total 1",
        ] {
            assert!(text.lines().any(|l| l == series), "no {series} in\n{text}");
        }
    }
}
