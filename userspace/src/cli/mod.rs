//! The `quid` command bodies: `main.rs` parses the command line and calls one of these. Each
//! prints exactly what the command prints (tests and scripts parse it); the daemon itself is
//! `quid::daemon`.

pub mod check;
pub mod checkpoints;
pub mod cluster;
pub mod detach;
pub mod docs;
pub mod export;
pub mod human;
pub mod known;
pub mod ledger;
pub mod logging;
pub mod node;
pub mod operator;
pub mod report;
pub mod running_daemon;
pub mod secret_file;
pub mod statement;
pub mod store_stats;
pub mod subscribers;
pub mod tariff;
pub mod usage;
