//! Period arithmetic: periods end on multiples of the period length (UTC), and a gap longer
//! than one report may cover (the agent was off for days) is split into reports that share
//! what was measured in proportion to their length.

/// The last period boundary at or before `now`.
pub fn boundary_at_or_before(now: i64, period: i64) -> i64 {
    now.div_euclid(period).saturating_mul(period)
}

/// `[start, end)` cut into pieces of at most `max` seconds, in order.
pub fn split(start: i64, end: i64, max: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut from = start;
    // Bounded: each turn moves `from` forward by at least 1 s towards `end`.
    while from < end {
        let to = from.saturating_add(max.max(1)).min(end);
        out.push((from, to));
        from = to;
    }
    out
}

/// The part of `total` that `part` seconds of `whole` seconds earn (rounded down; the last
/// piece takes the remainder, so the pieces add up to `total`).
pub fn share(total: u64, part: i64, whole: i64) -> u64 {
    let (Ok(part), Ok(whole)) = (u128::try_from(part), u128::try_from(whole)) else {
        return 0;
    };
    if whole == 0 {
        return 0;
    }
    u64::try_from(u128::from(total) * part / whole).unwrap_or(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_split_and_shares_add_up() {
        assert_eq!(boundary_at_or_before(1_000, 900), 900);
        assert_eq!(boundary_at_or_before(900, 900), 900);
        assert_eq!(
            split(0, 200_000, 86_400),
            vec![(0, 86_400), (86_400, 172_800), (172_800, 200_000)]
        );
        assert!(split(5, 5, 10).is_empty());
        let pieces = split(0, 200_000, 86_400);
        let mut sum = 0;
        for (i, (a, b)) in pieces.iter().enumerate() {
            sum += if i + 1 == pieces.len() {
                1_000_001 - sum
            } else {
                share(1_000_001, b - a, 200_000)
            };
        }
        assert_eq!(sum, 1_000_001);
        assert_eq!(share(10, 1, 0), 0);
    }
}
