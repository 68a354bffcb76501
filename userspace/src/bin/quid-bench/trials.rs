//! What repeated trials of one measurement come to.

use anyhow::Context as _;

/// The median of `samples`; an error for none (`--trials 0`).
pub fn median(mut samples: Vec<f64>) -> anyhow::Result<f64> {
    samples.sort_by(f64::total_cmp);
    samples
        .get(samples.len() / 2)
        .copied()
        .context("no trials to take the median of")
}
