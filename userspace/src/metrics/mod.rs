//! The Prometheus exposition of counters, balances and the daemon's own health.

pub mod exposition;
