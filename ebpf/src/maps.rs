//! The maps quid's programs share with the daemon. Sizes here are placeholders: the daemon
//! sets every `max_entries` from its config before loading.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
};
use quid_common::{
    IfaceCounters, LookupPlan, MAX_IFINDEX, PrefixTarget, SubscriberCounters, V4Key, V6Key,
};

/// IPv4 exact-match table: (prefix length, masked address) -> owner. One entry per prefix
/// whose length is in the lookup plan's hash probes.
#[map]
pub static SUB_V4: HashMap<V4Key, PrefixTarget> = HashMap::with_max_entries(1024, 0);

/// IPv6 exact-match table: (prefix length, masked address words) -> owner.
#[map]
pub static SUB_V6: HashMap<V6Key, PrefixTarget> = HashMap::with_max_entries(1024, 0);

/// IPv4 fallback trie for prefix lengths not in the plan's hash probes (usually empty).
#[map]
pub static SUB_V4_TRIE: LpmTrie<u32, PrefixTarget> = LpmTrie::with_max_entries(1024, 0);

/// IPv6 fallback trie for prefix lengths not in the plan's hash probes (usually empty).
#[map]
pub static SUB_V6_TRIE: LpmTrie<[u32; 4], PrefixTarget> = LpmTrie::with_max_entries(1024, 0);

/// Per-CPU counters indexed by subscriber slot; summed across CPUs by the daemon, so the
/// hot path needs no atomics.
#[map]
pub static SUB_COUNTERS: PerCpuArray<SubscriberCounters> = PerCpuArray::with_max_entries(1024, 0);

/// Per-CPU per-interface buckets indexed by ingress ifindex (slot 0 is never a real ifindex).
#[map]
pub static IFACE_COUNTERS: PerCpuArray<IfaceCounters> =
    PerCpuArray::with_max_entries(MAX_IFINDEX, 0);

/// The lookup plan (one entry): which prefix lengths to probe, and when to ask the trie.
#[map]
pub static LOOKUP_PLAN: Array<LookupPlan> = Array::with_max_entries(1, 0);
