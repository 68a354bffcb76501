//! The lookup plan: which prefix lengths the kernel probes, how each probe is answered (a
//! direct pool array or the exact-match hash), and which prefixes fall back to the LPM trie.
//!
//! A hash probe costs a hash computation and two memory accesses (bucket, element); a pool
//! probe costs one array access. The plan probes the most populated lengths (at most
//! `hash_lengths` per family), longest first so the first hit is the most specific. The most
//! populated length of each family is served from a pool: the window of `pool` consecutive
//! prefixes of that length holding the most of them (an ISP's CGNAT /10 of /32s, or its /56
//! delegations out of a /40). A typical ISP table needs no trie at all.

use std::collections::BTreeSet;

use ipnet::IpNet;

use crate::kernel::prefix_census::{FamilyCensus, PrefixCensus, unit};
use quid_common::{
    LookupPlan, MAX_HASH_LENGTHS, PROBE_HASH, PROBE_POOL, PoolSpec, V4Probe, V6Probe, v4_mask,
    v6_mask,
};

/// Pool array sizes (entries) per family; 0 disables that family's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSizes {
    pub v4: u32,
    pub v6: u32,
}

/// Where a prefix's entry goes under a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The exact-match hash.
    Hash,
    /// The family's pool array, at this offset.
    Pool(u64),
    /// The LPM trie fallback.
    Trie,
}

/// Builds the plan for a set of prefixes.
pub fn build<'a>(
    prefixes: impl IntoIterator<Item = &'a IpNet>,
    hash_lengths: u32,
    pools: PoolSizes,
) -> LookupPlan {
    from_census(&PrefixCensus::of(prefixes), hash_lengths, pools)
}

/// The plan for the prefixes `census` counts (generation 0, pools at base 0).
pub fn from_census(census: &PrefixCensus, hash_lengths: u32, pools: PoolSizes) -> LookupPlan {
    let k = (hash_lengths as usize).min(MAX_HASH_LENGTHS);
    let f4 = family(&census.v4, k, pools.v4, 32);
    let f6 = family(&census.v6, k, pools.v6, 64);
    let mut plan = LookupPlan {
        v4_trie_max: f4.trie_max,
        v6_trie_max: f6.trie_max,
        v4_pool: f4.pool,
        v6_pool: f6.pool,
        ..Default::default()
    };
    // `*_probes` count the probes as they are written (at most k, below MAX_HASH_LENGTHS).
    for (probe, &(len, kind)) in plan.v4.iter_mut().zip(&f4.probes) {
        *probe = V4Probe {
            prefix_len: len,
            mask: v4_mask(len),
            kind,
            _pad: 0,
        };
        plan.v4_probes += 1;
    }
    for (probe, &(len, kind)) in plan.v6.iter_mut().zip(&f6.probes) {
        *probe = V6Probe {
            prefix_len: len,
            kind,
            mask: v6_mask(len),
        };
        plan.v6_probes += 1;
    }
    plan
}

struct Family {
    /// (length, probe kind), longest first.
    probes: Vec<(u32, u32)>,
    pool: PoolSpec,
    trie_max: u32,
}

fn family(census: &FamilyCensus, k: usize, pool_size: u32, pool_width: u32) -> Family {
    let mut by_count: Vec<(u32, usize)> = census.counts.iter().map(|(&l, &n)| (l, n)).collect();
    // Most populated first; among equals the longer (more specific) length first.
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut trie_max = by_count.iter().skip(k).map(|&(l, _)| l).max().unwrap_or(0);
    let mut pool = PoolSpec::default();
    let pool_len = by_count
        .first()
        .map(|&(l, _)| l)
        .filter(|&l| pool_size > 0 && l <= pool_width);
    if let Some((len, units)) = pool_len.and_then(|l| Some((l, census.units.get(&l)?))) {
        let (first, held) = window(units, u64::from(pool_size));
        pool = PoolSpec {
            first,
            units: u64::from(pool_size),
            base: 0,
            shift: pool_width - len,
            prefix_len: len,
        };
        if held < units.len() {
            // Stragglers outside the window are found in the trie.
            trie_max = trie_max.max(len);
        }
    }
    let mut probes: Vec<(u32, u32)> = by_count
        .iter()
        .take(k)
        .map(|&(l, _)| {
            (
                l,
                if Some(l) == pool_len {
                    PROBE_POOL
                } else {
                    PROBE_HASH
                },
            )
        })
        .collect();
    probes.sort_unstable_by_key(|&(len, _)| std::cmp::Reverse(len));
    Family {
        probes,
        pool,
        trie_max,
    }
}

