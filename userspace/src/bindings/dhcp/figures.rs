//! The DHCP follower's own figures, shared with the metrics: what it could not use.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counted by the follower's thread, read where the metrics are rendered.
#[derive(Debug, Default)]
pub struct DhcpFigures {
    /// Lease lines skipped as unreadable, since start.
    pub lines_skipped: AtomicU64,
    /// Active leases that no row of the mapping file names, now.
    pub leases_unmapped: AtomicU64,
    /// Mapping file reloads refused (a bad file), since start.
    pub map_reloads_refused: AtomicU64,
}

impl DhcpFigures {
    /// The three figures: (lines skipped, leases unmapped, map reloads refused).
    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.lines_skipped.load(Ordering::Relaxed),
            self.leases_unmapped.load(Ordering::Relaxed),
            self.map_reloads_refused.load(Ordering::Relaxed),
        )
    }
}
