//! What `quid report` gathers per plan while it reads a period: sums, hourly and daily series,
//! and sets of subscribers by position.

use std::collections::HashSet;

use super::report_figures::{Bytes, Contributions, Directions};

/// Per plan, while the period is read.
#[derive(Default)]
pub(super) struct Acc {
    pub(super) active: Bits,
    pub(super) contributing: Bits,
    pub(super) unknown_contributing: HashSet<String>,
    pub(super) bytes: Bytes,
    /// Per hour held.
    pub(super) hourly: Vec<Directions>,
    /// Per day of the period.
    pub(super) daily: Vec<u64>,
    pub(super) subscriber_p95: (Vec<u64>, Vec<u64>),
    pub(super) contributions: Contributions,
    pub(super) credits: i128,
    pub(super) debits: i128,
}

/// A set of subscriber positions (indexes into the sorted keys).
#[derive(Default)]
pub(super) struct Bits(Vec<u64>);

impl Bits {
    pub(super) fn set(&mut self, i: usize) {
        let (w, b) = (i / 64, i % 64);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << b;
    }

    pub(super) fn count(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub(super) fn union(&mut self, o: &Bits) {
        if self.0.len() < o.0.len() {
            self.0.resize(o.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a |= b;
        }
    }
}
