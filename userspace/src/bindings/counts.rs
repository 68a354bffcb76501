//! What became of the binding events, per source and outcome, and the live sessions: the
//! figures the metrics show.

use std::collections::BTreeMap;

use super::request::{BindingSource, Outcome};

/// Running totals of events and the sessions live now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingCounts {
    /// Events per (source, outcome) since the daemon started.
    pub events: BTreeMap<(BindingSource, Outcome), u64>,
    /// Live sessions per source.
    pub active: BTreeMap<BindingSource, usize>,
}

impl BindingCounts {
    /// Counts one event.
    pub fn count(&mut self, source: BindingSource, outcome: Outcome) {
        *self.events.entry((source, outcome)).or_default() += 1;
    }

    /// Events of `source` that ended as `outcome`.
    pub fn events(&self, source: BindingSource, outcome: Outcome) -> u64 {
        self.events.get(&(source, outcome)).copied().unwrap_or(0)
    }
}
