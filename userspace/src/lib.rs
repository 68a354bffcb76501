//! quid: XDP traffic accounting and settlement for ISP edge routers.
//!
//! One folder per step of the two data paths (see ARCHITECTURE.md at the repository root):
//! a packet goes `kernel` → `metering` → `store` → `ledger` → `metrics`; a node report goes
//! `http` → `settlement` → `store` → `ledger`. `daemon` composes them; nothing imports it but
//! the `quid` binary, whose command bodies are in `cli/` (modules of `main.rs`).

pub mod bindings;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod http;
pub mod kernel;
pub mod ledger;
pub mod metering;
pub mod metrics;
pub mod planner;
pub mod settlement;
pub mod store;
pub mod subscribers;
