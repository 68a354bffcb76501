//! The storage audits' metrics: each node's audits by outcome, its score and fill, and the
//! refusals of audit requests by reason (a lying or replaying node shows here).

use std::collections::BTreeMap;

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::families::{advance, counter_vec, gauge_vec, register};
use crate::settlement::audits::NodeFigures;

/// Every family of the audits' metrics.
pub const FAMILIES: [&str; 5] = [
    "quid_audits_total",
    "quid_audit_score",
    "quid_audit_disqualified",
    "quid_audit_fill_chunks",
    "quid_audit_refusals_total",
];

/// What the exposition needs of the audits: per node, and refusals by reason.
#[derive(Debug, Clone, Default)]
pub struct AuditStatus {
    pub nodes: BTreeMap<String, NodeFigures>,
    pub refusals: BTreeMap<&'static str, u64>,
}

/// The audits' families.
pub struct AuditMetrics {
    audits: IntCounterVec,
    score: GaugeVec,
    disqualified: IntGaugeVec,
    fill: IntGaugeVec,
    refusals: IntCounterVec,
}

impl AuditMetrics {
    /// Registers the families in `registry`.
    pub fn new(registry: &Registry) -> AuditMetrics {
        AuditMetrics {
            audits: counter_vec(
                registry,
                "quid_audits_total",
                "Storage audits of each node since the daemon started, by outcome.",
                &["node", "outcome"],
            ),
            score: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "quid_audit_score",
                        "Each node's audit score (1: every recent audit passed; below 0.96 disqualified).",
                    ),
                    &["node"],
                ),
            ),
            disqualified: gauge_vec(
                registry,
                "quid_audit_disqualified",
                "1 when the node's audit score fell below 0.96: it earns no storage credit.",
                &["node"],
            ),
            fill: gauge_vec(
                registry,
                "quid_audit_fill_chunks",
                "Chunks of 16 KiB of each node's fill: held (as the node said, within what was sent) and total.",
                &["node", "of"],
            ),
            refusals: counter_vec(
                registry,
                "quid_audit_refusals_total",
                "Audit requests refused and audits failed, by reason.",
                &["reason"],
            ),
        }
    }

    /// Brings the families up to date.
    pub fn render(&self, s: &AuditStatus) {
        for (node, f) in &s.nodes {
            advance(&self.audits.with_label_values(&[node, "passed"]), f.passed);
            advance(&self.audits.with_label_values(&[node, "failed"]), f.failed);
            self.score.with_label_values(&[node]).set(f.score);
            self.disqualified
                .with_label_values(&[node])
                .set(i64::from(f.disqualified));
            let int = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
            self.fill
                .with_label_values(&[node, "held"])
                .set(int(f.filled_chunks));
            self.fill
                .with_label_values(&[node, "total"])
                .set(int(f.total_chunks));
        }
        for (reason, n) in &s.refusals {
            advance(&self.refusals.with_label_values(&[*reason]), *n);
        }
    }
}
