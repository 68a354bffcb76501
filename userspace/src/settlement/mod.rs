//! The report path: what a node sends, who may send it, how it is admitted and stored, and
//! how it is matched against the meter; plus the node-side client that sends it.

pub mod admission;
pub mod audit_routes;
pub mod audits;
pub mod group_commit;
pub mod intake;
pub mod matching;
pub mod node_client;
pub mod nodes;
pub mod outcome;
pub mod rate_budget;
pub mod verifiers;
/// The report format and signature, from the `quid-report` crate the node agent shares.
pub use quid_report::report;
