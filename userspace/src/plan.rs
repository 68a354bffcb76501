//! The lookup plan: which prefix lengths the kernel probes by exact match, and which
//! prefixes fall back to the LPM trie.
//!
//! A probe costs one hash lookup, so the plan puts the most populated lengths (at most
//! `hash_lengths` per family) in the hash and orders them longest first: the first hit is
//! then the most specific hash match. A typical ISP table (IPv4 /32 and a few business
//! /29s, IPv6 /56 and /64 delegations) needs no trie at all.

use std::collections::BTreeMap;

use ipnet::IpNet;
use quid_common::{LookupPlan, MAX_HASH_LENGTHS, V4Probe, V6Probe, v4_mask, v6_mask};

/// Builds the plan for a set of prefixes.
pub fn build<'a>(prefixes: impl IntoIterator<Item = &'a IpNet>, hash_lengths: u32) -> LookupPlan {
    let mut v4_counts: BTreeMap<u32, usize> = BTreeMap::new();
    let mut v6_counts: BTreeMap<u32, usize> = BTreeMap::new();
    for p in prefixes {
        let counts = if matches!(p, IpNet::V4(_)) {
            &mut v4_counts
        } else {
            &mut v6_counts
        };
        *counts.entry(u32::from(p.prefix_len())).or_default() += 1;
    }
    let k = (hash_lengths as usize).min(MAX_HASH_LENGTHS);
    let (v4_hash, v4_trie_max) = split(&v4_counts, k);
    let (v6_hash, v6_trie_max) = split(&v6_counts, k);
    let mut plan = LookupPlan {
        v4_probes: v4_hash.len() as u32,
        v6_probes: v6_hash.len() as u32,
        v4_trie_max,
        v6_trie_max,
        ..Default::default()
    };
    for (i, len) in v4_hash.into_iter().enumerate() {
        plan.v4[i] = V4Probe {
            prefix_len: len,
            mask: v4_mask(len),
        };
    }
    for (i, len) in v6_hash.into_iter().enumerate() {
        plan.v6[i] = V6Probe {
            prefix_len: len,
            mask: v6_mask(len),
        };
    }
    plan
}

/// The `k` most populated lengths, longest first, and the longest of the rest (0 if none).
fn split(counts: &BTreeMap<u32, usize>, k: usize) -> (Vec<u32>, u32) {
    let mut by_count: Vec<(u32, usize)> = counts.iter().map(|(&l, &c)| (l, c)).collect();
    // Most populated first; among equals the longer length (more specific) first.
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut hash: Vec<u32> = by_count.iter().take(k).map(|&(l, _)| l).collect();
    hash.sort_unstable_by(|a, b| b.cmp(a));
    let trie_max = by_count.iter().skip(k).map(|&(l, _)| l).max().unwrap_or(0);
    (hash, trie_max)
}

/// Whether the plan looks `prefix` up by exact match (else it belongs in the trie).
pub fn in_hash(plan: &LookupPlan, prefix: &IpNet) -> bool {
    let len = u32::from(prefix.prefix_len());
    match prefix {
        IpNet::V4(_) => plan.v4[..plan.v4_probes as usize]
            .iter()
            .any(|p| p.prefix_len == len),
        IpNet::V6(_) => plan.v6[..plan.v6_probes as usize]
            .iter()
            .any(|p| p.prefix_len == len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_typical_table_needs_no_trie_and_probes_longest_first() {
        let p = nets(&[
            "100.64.0.1/32",
            "100.64.0.2/32",
            "198.51.100.8/29",
            "2001:db8:1::/56",
            "2001:db8:2::/64",
        ]);
        let plan = build(&p, 8);
        assert_eq!(plan.v4_probes, 2);
        assert_eq!((plan.v4[0].prefix_len, plan.v4[1].prefix_len), (32, 29));
        assert_eq!((plan.v6[0].prefix_len, plan.v6[1].prefix_len), (64, 56));
        assert_eq!((plan.v4_trie_max, plan.v6_trie_max), (0, 0));
        assert!(p.iter().all(|n| in_hash(&plan, n)));
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
        let plan = build(&p, 2);
        // /32 has two entries; among the single-entry lengths the longest (/26) wins the slot.
        assert_eq!(plan.v4_probes, 2);
        assert_eq!((plan.v4[0].prefix_len, plan.v4[1].prefix_len), (32, 26));
        assert_eq!(plan.v4_trie_max, 25);
        assert!(!in_hash(&plan, &"100.64.1.0/24".parse().unwrap()));
    }
}
