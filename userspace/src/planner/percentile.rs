//! Percentiles by nearest rank: the p-th percentile of n values is the value at rank
//! ceil(p/100 × n) in ascending order (the 95th of 744 hourly values is the 707th smallest, so
//! 37 hours lie above it). Exact on integers, no interpolation.

/// The `p`-th percentile (0 < p ≤ 100) of `values` by nearest rank; 0 for no values. Reorders
/// `values`.
pub fn nearest_rank(values: &mut [u64], p: u32) -> u64 {
    let n = values.len();
    if n == 0 {
        return 0;
    }
    // ceil(p × n / 100), at least rank 1, at most n; in u128 so no n overflows it.
    let rank = (u128::from(p.min(100)) * n as u128).div_ceil(100).max(1);
    let index = usize::try_from(rank - 1).unwrap_or(n - 1).min(n - 1);
    *values.select_nth_unstable(index).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_nearest_and_exact() {
        // 1..=20: the 95th percentile is the 19th smallest.
        let mut v: Vec<u64> = (1..=20).rev().collect();
        assert_eq!(nearest_rank(&mut v, 95), 19);
        assert_eq!(nearest_rank(&mut v, 50), 10);
        assert_eq!(nearest_rank(&mut v, 100), 20);
        // 744 hours, 37 of them above the rest: the percentile is the largest of the rest.
        let mut hours = vec![5u64; 707];
        hours.extend([1_000u64; 37]);
        hours[3] = 6;
        assert_eq!(nearest_rank(&mut hours, 95), 6);
        assert_eq!(nearest_rank(&mut [], 95), 0);
        assert_eq!(nearest_rank(&mut [7], 95), 7);
    }
}
