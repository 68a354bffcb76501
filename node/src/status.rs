//! `quid-node status`: what the outbox says, as lines a person reads.

use std::fmt::Write as _;

use crate::outbox::{Entry, Outbox, OutboxError};

fn describe(e: &Entry) -> String {
    match &e.report {
        None => format!(
            "anchor at {} (no report)",
            quid_report::report::rfc3339(e.period_end)
        ),
        Some(r) => format!(
            "seq {} {}..{} cpu_core_micros {} storage_byte_seconds {} energy_microjoules {} ({}) grid_bytes_sent {} grid_bytes_received {}{}",
            r.seq,
            r.period_start,
            r.period_end,
            r.cpu_core_micros,
            r.storage_byte_seconds,
            r.energy_microjoules,
            e.energy_source,
            r.grid_bytes_sent,
            r.grid_bytes_received,
            e.refused
                .as_ref()
                .map(|w| format!(" REFUSED: {w}"))
                .unwrap_or_default()
        ),
    }
}

/// The status text of the state folder behind `outbox`.
pub fn text(outbox: &Outbox) -> Result<String, OutboxError> {
    let mut out = String::new();
    let pending = outbox.pending()?;
    match outbox.done()? {
        Some(d) => {
            let _ = writeln!(out, "last settled: {}", describe(&d));
        }
        None => out.push_str("last settled: none (the agent has not run yet)\n"),
    }
    let _ = writeln!(out, "outbox: {} report(s) waiting", pending.len());
    for e in &pending {
        let _ = writeln!(out, "  {}", describe(e));
    }
    Ok(out)
}
