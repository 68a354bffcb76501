//! The daemon's own metrics (durations, maps, reloads, attachments, store size and tiers,
//! intake, HTTP listeners, operator API) through the `prometheus` crate: one registry and its metric handles, made
//! once when the daemon starts and brought up to date on every render.
//!
//! A registry made per render would throw every counter away each interval; kept, a counter
//! series lives as long as the process, and is only ever advanced: the sources are running
//! totals, and a source that went back (it never should) leaves the counter where it was
//! rather than making it go down. Gauge families are cleared before each render, so a label
//! set that is gone (an interface no longer attached) leaves the exposition as it did before.

use std::sync::atomic::Ordering::Relaxed;

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Registry, TextEncoder,
};

use super::families::{advance, counter_vec, gauge_vec, register};
use crate::{
    metrics::status::DaemonStatus,
    store::{Record, Status},
};

/// Buckets of the read and commit durations: a millisecond (a few subscribers) to a minute
/// (beyond any sane interval), dense around the tenths of a second a large table takes.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// The registry of the daemon's own metrics and a handle on each of them.
pub struct HealthMetrics {
    registry: Registry,
    read_seconds: Histogram,
    commit_seconds: Histogram,
    last_interval: IntGauge,
    generation: IntGauge,
    last_reload_ok: IntGauge,
    map_entries: IntGaugeVec,
    map_capacity: IntGaugeVec,
    reloads: IntCounterVec,
    attached: IntGaugeVec,
    subscribers: IntGaugeVec,
    reattachments: IntCounter,
    commit_failures: IntCounter,
    balances_unreadable: IntGauge,
    ledger_head_seq: IntGauge,
    checkpoint_seq: IntGauge,
    checkpoint_time: IntGauge,
    store_bytes: IntGauge,
    store_rows: IntGaugeVec,
    rollup_lag: IntGauge,
    /// Registered the first time the report intake's counts are there.
    reports: Option<ReportMetrics>,
    /// Registered the first time there are HTTP listeners.
    http: Option<HttpMetrics>,
    /// Registered the first time the operator API's counts are there.
    operator: Option<IntCounterVec>,
    /// Registered the first time the shipper's figures are there.
    cluster: Option<super::cluster::ClusterMetrics>,
    /// Registered the first time the bindings' figures are there.
    bindings: Option<super::bindings::BindingMetrics>,
    /// Registered the first time the RADIUS listener's counts are there.
    radius: Option<super::radius::OutcomeMetrics>,
    /// Registered the first time the DHCP follower's figures are there.
    dhcp: Option<super::dhcp::DhcpMetrics>,
    /// Registered the first time the audits' figures are there.
    audits: Option<super::audits::AuditMetrics>,
    /// Registered the first time the accounting client's counts are there.
    accounting_out: Option<super::radius::OutcomeMetrics>,
}

/// The report intake's families.
struct ReportMetrics {
    outcomes: IntCounterVec,
    rejections: IntCounterVec,
}

/// The HTTP listeners' families.
struct HttpMetrics {
    open: IntGaugeVec,
    connections: IntCounterVec,
    timed_out: IntCounterVec,
}

impl Default for HealthMetrics {
    fn default() -> Self {
        HealthMetrics::new()
    }
}

