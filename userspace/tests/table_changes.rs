//! A table change applied by difference leaves every lookup map exactly as installing the
//! same table whole on fresh maps does, with the same slots. Needs root (CAP_BPF).

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use aya::maps::{Array, HashMap as BpfHash, LpmTrie, MapData};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use quid::{
    config::KernelLog,
    kernel::loader::Datapath,
    kernel::sizes::{Sizes, pool_region},
    kernel::subscriber_maps::Registry,
    subscribers::table::{Subscriber, Table},
};
use quid_common::{
    GENERATIONS_U32, LookupPlan, PrefixTarget, V4Key, V4TrieData, V6Key, V6TrieData, map_name,
};

/// Pools wider than the /32s and /56s are spread, with a few stragglers far off that the
/// trie serves; two hash lengths per family, so the rarest length goes to the trie too.
const SIZES: Sizes = Sizes {
    subscribers: 512,
    prefixes: 1024,
    pool_v4: 1024,
    pool_v6: 1024,
};
const HASH_LENGTHS: u32 = 2;

/// Everything the lookup reads, per generation where it has generations.
#[derive(Debug, PartialEq)]
struct Contents {
    pool_v4: Vec<[u32; 2]>,
    pool_v6: Vec<[u32; 2]>,
    v4: HashMap<V4Key, PrefixTarget>,
    v6: HashMap<V6Key, PrefixTarget>,
    t4: HashMap<(u32, V4TrieData), PrefixTarget>,
    t6: HashMap<(u32, V6TrieData), PrefixTarget>,
    plans: Vec<LookupPlan>,
}

fn pool(dp: &Datapath, name: &'static str, entries: u32) -> Vec<[u32; 2]> {
    let a: Array<&MapData, [u32; 2]> = Array::try_from(dp.ebpf.map(name).unwrap()).unwrap();
    let elements = u32::try_from(pool_region(entries) * u64::from(GENERATIONS_U32) / 2).unwrap();
    (0..elements).map(|i| a.get(&i, 0).unwrap()).collect()
}

fn hash<K: aya::Pod + Eq + std::hash::Hash>(
    dp: &Datapath,
    name: &'static str,
) -> HashMap<K, PrefixTarget> {
    let m: BpfHash<&MapData, K, PrefixTarget> =
        BpfHash::try_from(dp.ebpf.map(name).unwrap()).unwrap();
    m.iter().map(Result::unwrap).collect()
}

fn trie<D: aya::Pod + Eq + std::hash::Hash>(
    dp: &Datapath,
    name: &'static str,
) -> HashMap<(u32, D), PrefixTarget> {
    let m: LpmTrie<&MapData, D, PrefixTarget> =
        LpmTrie::try_from(dp.ebpf.map(name).unwrap()).unwrap();
    m.iter()
        .map(Result::unwrap)
        .map(|(k, v)| ((k.prefix_len(), k.data()), v))
        .collect()
}

fn contents(dp: &Datapath) -> Contents {
    let plans: Array<&MapData, LookupPlan> =
        Array::try_from(dp.ebpf.map(map_name::LOOKUP_PLAN).unwrap()).unwrap();
    Contents {
        pool_v4: pool(dp, map_name::POOL_V4, SIZES.pool_v4),
        pool_v6: pool(dp, map_name::POOL_V6, SIZES.pool_v6),
        v4: hash(dp, map_name::SUB_V4),
        v6: hash(dp, map_name::SUB_V6),
        t4: trie(dp, map_name::SUB_V4_TRIE),
        t6: trie(dp, map_name::SUB_V6_TRIE),
        plans: (0..GENERATIONS_U32)
            .map(|g| plans.get(&g, 0).unwrap())
            .collect(),
    }
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(n).unwrap()).unwrap()
    }
}

