//! Heavy-tailed keys for the XDP benchmark: ranks drawn from a Zipf distribution by exact
//! inverse CDF over a precomputed table, mapped to table entries through a fixed random
//! permutation so that the hottest subscribers are not neighbours in memory (a real pool hands
//! its busiest addresses out in no particular order).

/// SplitMix64: the benchmark needs the same draws on every run and machine, not
/// cryptographic quality, and no new dependency for it.
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 uniform bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits, every value exactly representable.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform below `n` (0 for `n == 0`) by multiply-shift: the bias is below 2^-32.
    pub fn below(&mut self, n: u32) -> u32 {
        let wide = (self.next_u64() >> 32) * u64::from(n);
        // The product of two values below 2^32, shifted by 32, is below `n`.
        u32::try_from(wide >> 32).unwrap_or(0)
    }
}

/// Zipf over ranks 0..n: rank k has probability proportional to (k + 1)^-s.
pub struct Zipf {
    /// cdf[k] = P(rank <= k); the last entry is exactly 1.
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks with exponent `s`; None for no ranks or an exponent
    /// that is negative or not finite.
    pub fn new(n: u32, s: f64) -> Option<Self> {
        if n == 0 || !s.is_finite() || s < 0.0 {
            return None;
        }
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += f64::from(k).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        // Rounding may leave the last entry a hair below 1; a draw must never fall past it.
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Some(Self { cdf })
    }

    /// The rank whose CDF interval holds `u` (a uniform draw in [0, 1)).
    pub fn rank(&self, u: f64) -> u32 {
        let k = self.cdf.partition_point(|&c| c <= u);
        u32::try_from(k.min(self.cdf.len().saturating_sub(1))).unwrap_or(u32::MAX)
    }
}

/// A uniformly random permutation of 0..n (Fisher-Yates).
pub fn permutation(n: u32, rng: &mut Rng) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        p.swap(i as usize, j as usize);
    }
    p
}

/// `count` table entries of a table of `n` drawn with Zipf exponent `s`: rank r is entry
/// `permutation[r]`. The permutation and the draws are fixed by `seed`. None when
/// [`Zipf::new`] refuses `n` or `s`.
pub fn keys(n: u32, s: f64, count: usize, seed: u64) -> Option<Vec<u32>> {
    let zipf = Zipf::new(n, s)?;
    let mut rng = Rng::new(seed);
    let perm = permutation(n, &mut rng);
    (0..count)
        .map(|_| perm.get(zipf.rank(rng.unit()) as usize).copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_frequencies_follow_the_exponent() {
        let (n, s, draws) = (1000u32, 1.0, 200_000);
        let zipf = Zipf::new(n, s).unwrap();
        let mut rng = Rng::new(1);
        let mut hits = vec![0u32; n as usize];
        for _ in 0..draws {
            hits[zipf.rank(rng.unit()) as usize] += 1;
        }
        let h: f64 = (1..=n).map(|k| f64::from(k).powf(-s)).sum();
        for k in [0usize, 1, 9] {
            let expected = f64::from(draws) / ((k + 1) as f64 * h);
            let got = f64::from(hits[k]);
            assert!(
                (got - expected).abs() < 0.05 * expected,
                "rank {k}: {got} against {expected:.0}"
            );
        }
    }

    #[test]
    fn ranks_stay_in_range_at_the_edges() {
        let zipf = Zipf::new(3, 1.2).unwrap();
        assert_eq!(zipf.rank(0.0), 0);
        assert_eq!(zipf.rank(1.0), 2);
        assert_eq!(zipf.rank(f64::NAN), 0);
        assert!(Zipf::new(0, 1.0).is_none());
        assert!(Zipf::new(5, f64::NAN).is_none());
        assert!(Zipf::new(5, -1.0).is_none());
    }

    #[test]
    fn permutation_is_a_bijection_that_moves_the_head() {
        let p = permutation(10_000, &mut Rng::new(7));
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().copied().eq(0..10_000));
        // The ten hottest ranks land far apart, not on neighbouring entries.
        assert!(p[..10].windows(2).any(|w| w[0].abs_diff(w[1]) > 100));
    }

    #[test]
    fn keys_are_fixed_by_the_seed_and_in_the_table() {
        let a = keys(100_000, 1.0, 1000, 3).unwrap();
        assert_eq!(a, keys(100_000, 1.0, 1000, 3).unwrap());
        assert!(a.iter().all(|&k| k < 100_000));
        assert!(keys(0, 1.0, 10, 3).is_none());
    }
}
