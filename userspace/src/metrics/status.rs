//! What the daemon knows of itself between intervals (durations, maps, reloads, listeners),
//! handed to the exposition with the books.

/// The daemon's state that is not in the books.
#[derive(Debug, Clone, Default)]
pub struct DaemonStatus {
    /// (map, entries in use, capacity).
    pub maps: Vec<(&'static str, u64, u64)>,
    pub generation: u32,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last_reload_ok: bool,
    /// (interface, role, mode, attached).
    pub attachments: Vec<(String, String, String, bool)>,
    /// The report intake's counts, when it runs.
    pub reports: Option<crate::settlement::intake::Counts>,
    /// The storage audits' figures, when they run.
    pub audits: Option<super::audits::AuditStatus>,
    /// Balances in micro-credits.
    pub balances: std::collections::HashMap<String, i64>,
    /// Pending (unsettled) usage debits in micro-credits.
    pub pending: std::collections::HashMap<String, i64>,
    /// Subscribers whose balance row is not an exact integer (left out of `balances`).
    pub bad_balances: usize,
    /// Settled contributions: cpu core-seconds, storage byte-seconds, joules (in id order,
    /// walked alongside the books' subscribers).
    pub contributions: std::collections::BTreeMap<String, [f64; 3]>,
    /// Interfaces re-attached after they were deleted and created again.
    pub reattachments: u64,
    /// Interval commits that failed (disk full, store unwritable); counting went on.
    pub commit_failures: u64,
    /// The store file's size in bytes (pages in use and free).
    pub store_bytes: u64,
    /// Rows per usage tier (tier name, rows).
    pub store_rows: Vec<(&'static str, u64)>,
    /// Seconds the usage roll-up is behind its retention (0: every tier within it).
    pub rollup_lag: i64,
    /// Each running HTTP listener's connection counts.
    pub http: Vec<(
        &'static str,
        std::sync::Arc<crate::http::serve::ListenerStats>,
    )>,
    /// The operator API's requests per (action, outcome), when it runs.
    pub operator: Option<crate::http::operator::Counts>,
    /// The ledger's head and its newest signed checkpoint.
    pub anchor: LedgerAnchor,
    /// The shipper's figures, when a shared store is configured.
    pub cluster: Option<std::sync::Arc<crate::cluster::stats::ShipStats>>,
    /// The live bindings' figures, when a binding source (RADIUS, DHCP) is configured.
    pub bindings: Option<crate::bindings::counts::BindingCounts>,
    /// The RADIUS accounting listener's counts per outcome, when it runs.
    pub radius: Option<std::sync::Arc<crate::radius::outcome::Counts>>,
    /// The DHCP lease follower's figures, when `[dhcp]` is configured.
    pub dhcp: Option<std::sync::Arc<crate::bindings::dhcp::figures::DhcpFigures>>,
    /// The RADIUS accounting client's counts per outcome, when `[accounting_out]` runs.
    pub accounting_out: Option<std::sync::Arc<crate::radius::accounting_out::outcome::Counts>>,
}

/// The ledger's head sequence number and the newest checkpoint's, for the metrics that let an
/// operator keep checkpoints off the router (and alert when they stop).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerAnchor {
    pub head_seq: i64,
    /// The newest checkpoint's ledger sequence number and signing time (unix seconds).
    pub checkpoint: Option<(i64, i64)>,
}
