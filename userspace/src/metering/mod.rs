//! From the kernel's running counters to per-subscriber usage: interval deltas, usage records,
//! the totals snapshot and `quid usage`.

pub mod interval;
pub mod snapshot;
pub mod usage_query;
