//! The lookup plan: which prefix lengths the kernel probes, how each probe is answered (a
//! direct pool array or the exact-match hash), and which prefixes fall back to the LPM trie.
//!
//! A hash probe costs a hash computation and two memory accesses (bucket, element); a pool
//! probe costs one array access. The plan probes the most populated lengths (at most
//! `hash_lengths` per family), longest first so the first hit is the most specific. The most
//! populated length of each family is served from a pool: the window of `pool` consecutive
//! prefixes of that length holding the most of them (an ISP's CGNAT /10 of /32s, or its /56
//! delegations out of a /40). A typical ISP table needs no trie at all.

use std::collections::BTreeMap;

use ipnet::IpNet;
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

/// A prefix's pool unit: its address bits down to its length, as a number.
fn unit(prefix: &IpNet) -> Option<u64> {
    match prefix {
        IpNet::V4(n) => Some(u64::from(
            u32::from(n.addr()) >> (32 - u32::from(n.prefix_len())),
        )),
        IpNet::V6(n) if n.prefix_len() <= 64 => {
            let top = (u128::from(n.addr()) >> 64) as u64;
            Some(top >> (64 - u32::from(n.prefix_len())))
        }
        IpNet::V6(_) => None,
    }
}

/// Builds the plan for a set of prefixes.
pub fn build<'a>(
    prefixes: impl IntoIterator<Item = &'a IpNet>,
    hash_lengths: u32,
    pools: PoolSizes,
) -> LookupPlan {
    let (v4, v6): (Vec<&IpNet>, Vec<&IpNet>) = prefixes
        .into_iter()
        .partition(|p| matches!(p, IpNet::V4(_)));
    let k = (hash_lengths as usize).min(MAX_HASH_LENGTHS);
    let f4 = family(&v4, k, pools.v4, 32);
    let f6 = family(&v6, k, pools.v6, 64);
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

fn family(prefixes: &[&IpNet], k: usize, pool_size: u32, pool_width: u32) -> Family {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for p in prefixes {
        *counts.entry(u32::from(p.prefix_len())).or_default() += 1;
    }
    let mut by_count: Vec<(u32, usize)> = counts.into_iter().collect();
    // Most populated first; among equals the longer (more specific) length first.
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut trie_max = by_count.iter().skip(k).map(|&(l, _)| l).max().unwrap_or(0);
    let mut pool = PoolSpec::default();
    let pool_len = by_count
        .first()
        .map(|&(l, _)| l)
        .filter(|&l| pool_size > 0 && l <= pool_width);
    if let Some(len) = pool_len {
        let mut units: Vec<u64> = prefixes
            .iter()
            .filter(|p| u32::from(p.prefix_len()) == len)
            .filter_map(|p| unit(p))
            .collect();
        units.sort_unstable();
        // The window [first, first + pool_size) holding the most prefixes (two pointers).
        let (mut best, mut best_start, mut lo) = (0, 0, 0);
        for hi in 0..units.len() {
            while units[hi] - units[lo] >= u64::from(pool_size) {
                lo += 1;
            }
            if hi + 1 - lo > best {
                (best, best_start) = (hi + 1 - lo, lo);
            }
        }
        pool = PoolSpec {
            first: units[best_start],
            units: u64::from(pool_size),
            base: 0,
            shift: pool_width - len,
            prefix_len: len,
        };
        if best < units.len() {
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
        assert_eq!(place(&plan, &p[0]), Place::Pool(0));
        assert_eq!(place(&plan, &p[1]), Place::Pool(1));
        assert_eq!(place(&plan, &p[2]), Place::Hash);
        // 2001:db8:2::/56 is 0x100 /56 units after 2001:db8:1::/56.
        assert_eq!(place(&plan, &p[4]), Place::Pool(0x100));
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
            u64::from(u32::from(std::net::Ipv4Addr::new(100, 64, 0, 1)))
        );
        assert_eq!(place(&plan, &p[1]), Place::Pool(8));
        assert_eq!(place(&plan, &p[2]), Place::Pool(1017));
        assert_eq!(place(&plan, &p[3]), Place::Trie);
        assert_eq!(plan.v4_trie_max, 32);
    }

    #[test]
    fn without_pools_everything_probed_is_hashed() {
        let p = nets(&["100.64.0.1/32", "2001:db8::/56", "2001:db8::1/128"]);
        let plan = build(&p, 8, PoolSizes { v4: 0, v6: 0 });
        assert!(p.iter().all(|n| place(&plan, n) == Place::Hash));
    }
}