impl HealthMetrics {
    /// Registers the families every daemon has; the intake's, the listeners' and the operator
    /// API's join the first time their counts are there.
    pub fn new() -> HealthMetrics {
        let registry = Registry::new();
        let build = gauge_vec(
            &registry,
            "quid_build_info",
            "Always 1; the labels say which quid runs.",
            &["version", "layout"],
        );
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                &quid_common::LAYOUT_VERSION.to_string(),
            ])
            .set(1);
        HealthMetrics {
            read_seconds: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "quid_read_duration_seconds",
                        "Time each interval took to read every counter.",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                ),
            ),
            commit_seconds: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "quid_commit_duration_seconds",
                        "Time each interval took to commit its usage records.",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                ),
            ),
            last_interval: register(
                &registry,
                IntGauge::new(
                    "quid_last_interval_timestamp_seconds",
                    "End of the last interval read and committed (unix seconds; 0: none yet). \
                     Falling behind the clock means the loop stalled and the figures are stale.",
                ),
            ),
            generation: register(
                &registry,
                IntGauge::new(
                    "quid_table_generation",
                    "Lookup generation packets use (flips on every table change).",
                ),
            ),
            last_reload_ok: register(
                &registry,
                IntGauge::new(
                    "quid_table_last_reload_success",
                    "1 if the last table reload was applied, 0 if it was refused.",
                ),
            ),
            map_entries: gauge_vec(
                &registry,
                "quid_map_entries",
                "Entries in use per kernel map.",
                &["map"],
            ),
            map_capacity: gauge_vec(
                &registry,
                "quid_map_capacity",
                "Capacity per kernel map.",
                &["map"],
            ),
            reloads: counter_vec(
                &registry,
                "quid_table_reloads_total",
                "Table reloads by result.",
                &["result"],
            ),
            attached: gauge_vec(
                &registry,
                "quid_xdp_attached",
                "1 while quid's program is attached to the interface.",
                &["interface", "role", "mode"],
            ),
            subscribers: gauge_vec(
                &registry,
                "quid_subscribers",
                "Subscribers in the books by state.",
                &["state"],
            ),
            reattachments: register(
                &registry,
                IntCounter::new(
                    "quid_xdp_reattachments_total",
                    "Interfaces re-attached after they were deleted and created again.",
                ),
            ),
            commit_failures: register(
                &registry,
                IntCounter::new(
                    "quid_store_commit_failures_total",
                    "Interval commits that failed (disk full, store unwritable); the kernel kept \
                     counting and the next good commit caught up.",
                ),
            ),
            balances_unreadable: register(
                &registry,
                IntGauge::new(
                    "quid_balances_unreadable",
                    "Subscribers whose stored balance is not an exact integer (an edited store): \
                     left out of the balance metrics, logged; recompute them from the ledger.",
                ),
            ),
            ledger_head_seq: register(
                &registry,
                IntGauge::new(
                    "quid_ledger_head_seq",
                    "Sequence number of the ledger's newest entry: compare with a copy of the \
                     checkpoints kept off the router (it never goes down).",
                ),
            ),
            checkpoint_seq: register(
                &registry,
                IntGauge::new(
                    "quid_ledger_checkpoint_seq",
                    "Ledger sequence number the newest signed checkpoint covers (0: none yet).",
                ),
            ),
            checkpoint_time: register(
                &registry,
                IntGauge::new(
                    "quid_ledger_checkpoint_timestamp_seconds",
                    "When the newest checkpoint was signed (unix seconds; 0: none yet).",
                ),
            ),
            store_bytes: register(
                &registry,
                IntGauge::new(
                    "quid_store_bytes",
                    "Size of the store file in bytes (pages in use and free).",
                ),
            ),
            store_rows: gauge_vec(
                &registry,
                "quid_store_rows",
                "Usage rows per resolution tier (interval, hourly, daily).",
                &["tier"],
            ),
            rollup_lag: register(
                &registry,
                IntGauge::new(
                    "quid_rollup_lag_seconds",
                    "How far the usage roll-up is behind: seconds since the oldest row of any \
                     tier should have left it (0 when every tier is within its retention).",
                ),
            ),
            reports: None,
            http: None,
            operator: None,
            cluster: None,
            bindings: None,
            radius: None,
            dhcp: None,
            audits: None,
            accounting_out: None,
            registry,
        }
    }

    /// Records one interval read and committed: its durations and its end (unix seconds).
    pub fn interval(&self, read_seconds: f64, commit_seconds: f64, end: u64) {
        self.read_seconds.observe(read_seconds);
        self.commit_seconds.observe(commit_seconds);
        self.last_interval
            .set(i64::try_from(end).unwrap_or(i64::MAX));
    }

    /// Brings every metric up to date with `status` and the books, and encodes the registry.
    pub fn render(&mut self, records: &[&Record], s: &DaemonStatus) -> String {
        self.generation.set(i64::from(s.generation));
        self.last_reload_ok.set(i64::from(s.last_reload_ok));
        self.map_entries.reset();
        self.map_capacity.reset();
        // Gauges are i64: a figure beyond it (never a real map) shows as i64::MAX.
        for (map, used, cap) in &s.maps {
            self.map_entries
                .with_label_values(&[*map])
                .set(i64::try_from(*used).unwrap_or(i64::MAX));
            self.map_capacity
                .with_label_values(&[*map])
                .set(i64::try_from(*cap).unwrap_or(i64::MAX));
        }
        advance(&self.reloads.with_label_values(&["ok"]), s.reloads_ok);
        advance(
            &self.reloads.with_label_values(&["error"]),
            s.reloads_failed,
        );
        self.attached.reset();
        for (iface, role, mode, up) in &s.attachments {
            self.attached
                .with_label_values(&[iface.as_str(), role.as_str(), mode.as_str()])
                .set(i64::from(*up));
        }
        let active = records
            .iter()
            .filter(|r| r.status == Status::Active)
            .count();
        self.subscribers
            .with_label_values(&["active"])
            .set(i64::try_from(active).unwrap_or(i64::MAX));
        self.subscribers
            .with_label_values(&["removed"])
            .set(i64::try_from(records.len() - active).unwrap_or(i64::MAX));
        advance(&self.reattachments, s.reattachments);
        advance(&self.commit_failures, s.commit_failures);
        self.balances_unreadable
            .set(i64::try_from(s.bad_balances).unwrap_or(i64::MAX));
        self.ledger_head_seq.set(s.anchor.head_seq);
        let (cp_seq, cp_at) = s.anchor.checkpoint.unwrap_or((0, 0));
        self.checkpoint_seq.set(cp_seq);
        self.checkpoint_time.set(cp_at);
        self.store_bytes
            .set(i64::try_from(s.store_bytes).unwrap_or(i64::MAX));
        self.store_rows.reset();
        for (tier, rows) in &s.store_rows {
            self.store_rows
                .with_label_values(&[*tier])
                .set(i64::try_from(*rows).unwrap_or(i64::MAX));
        }
        self.rollup_lag.set(s.rollup_lag);
        if let Some(c) = &s.reports {
            let registry = &self.registry;
            let m = self.reports.get_or_insert_with(|| ReportMetrics {
                outcomes: counter_vec(
                    registry,
                    "quid_reports_total",
                    "Node reports by outcome.",
                    &["outcome"],
                ),
                rejections: counter_vec(
                    registry,
                    "quid_report_rejections_total",
                    "Refused node reports by reason.",
                    &["reason"],
                ),
            });
            for (v, map) in [(&m.outcomes, &c.outcomes), (&m.rejections, &c.rejections)] {
                for (k, n) in map {
                    advance(&v.with_label_values(&[*k]), *n);
                }
            }
        }
        self.render_http(s);
        if let Some(stats) = &s.cluster {
            let registry = &self.registry;
            self.cluster
                .get_or_insert_with(|| super::cluster::ClusterMetrics::new(registry))
                .render(stats);
        }
        if let Some(audits) = &s.audits {
            let registry = &self.registry;
            self.audits
                .get_or_insert_with(|| super::audits::AuditMetrics::new(registry))
                .render(audits);
        }
        if let Some(counts) = &s.bindings {
            let registry = &self.registry;
            self.bindings
                .get_or_insert_with(|| super::bindings::BindingMetrics::new(registry))
                .render(counts);
        }
        if let Some(counts) = &s.radius {
            let registry = &self.registry;
            self.radius
                .get_or_insert_with(|| {
                    use super::radius::{FAMILIES, HELP, OutcomeMetrics};
                    OutcomeMetrics::new(registry, FAMILIES[0], HELP)
                })
                .render(counts);
        }
        if let Some(figures) = &s.dhcp {
            let registry = &self.registry;
            self.dhcp
                .get_or_insert_with(|| super::dhcp::DhcpMetrics::new(registry))
                .render(figures);
        }
        if let Some(counts) = &s.accounting_out {
            let registry = &self.registry;
            self.accounting_out
                .get_or_insert_with(|| {
                    use super::accounting_out::{FAMILIES, HELP};
                    super::radius::OutcomeMetrics::new(registry, FAMILIES[0], HELP)
                })
                .render(counts);
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The listeners' connection counts and the operator API's requests.
    fn render_http(&mut self, s: &DaemonStatus) {
        let registry = &self.registry;
        if !s.http.is_empty() {
            let m = self.http.get_or_insert_with(|| HttpMetrics {
                open: gauge_vec(
                    registry,
                    "quid_http_connections_open",
                    "Connections open now per listener.",
                    &["listener"],
                ),
                connections: counter_vec(
                    registry,
                    "quid_http_connections_total",
                    "Connections per listener by outcome: accepted, or closed at once (listener \
                     full, too many from one address, failed TLS handshake).",
                    &["listener", "outcome"],
                ),
                timed_out: counter_vec(
                    registry,
                    "quid_http_requests_timed_out_total",
                    "Requests answered 408 because they took longer than \
                     http.request_timeout_secs.",
                    &["listener"],
                ),
            });
            m.open.reset();
            for (name, st) in &s.http {
                m.open
                    .with_label_values(&[*name])
                    .set(i64::try_from(st.open.load(Relaxed)).unwrap_or(i64::MAX));
                for (outcome, n) in [
                    ("accepted", &st.accepted),
                    ("refused_full", &st.refused_full),
                    ("refused_per_ip", &st.refused_per_ip),
                    ("tls_failed", &st.tls_failed),
                ] {
                    advance(
                        &m.connections.with_label_values(&[*name, outcome]),
                        n.load(Relaxed),
                    );
                }
                advance(
                    &m.timed_out.with_label_values(&[*name]),
                    st.timed_out.load(Relaxed),
                );
            }
        }
        if let Some(counts) = &s.operator {
            let v = self.operator.get_or_insert_with(|| {
                counter_vec(
                    registry,
                    "quid_operator_requests_total",
                    "Operator API requests by action and outcome (missing_credential and \
                     bad_credential are refused logins).",
                    &["action", "outcome"],
                )
            });
            // Present from the start, so a rate() over refused logins has a series to work on.
            for outcome in ["ok", "missing_credential", "bad_credential"] {
                v.with_label_values(&["reload", outcome]);
            }
            if let Ok(c) = counts.lock() {
                for ((action, outcome), n) in c.iter() {
                    advance(&v.with_label_values(&[*action, *outcome]), *n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn every_family_registers() {
        // The families registered later (intake, listeners, operator API) join too: a bad or
        // duplicate name anywhere would panic here rather than in a daemon.
        let mut m = HealthMetrics::new();
        let s = DaemonStatus {
            reports: Some(crate::settlement::intake::Counts::default()),
            http: vec![("metrics", std::sync::Arc::default())],
            operator: Some(crate::http::operator::Counts::default()),
            maps: vec![("SUB_V4", u64::MAX, u64::MAX)],
            ..DaemonStatus::default()
        };
        let text = m.render(&[], &s);
        assert!(m.reports.is_some() && m.http.is_some() && m.operator.is_some());
        assert!(text.contains("quid_operator_requests_total{"), "{text}");
        // A figure beyond a gauge's i64 saturates at i64::MAX instead of wrapping to -1.
        assert!(
            value(&text, "quid_map_entries{map=\"SUB_V4\"}") > 9.2e18,
            "{text}"
        );
    }

    /// Read and commit times are histograms (quantiles over any window), not gauges of the
    /// last interval; the end of the last interval is a timestamp an alert can age.
    #[test]
    fn interval_durations_are_histograms_with_the_last_interval_time() {
        let mut m = HealthMetrics::new();
        m.interval(0.003, 0.4, 1_767_225_610);
        m.interval(0.002, 2.5, 1_767_225_620);
        let text = m.render(&[], &DaemonStatus::default());
        for family in ["quid_read_duration_seconds", "quid_commit_duration_seconds"] {
            assert!(
                text.contains(&format!("# TYPE {family} histogram")),
                "{text}"
            );
            assert_eq!(value(&text, &format!("{family}_count")), 2.0);
            assert_eq!(
                value(&text, &format!("{family}_bucket{{le=\"+Inf\"}}")),
                2.0
            );
        }
        assert_eq!(value(&text, "quid_commit_duration_seconds_sum"), 2.9);
        assert_eq!(
            value(&text, "quid_last_interval_timestamp_seconds"),
            1_767_225_620.0
        );
    }

    #[test]
    fn one_registry_counters_follow_their_totals_and_never_go_down() {
        let mut m = HealthMetrics::new();
        let mut s = DaemonStatus {
            reloads_ok: 3,
            commit_failures: 2,
            attachments: vec![("eth0".into(), "downstream".into(), "native".into(), true)],
            ..DaemonStatus::default()
        };
        let first = m.render(&[], &s);
        assert_eq!(
            value(&first, "quid_table_reloads_total{result=\"ok\"}"),
            3.0
        );
        assert!(
            first.contains("quid_xdp_attached{interface=\"eth0\""),
            "{first}"
        );
        // Rendering the same status again gives the same text: nothing is counted twice.
        assert_eq!(m.render(&[], &s), first);
        s.reloads_ok = 5;
        s.attachments.clear();
        let second = m.render(&[], &s);
        assert_eq!(
            value(&second, "quid_table_reloads_total{result=\"ok\"}"),
            5.0
        );
        // A gauge's label set that is gone leaves the exposition.
        assert!(!second.contains("quid_xdp_attached{"), "{second}");
        // A total that went back leaves the counter where it was.
        s.commit_failures = 1;
        let third = m.render(&[], &s);
        assert_eq!(value(&third, "quid_store_commit_failures_total"), 2.0);
        // The store's gauges follow their figures both ways.
        s.store_bytes = 4096;
        s.store_rows = vec![("interval", 7), ("hourly", 2)];
        s.rollup_lag = 90;
        let fourth = m.render(&[], &s);
        assert_eq!(value(&fourth, "quid_store_bytes"), 4096.0);
        assert_eq!(value(&fourth, "quid_store_rows{tier=\"hourly\"}"), 2.0);
        assert_eq!(value(&fourth, "quid_rollup_lag_seconds"), 90.0);
        s.rollup_lag = 0;
        assert_eq!(value(&m.render(&[], &s), "quid_rollup_lag_seconds"), 0.0);
    }
}