/// Prefix `i` of a fixed list from the shared and documentation ranges. Per family the
/// lengths keep their ranking as prefixes come and go (IPv4: /32 in the pool, /29 hashed,
/// /24 in the trie; IPv6: /56 in the pool, /64 hashed, /128 in the trie), so most changes
/// keep the plan.
fn prefix(i: usize) -> IpNet {
    let n = u32::try_from(i).unwrap();
    let v4 = |addr: u32, len| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap());
    match (i % 8, (i / 8) % 4) {
        // A straggler far from the other /32s: outside the pool's window, in the trie.
        (0, _) if i.is_multiple_of(64) => v4(0x6464_0000 + n, 32),
        (0..=2, _) | (4, 1..) => v4(0x6440_0000 + n, 32),
        (3, _) => v4(0x6448_0000 + n * 8, 29),
        (4, _) => v4(0x6441_0000 + (n << 8), 24),
        (5 | 6, _) => {
            let top = (0x2001_0db8u128 << 96) | (u128::from(n) << 72);
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(top), 56).unwrap())
        }
        (_, quarter) => {
            let len = if quarter < 3 { 64 } else { 128 };
            let addr = (0x2001_0db8_ffffu128 << 80) | (u128::from(n) << 64) | u128::from(n);
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), len).unwrap().trunc())
        }
    }
}

/// Many /128s: enough to outrank the /64s, so the IPv6 probes (the plan's shape) change.
fn many_hosts(id: u64) -> Subscriber {
    Subscriber {
        id: format!("hosts{id}"),
        name: String::new(),
        plan: "plan0".into(),
        prefixes: (0..200u128)
            .map(|k| {
                let addr = (0x2001_0db8_eeeeu128 << 80) | k;
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), 128).unwrap())
            })
            .collect(),
    }
}

/// A random 1% of the subscribers (at least one of each) removed, changed (plan, a prefix
/// given up, a prefix taken from another subscriber or new) and added.
fn change(t: &Table, rng: &mut Rng, next_id: &mut usize, next_prefix: &mut usize) -> Table {
    let mut t = t.clone();
    let k = (t.subscribers.len() / 100).max(1);
    for _ in 0..k {
        if !t.subscribers.is_empty() {
            let at = rng.below(t.subscribers.len());
            t.subscribers.remove(at);
        }
    }
    for _ in 0..k {
        if t.subscribers.len() < 2 {
            break;
        }
        let at = rng.below(t.subscribers.len());
        match rng.below(4) {
            0 => t.subscribers[at].plan = format!("plan{}", rng.below(3)),
            1 => {
                t.subscribers[at].prefixes.pop();
            }
            2 => {
                // A prefix moves from one subscriber to another.
                let from = rng.below(t.subscribers.len());
                if from != at
                    && let Some(p) = t.subscribers[from].prefixes.pop()
                {
                    t.subscribers[at].prefixes.push(p);
                }
            }
            _ => {
                t.subscribers[at].prefixes.push(prefix(*next_prefix));
                *next_prefix += 1;
            }
        }
    }
    for _ in 0..k {
        let at = rng.below(t.subscribers.len() + 1);
        t.subscribers.insert(at, subscriber(*next_id, next_prefix));
        *next_id += 1;
    }
    t
}

fn subscriber(id: usize, next_prefix: &mut usize) -> Subscriber {
    let prefixes = (0..2)
        .map(|_| {
            *next_prefix += 1;
            prefix(*next_prefix - 1)
        })
        .collect();
    Subscriber {
        id: format!("s{id}"),
        name: String::new(),
        plan: "plan0".into(),
        prefixes,
    }
}