/// The pool window of `size` units holding the most of `units`: its first unit and how many
/// it holds.
///
/// Among the first units that hold as many, the one with the most trailing zero bits is
/// taken: it stays where it is when prefixes come and go at the window's edges (the lowest
/// subscriber leaving, a new one at the top), so such a change keeps the plan, and every
/// other prefix its place, instead of shifting the whole pool.
fn window(units: &BTreeSet<u64>, size: u64) -> (u64, usize) {
    let (Some(&low), Some(&high)) = (units.first(), units.last()) else {
        return (0, 0);
    };
    if high - low < size {
        // The common case, a pool sized for the table: every unit fits.
        return (roundest(high.saturating_sub(size - 1), low), units.len());
    }
    let units: Vec<u64> = units.iter().copied().collect();
    // The earliest window [lo, hi] holding the most (two pointers).
    let (mut best, mut best_lo, mut best_hi, mut lo) = (0, 0, 0, 0);
    for hi in 0..units.len() {
        while units[hi] - units[lo] >= size {
            lo += 1;
        }
        if hi + 1 - lo > best {
            (best, best_lo, best_hi) = (hi + 1 - lo, lo, hi);
        }
    }
    // Any first unit in this range holds exactly units[best_lo..=best_hi]: one more would
    // make a fuller window than the fullest.
    let from = units[best_hi].saturating_sub(size - 1);
    (roundest(from, units[best_lo]), best)
}

/// The number in `from..=to` with the most trailing zero bits (`from <= to`).
fn roundest(from: u64, to: u64) -> u64 {
    let differ = from ^ to;
    if from == 0 || differ == 0 {
        return from;
    }
    // The highest bit where they differ: `to` has it set, `from` clear. `to` with every
    // lower bit cleared is in the range; only `from` itself can be rounder.
    let k = 63 - differ.leading_zeros();
    let candidate = to & !((1u64 << k) - 1);
    if from.trailing_zeros() > k {
        from
    } else {
        candidate
    }
}

