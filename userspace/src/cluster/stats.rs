//! What the shipper reports of itself between intervals: the metrics read it (outbox depth,
//! shipping lag, database reachability) and `quid cluster status` shows the shared store's side.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

/// The shipper's running figures, shared with the metrics (all relaxed: each is read alone).
#[derive(Debug, Default)]
pub struct ShipStats {
    /// This router's id (the metrics' `router` label).
    pub router: String,
    /// The shared store answered the last attempt.
    pub database_up: AtomicBool,
    /// Batches in the local outbox not yet shipped.
    pub outbox_batches: AtomicU64,
    /// Usage rows in those batches.
    pub outbox_rows: AtomicU64,
    /// The end (unix seconds) of the newest usage the shared store holds from this router.
    pub shipped_until: AtomicI64,
    /// The end of the newest usage sealed locally (shipped or not).
    pub sealed_until: AtomicI64,
    /// Batches shipped since the daemon started.
    pub shipped_batches: AtomicU64,
    /// Usage rows (per subscriber and hour, as sent) shipped since the daemon started.
    pub shipped_rows: AtomicU64,
    /// Reports shipped since the daemon started.
    pub shipped_reports: AtomicU64,
    /// Shipments that failed (database unreachable, refused, or a transaction error).
    pub failures: AtomicU64,
}

impl ShipStats {
    /// Records the outbox's depth as the store reports it.
    pub fn outbox(&self, d: &crate::store::OutboxDepth) {
        self.outbox_batches.store(d.batches, Relaxed);
        self.outbox_rows.store(d.rows, Relaxed);
        if let Some(until) = d.sealed_until {
            self.sealed_until.fetch_max(until, Relaxed);
        }
    }

    /// Seconds the shared store is behind this router's sealed usage (0: caught up).
    pub fn lag_secs(&self) -> i64 {
        let sealed = self.sealed_until.load(Relaxed);
        let shipped = self.shipped_until.load(Relaxed);
        if self.outbox_batches.load(Relaxed) == 0 {
            0
        } else {
            sealed.saturating_sub(shipped).max(0)
        }
    }
}
