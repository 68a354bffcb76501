//! The RADIUS accounting client's metric: what became of its requests to the billing server
//! and of the answers (a response that does not verify shows here). Rendered by
//! [`super::radius::OutcomeMetrics`].

/// Every family of the accounting-out metrics (for the dashboards' checks).
pub const FAMILIES: [&str; 1] = ["quid_radius_accounting_out_total"];
/// The family's help.
pub const HELP: &str =
    "RADIUS accounting requests to the billing server and their answers, by outcome.";
