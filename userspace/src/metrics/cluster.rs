//! The shipper's metrics: how much waits in the outbox, how far the shared store is behind,
//! whether the database answers, and what has been shipped (labelled with the router id, so
//! a fleet dashboard can sum or compare routers).

use std::sync::atomic::Ordering::Relaxed;

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use super::families::{advance, counter_vec, gauge_vec};
use crate::cluster::stats::ShipStats;

/// Every family of the shipper's metrics (for the dashboards' checks).
pub const FAMILIES: [&str; 7] = [
    "quid_cluster_database_up",
    "quid_cluster_outbox_batches",
    "quid_cluster_outbox_rows",
    "quid_cluster_shipping_lag_seconds",
    "quid_cluster_shipped_until_seconds",
    "quid_cluster_shipped_total",
    "quid_cluster_shipping_failures_total",
];

/// The shipper's families.
pub struct ClusterMetrics {
    up: IntGaugeVec,
    outbox_batches: IntGaugeVec,
    outbox_rows: IntGaugeVec,
    lag: IntGaugeVec,
    shipped_until: IntGaugeVec,
    shipped: IntCounterVec,
    failures: IntCounterVec,
}

impl ClusterMetrics {
    /// Registers the families in `registry`.
    pub fn new(registry: &Registry) -> ClusterMetrics {
        let r = &["router"];
        ClusterMetrics {
            up: gauge_vec(
                registry,
                "quid_cluster_database_up",
                "1 when the shared store answered the shipper's last attempt.",
                r,
            ),
            outbox_batches: gauge_vec(
                registry,
                "quid_cluster_outbox_batches",
                "Sealed batches in this router's outbox, not yet in the shared store.",
                r,
            ),
            outbox_rows: gauge_vec(
                registry,
                "quid_cluster_outbox_rows",
                "Usage rows in those batches.",
                r,
            ),
            lag: gauge_vec(
                registry,
                "quid_cluster_shipping_lag_seconds",
                "Seconds of this router's sealed usage the shared store does not hold yet.",
                r,
            ),
            shipped_until: gauge_vec(
                registry,
                "quid_cluster_shipped_until_seconds",
                "Unix time up to which the shared store holds this router's usage.",
                r,
            ),
            shipped: counter_vec(
                registry,
                "quid_cluster_shipped_total",
                "What this router shipped to the shared store, by kind (batches, usage_rows, reports).",
                &["router", "kind"],
            ),
            failures: counter_vec(
                registry,
                "quid_cluster_shipping_failures_total",
                "Shipping attempts that failed (database unreachable, or a transaction refused).",
                r,
            ),
        }
    }

    /// Brings the families up to date with the shipper's figures.
    pub fn render(&self, s: &ShipStats) {
        let r = [s.router.as_str()];
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.up
            .with_label_values(&r)
            .set(i64::from(s.database_up.load(Relaxed)));
        self.outbox_batches
            .with_label_values(&r)
            .set(g(s.outbox_batches.load(Relaxed)));
        self.outbox_rows
            .with_label_values(&r)
            .set(g(s.outbox_rows.load(Relaxed)));
        self.lag.with_label_values(&r).set(s.lag_secs());
        self.shipped_until
            .with_label_values(&r)
            .set(s.shipped_until.load(Relaxed));
        for (kind, n) in [
            ("batches", &s.shipped_batches),
            ("usage_rows", &s.shipped_rows),
            ("reports", &s.shipped_reports),
        ] {
            advance(
                &self.shipped.with_label_values(&[s.router.as_str(), kind]),
                n.load(Relaxed),
            );
        }
        advance(
            &self.failures.with_label_values(&r),
            s.failures.load(Relaxed),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_rendered_with_the_router_label() {
        let registry = Registry::new();
        let m = ClusterMetrics::new(&registry);
        let stats = ShipStats {
            router: "pop-1".into(),
            ..ShipStats::default()
        };
        stats.shipped_rows.store(5, Relaxed);
        m.render(&stats);
        let mut buf = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut buf,
        )
        .unwrap();
        let text = String::from_utf8(buf).unwrap();
        for family in FAMILIES {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family}:\n{text}"
            );
        }
        assert!(
            text.contains("quid_cluster_shipped_total{kind=\"usage_rows\",router=\"pop-1\"} 5"),
            "{text}"
        );
    }
}
