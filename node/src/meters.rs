//! Reading every configured meter at once into the running totals an outbox entry keeps.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    counter::{Counter, Rollover},
    cpu, grid,
};

/// The running totals of every meter (units: core-microseconds, microjoules, bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meters {
    /// The grid cgroup's `usage_usec`.
    pub cpu: Counter,
    /// The energy source in microjoules.
    pub energy: Counter,
    /// Bytes the grid interface sent.
    pub grid_sent: Counter,
    /// Bytes the grid interface received.
    pub grid_received: Counter,
}

impl Meters {
    /// Reads every configured meter and adds to the totals. A meter that cannot be read
    /// keeps its last reading (what it counts meanwhile goes to the next readable sample);
    /// the returned problems say which and why.
    pub fn sample(&mut self, config: &Config, http: &ureq::Agent) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(c) = &config.cpu {
            match cpu::read(&c.cgroup) {
                Ok(raw) => self.cpu.advance(raw, Rollover::Reset),
                Err(e) => problems.push(e.to_string()),
            }
        }
        match config.energy.read(http) {
            Ok(Some((raw, rollover))) => self.energy.advance(raw, rollover),
            Ok(None) => {}
            Err(e) => problems.push(e.to_string()),
        }
        if let Some(g) = &config.grid {
            match grid::read(Path::new("/sys/class/net"), &g.interface) {
                Ok((sent, received)) => {
                    self.grid_sent.advance(sent, Rollover::Reset);
                    self.grid_received.advance(received, Rollover::Reset);
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        problems
    }

    /// What was counted since `earlier`, meter by meter.
    pub fn since(&self, earlier: &Meters) -> [u64; 4] {
        [
            self.cpu.total.saturating_sub(earlier.cpu.total),
            self.energy.total.saturating_sub(earlier.energy.total),
            self.grid_sent.total.saturating_sub(earlier.grid_sent.total),
            self.grid_received
                .total
                .saturating_sub(earlier.grid_received.total),
        ]
    }
}