/// Fresh maps with 200 subscribers `s0`.. of two prefixes each (prefixes 0..400) installed.
fn installed() -> (Datapath, Registry) {
    let mut next_prefix = 0;
    let table = Table {
        subscribers: (0..200)
            .map(|id| subscriber(id, &mut next_prefix))
            .collect(),
    };
    let mut dp = Datapath::load(SIZES, KernelLog::Off).unwrap();
    let mut registry = Registry::new(HASH_LENGTHS);
    registry.apply(&mut dp, table).unwrap();
    (dp, registry)
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn random_one_percent_changes_by_difference_leave_the_maps_as_a_whole_install_does() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut next_id, mut next_prefix) = (200, 400);
    let (mut dp, mut by_difference) = installed();
    let mut table = by_difference.table().clone();
    // `quid_map_entries` counts the direct pools too (they once showed 0 while in use).
    let usage = by_difference.map_usage(SIZES);
    let used = |name: &str| usage.iter().find(|u| u.0 == name).map_or(0, |u| u.1);
    let (v4, v6) = (
        used(quid_common::map_name::POOL_V4),
        used(quid_common::map_name::POOL_V6),
    );
    assert!(v4 > 0 && v6 > 0, "{usage:?}");
    let rounds = 40u64;
    for round in 0..rounds {
        let before = by_difference.table().clone();
        table = change(&table, &mut rng, &mut next_id, &mut next_prefix);
        if round == rounds / 2 {
            table.subscribers.push(many_hosts(round));
        }
        let (change, _) = by_difference.apply(&mut dp, table.clone()).unwrap();
        assert!(!change.is_empty(), "round {round}");
        // As the daemon does once their final counts are read: removed slots come free.
        by_difference.release(&change.removed);

        let mut fresh = Datapath::load(SIZES, KernelLog::Off).unwrap();
        let mut whole = Registry::with_slots(HASH_LENGTHS, by_difference.slots().clone());
        whole.apply(&mut fresh, table.clone()).unwrap();
        assert_eq!(whole.slots(), by_difference.slots(), "round {round}");
        assert_eq!(
            contents(&dp),
            contents(&fresh),
            "round {round}: {change:?} from {} subscribers",
            before.subscribers.len()
        );
    }
    // Two whole rewrites for the first install, two where the /128s changed the plan; the
    // other changes kept the plan and went by difference (the comparison above would pass
    // with whole rewrites alone).
    let rewritten = by_difference.rewrites();
    assert!(
        (4..rounds).contains(&rewritten),
        "{rewritten} generations rewritten whole in {rounds} changes"
    );
}

/// The live bindings' path: prefixes moved between subscribers, given and taken, row by row,
/// leave the maps as a whole install of the same table does, and a change that reshapes the
/// plan (the /128s) goes through the whole path and still ends the same.
#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn prefixes_given_by_row_leave_the_maps_as_a_whole_install_does() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut next_prefix = 400;
    let (mut dp, mut by_row) = installed();
    let rewrites = by_row.rewrites();
    for round in 0..30 {
        let t = by_row.table().clone();
        let n = t.subscribers.len();
        let mut rows: HashMap<usize, Vec<IpNet>> = HashMap::new();
        for _ in 0..3 {
            // A prefix moves from one row to another (a dynamic address handed on) ...
            let (from, to) = (rng.below(n), rng.below(n));
            let mut source = rows
                .remove(&from)
                .unwrap_or_else(|| t.subscribers[from].prefixes.clone());
            if from != to
                && let Some(p) = source.pop()
            {
                rows.entry(to)
                    .or_insert_with(|| t.subscribers[to].prefixes.clone())
                    .push(p);
            }
            rows.insert(from, source);
            // ... and a new one is bound.
            let at = rng.below(n);
            rows.entry(at)
                .or_insert_with(|| t.subscribers[at].prefixes.clone())
                .push(prefix(next_prefix));
            next_prefix += 1;
        }
        if round == 20 {
            rows.insert(0, many_hosts(0).prefixes);
        }
        let mut expected = t.clone();
        for (i, p) in &rows {
            expected.subscribers[*i].prefixes.clone_from(p);
        }
        let change = by_row
            .apply_prefixes(&mut dp, rows.into_iter().collect())
            .unwrap();
        assert!(!change.changed.is_empty() && change.added.is_empty() && change.removed.is_empty());
        assert_eq!(by_row.table(), &expected, "round {round}");
        let mut fresh = Datapath::load(SIZES, KernelLog::Off).unwrap();
        let mut whole = Registry::with_slots(HASH_LENGTHS, by_row.slots().clone());
        whole.apply(&mut fresh, expected).unwrap();
        assert_eq!(contents(&dp), contents(&fresh), "round {round}");
    }
    // Row changes are patches; only the round that reshaped the plan rewrote generations.
    assert_eq!(by_row.rewrites() - rewrites, 2);
}
