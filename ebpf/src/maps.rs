//! The maps quid's programs share with the daemon. Sizes here are placeholders: the daemon
//! sets every `max_entries` from its config before loading, and pins every map but the plan's
//! globals under bpffs so counting survives a daemon restart.
//!
//! The lookup maps hold two generations of the subscriber table (see `GENERATIONS`): hash keys
//! carry the generation in `len_gen`, trie keys start with a generation word, and each pool
//! array holds one region per generation. `ACTIVE_GEN` says which one packets use.

use aya_ebpf::{
    Global,
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
};
use quid_common::{
    GENERATIONS_U32, GridSet, IfaceCounters, LookupPlan, MAX_IFINDEX, Meta, PrefixTarget,
    SubscriberCounters, V4Key, V4TrieData, V6Key, V6TrieData,
};

/// IPv4 exact-match table: (prefix length and generation, masked address) -> owner. One entry
/// per prefix and generation whose length is in that generation's hash probes.
#[map]
// Not preallocated: memory follows the entries in use, not two generations' capacity.
pub static SUB_V4: HashMap<V4Key, PrefixTarget> =
    HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);

/// IPv6 exact-match table: (prefix length and generation, masked address words) -> owner.
#[map]
pub static SUB_V6: HashMap<V6Key, PrefixTarget> =
    HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);

/// IPv4 direct pool (see `PoolSpec`): entry `(base + offset) / 2`, half `offset % 2` holds the
/// owner's slot + 1 (0: none); each generation has its own region starting at its `base`. Two per entry because array elements take 8 bytes each. Mmapable so the
/// daemon fills it without a syscall per entry.
#[map]
pub static POOL_V4: Array<[u32; 2]> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// IPv6 direct pool, laid out like `POOL_V4`.
#[map]
pub static POOL_V6: Array<[u32; 2]> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// IPv4 fallback trie for prefix lengths not in the plan's hash probes (usually empty).
#[map]
pub static SUB_V4_TRIE: LpmTrie<V4TrieData, PrefixTarget> = LpmTrie::with_max_entries(1024, 0);

/// IPv6 fallback trie for prefix lengths not in the plan's hash probes (usually empty).
#[map]
pub static SUB_V6_TRIE: LpmTrie<V6TrieData, PrefixTarget> = LpmTrie::with_max_entries(1024, 0);

/// Subscriber slots per CPU region of `SUB_COUNTERS`; set by the daemon at load (read-only, so
/// the verifier treats it as a constant).
#[unsafe(no_mangle)]
pub static SLOT_CAPACITY: Global<u32> = Global::new(1024);

/// Subscriber counters, one region of `SLOT_CAPACITY` slots per possible CPU: entry
/// `cpu * SLOT_CAPACITY + slot`. Each CPU writes only its own region, so the hot path needs no
/// atomics and CPUs never share a cache line. A plain array costs one memory access where a
/// per-CPU array costs two (its pointer table, then the per-CPU chunk), and it is mmapable, so
/// the daemon reads every counter without a syscall per slot.
#[map]
pub static SUB_COUNTERS: Array<SubscriberCounters> = Array::with_max_entries(1024, BPF_F_MMAPABLE);

/// Per-CPU per-interface buckets indexed by ingress ifindex (slot 0 is never a real ifindex).
#[map]
pub static IFACE_COUNTERS: PerCpuArray<IfaceCounters> =
    PerCpuArray::with_max_entries(MAX_IFINDEX, 0);

/// The lookup plans, one per generation: which prefix lengths to probe, and when to ask the
/// trie.
#[map]
pub static LOOKUP_PLAN: Array<LookupPlan> = Array::with_max_entries(GENERATIONS_U32, 0);

/// The generation packets use (entry 0). One aligned 4-byte word, so flipping it is atomic.
#[map]
pub static ACTIVE_GEN: Array<u32> = Array::with_max_entries(1, 0);

/// The grid's prefixes (entry 0): the other endpoint of a packet in one of them makes it
/// class grid.
#[map]
pub static GRID: Array<GridSet> = Array::with_max_entries(1, 0);

/// Layout version, sizes and instance of the pinned maps (entry 0); never read by the programs.
#[map]
pub static META: Array<Meta> = Array::with_max_entries(1, 0);