/// Where `prefix` belongs under `plan`.
pub fn place(plan: &LookupPlan, prefix: &IpNet) -> Place {
    let len = u32::from(prefix.prefix_len());
    let (kind, pool) = match prefix {
        IpNet::V4(_) => (
            plan.v4[..plan.v4_probes as usize]
                .iter()
                .find(|p| p.prefix_len == len)
                .map(|p| p.kind),
            plan.v4_pool,
        ),
        IpNet::V6(_) => (
            plan.v6[..plan.v6_probes as usize]
                .iter()
                .find(|p| p.prefix_len == len)
                .map(|p| p.kind),
            plan.v6_pool,
        ),
    };
    match kind {
        Some(PROBE_POOL) => match unit(prefix).map(|u| u.wrapping_sub(pool.first)) {
            Some(offset) if offset < pool.units => Place::Pool(offset),
            _ => Place::Trie,
        },
        Some(_) => Place::Hash,
        None => Place::Trie,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    const POOLS: PoolSizes = PoolSizes { v4: 1024, v6: 1024 };

    #[test]
    fn a_typical_table_needs_no_trie_and_probes_longest_first() {
        let p = nets(&[
            "100.64.0.1/32",
            "100.64.0.2/32",
            "198.51.100.8/29",
            "2001:db8:1::/56",
            "2001:db8:2::/56",
            "2001:db8:3::/64",
        ]);
        let plan = build(&p, 8, POOLS);
        assert_eq!(plan.v4_probes, 2);
        assert_eq!((plan.v4[0].prefix_len, plan.v4[0].kind), (32, PROBE_POOL));
        assert_eq!((plan.v4[1].prefix_len, plan.v4[1].kind), (29, PROBE_HASH));
        assert_eq!((plan.v6[0].prefix_len, plan.v6[0].kind), (64, PROBE_HASH));
        assert_eq!((plan.v6[1].prefix_len, plan.v6[1].kind), (56, PROBE_POOL));
        assert_eq!((plan.v4_trie_max, plan.v6_trie_max), (0, 0));
        // The window starts at the roundest unit that still holds them all: 100.64.0.0.
        assert_eq!(place(&plan, &p[0]), Place::Pool(1));
        assert_eq!(place(&plan, &p[1]), Place::Pool(2));
        assert_eq!(place(&plan, &p[2]), Place::Hash);
        // 2001:db8:2::/56 is 0x200 /56 units after 2001:db8::/56.
        assert_eq!(place(&plan, &p[3]), Place::Pool(0x100));
        assert_eq!(place(&plan, &p[4]), Place::Pool(0x200));
        assert_eq!(place(&plan, &p[5]), Place::Hash);
    }

    #[test]
    fn the_least_populated_lengths_go_to_the_trie() {
        let p = nets(&[
            "100.64.0.1/32",
            "100.64.0.2/32",
            "100.64.1.0/24",
            "100.64.1.0/25",
            "100.64.1.0/26",
        ]);
        let plan = build(&p, 2, POOLS);
        // /32 has two entries; among the single-entry lengths the longest (/26) wins the slot.
        assert_eq!(plan.v4_probes, 2);
        assert_eq!((plan.v4[0].prefix_len, plan.v4[1].prefix_len), (32, 26));
        assert_eq!(plan.v4_trie_max, 25);
        assert_eq!(place(&plan, &p[2]), Place::Trie);
    }

    #[test]
    fn prefixes_outside_the_densest_pool_window_fall_back_to_the_trie() {
        let p = nets(&[
            "100.64.0.1/32",
            "100.64.0.9/32",
            "100.64.3.250/32",
            "203.0.113.7/32",
        ]);
        let plan = build(&p, 8, PoolSizes { v4: 1024, v6: 0 });
        assert_eq!(
            plan.v4_pool.first,
            u64::from(u32::from(std::net::Ipv4Addr::new(100, 64, 0, 0)))
        );
        assert_eq!(place(&plan, &p[1]), Place::Pool(9));
        assert_eq!(place(&plan, &p[2]), Place::Pool(1018));
        assert_eq!(place(&plan, &p[3]), Place::Trie);
        assert_eq!(plan.v4_trie_max, 32);
    }

    #[test]
    fn the_pool_stays_put_when_its_lowest_prefixes_leave_and_new_ones_come_at_the_top() {
        let before: Vec<IpNet> = (1..=1000u32)
            .map(|i| IpNet::V4(ipnet::Ipv4Net::new((0x6440_0000 + i).into(), 32).unwrap()))
            .collect();
        let pools = PoolSizes { v4: 1100, v6: 0 };
        let after: Vec<IpNet> = before[10..]
            .iter()
            .copied()
            .chain(
                (1001..=1010u32)
                    .map(|i| IpNet::V4(ipnet::Ipv4Net::new((0x6440_0000 + i).into(), 32).unwrap())),
            )
            .collect();
        let (a, b) = (build(&before, 8, pools), build(&after, 8, pools));
        assert_eq!(a, b);
        assert_eq!(place(&b, &after[0]), Place::Pool(11));
    }

    #[test]
    fn the_roundest_number_of_a_range_has_the_most_trailing_zeros() {
        assert_eq!(roundest(0, 7), 0);
        assert_eq!(roundest(5, 5), 5);
        assert_eq!(roundest(5, 7), 6);
        assert_eq!(roundest(8, 15), 8);
        assert_eq!(roundest(9, 17), 16);
        assert_eq!(roundest(0x643F_FFFB, 0x6440_0001), 0x6440_0000);
        // Against every number of small ranges.
        for from in 1..64u64 {
            for to in from..64 {
                let best = (from..=to).max_by_key(|n| n.trailing_zeros()).unwrap();
                assert_eq!(
                    roundest(from, to).trailing_zeros(),
                    best.trailing_zeros(),
                    "{from}..={to}"
                );
            }
        }
    }

    #[test]
    fn without_pools_everything_probed_is_hashed() {
        let p = nets(&["100.64.0.1/32", "2001:db8::/56", "2001:db8::1/128"]);
        let plan = build(&p, 8, PoolSizes { v4: 0, v6: 0 });
        assert!(p.iter().all(|n| place(&plan, n) == Place::Hash));
    }
}
