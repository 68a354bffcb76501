//! quid: XDP traffic accounting for ISP edge routers.

pub mod admit;
pub mod books;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod datapath;
pub mod frames;
pub mod grid;
pub mod intake;
pub mod ledger;
pub mod mapped;
pub mod metrics;
pub mod nodes;
pub mod plan;
pub mod registry;
pub mod reload;
pub mod report;
pub mod settle;
pub mod snapshot;
pub mod statement;
pub mod store;
pub mod submit;
pub mod table;
pub mod tariff;
pub mod usage;
