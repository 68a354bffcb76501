//! The Prometheus exposition of counters, balances and the daemon's own health, and the
//! `/metrics` route that serves it.

pub mod accounting_out;
pub mod audits;
pub mod bindings;
pub mod cluster;
pub mod dhcp;
pub mod exposition;
pub mod families;
pub mod health;
pub mod in_order;
pub mod process;
pub mod radius;
pub mod route;
pub mod status;
pub mod tally;
