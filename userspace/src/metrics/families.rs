//! Registering the daemon's own metric families in one registry, and advancing a counter to a
//! running total without ever lowering it: shared by the health and shipping metrics.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Raises `counter` to the running total `to`; never lowers it (a counter never goes down).
pub fn advance(counter: &IntCounter, to: u64) {
    let now = counter.get();
    if to > now {
        counter.inc_by(to - now);
    }
}

/// Registers one metric in `registry` (names are ours, so they are valid and unique).
#[expect(
    clippy::expect_used,
    reason = "static names, help texts and labels, each registered once: valid and unique, as the \
              test every_family_registers checks by registering every family"
)]
pub fn register<M>(registry: &Registry, metric: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let m = metric.expect("valid metric name");
    registry
        .register(Box::new(m.clone()))
        .expect("registered once");
    m
}

/// A gauge family registered in `registry`.
pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

/// A counter family registered in `registry`.
pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels))
}
