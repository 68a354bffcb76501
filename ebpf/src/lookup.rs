//! Finding the subscriber that owns an address: probes over the prefix lengths in use
//! (longest first), each answered by a direct pool array or the exact-match hash, with the
//! LPM trie only for prefixes the plan left out.
//!
//! Results are plain integers with a sentinel ([`NO_SLOT`]), not `Option`s: LLVM leaves the
//! payload of a `None` undefined and may read it from a register a helper call clobbered,
//! which the verifier rejects.

use aya_ebpf::maps::{Array, lpm_trie::Key};
use quid_common::{
    CLASS_GRID, CLASS_INTERNET, GridSet, LookupPlan, MAX_GRID_PREFIXES, MAX_HASH_LENGTHS,
    PROBE_POOL, PoolSpec, V4Key, V6Key, len_gen,
};

use crate::maps::{POOL_V4, POOL_V6, SUB_V4, SUB_V4_TRIE, SUB_V6, SUB_V6_TRIE};

/// "No subscriber owns this address."
pub const NO_SLOT: u32 = u32::MAX;

/// The owner of `unit` in a pool, or [`NO_SLOT`].
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "offset < units: base + offset lies inside the pool array (u32 max_entries, two halves \
              each) as the daemon lays it out, so the element index fits a u32"
)]
fn pool(map: &Array<[u32; 2]>, spec: &PoolSpec, unit: u64) -> u32 {
    let offset = unit.wrapping_sub(spec.first);
    if offset >= spec.units {
        return NO_SLOT;
    }
    match map.get(((spec.base + offset) >> 1) as u32) {
        Some(pair) => {
            let v = pair[(offset & 1) as usize];
            if v != 0 { v - 1 } else { NO_SLOT }
        }
        None => NO_SLOT,
    }
}

/// The slot of the subscriber owning IPv4 `addr` (most specific prefix wins), or [`NO_SLOT`].
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the probe index counts below MAX_HASH_LENGTHS (8), so it fits a u32"
)]
pub fn v4(plan: &LookupPlan, addr: u32) -> u32 {
    let mut slot = NO_SLOT;
    let mut best_len = 0;
    for i in 0..MAX_HASH_LENGTHS {
        if i as u32 >= plan.v4_probes {
            break;
        }
        let probe = &plan.v4[i];
        if probe.kind == PROBE_POOL {
            let spec = &plan.v4_pool;
            slot = pool(
                &POOL_V4,
                spec,
                u64::from(u32::from_be(addr) >> (spec.shift & 31)),
            );
        } else {
            let key = V4Key {
                len_gen: len_gen(probe.prefix_len, plan.generation),
                addr: addr & probe.mask,
            };
            // SAFETY: SUB_V4 is BPF_F_NO_PREALLOC, so an entry the daemon removes meanwhile is
            // freed only after this program (RCU), never reused under us; we only read it.
            if let Some(target) = unsafe { SUB_V4.get(key) } {
                slot = target.slot;
            }
        }
        if slot != NO_SLOT {
            best_len = probe.prefix_len;
            break;
        }
    }
    if plan.v4_trie_max > best_len
        && let Some(target) = SUB_V4_TRIE.get(Key::new(64, [plan.generation, addr]))
        && target.prefix_len > best_len
    {
        slot = target.slot;
    }
    slot
}

/// The slot of the subscriber owning IPv6 `addr` (most specific prefix wins), or [`NO_SLOT`].
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the probe index counts below MAX_HASH_LENGTHS (8), so it fits a u32"
)]
pub fn v6(plan: &LookupPlan, addr: &[u32; 4]) -> u32 {
    let mut slot = NO_SLOT;
    let mut best_len = 0;
    for i in 0..MAX_HASH_LENGTHS {
        if i as u32 >= plan.v6_probes {
            break;
        }
        let probe = &plan.v6[i];
        if probe.kind == PROBE_POOL {
            let spec = &plan.v6_pool;
            let top = (u64::from(u32::from_be(addr[0])) << 32) | u64::from(u32::from_be(addr[1]));
            slot = pool(&POOL_V6, spec, top >> (spec.shift & 63));
        } else {
            let key = V6Key {
                len_gen: len_gen(probe.prefix_len, plan.generation),
                addr: [
                    addr[0] & probe.mask[0],
                    addr[1] & probe.mask[1],
                    addr[2] & probe.mask[2],
                    addr[3] & probe.mask[3],
                ],
            };
            // SAFETY: SUB_V6 is BPF_F_NO_PREALLOC, so an entry the daemon removes meanwhile is
            // freed only after this program (RCU), never reused under us; we only read it.
            if let Some(target) = unsafe { SUB_V6.get(key) } {
                slot = target.slot;
            }
        }
        if slot != NO_SLOT {
            best_len = probe.prefix_len;
            break;
        }
    }
    if plan.v6_trie_max > best_len
        && let Some(target) = SUB_V6_TRIE.get(Key::new(
            160,
            [plan.generation, addr[0], addr[1], addr[2], addr[3]],
        ))
        && target.prefix_len > best_len
    {
        slot = target.slot;
    }
    slot
}

/// The class of traffic whose other endpoint is IPv4 `addr`: grid if a grid prefix holds it.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the prefix index counts below MAX_GRID_PREFIXES (16), so it fits a u32"
)]
pub fn v4_class(grid: &GridSet, addr: u32) -> usize {
    for i in 0..MAX_GRID_PREFIXES {
        if i as u32 >= grid.v4_count {
            break;
        }
        let [net, mask] = grid.v4[i];
        if addr & mask == net {
            return CLASS_GRID;
        }
    }
    CLASS_INTERNET
}

/// The class of traffic whose other endpoint is IPv6 `addr`.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the prefix index counts below MAX_GRID_PREFIXES (16), so it fits a u32"
)]
pub fn v6_class(grid: &GridSet, addr: &[u32; 4]) -> usize {
    for i in 0..MAX_GRID_PREFIXES {
        if i as u32 >= grid.v6_count {
            break;
        }
        let p = &grid.v6[i];
        if addr[0] & p[4] == p[0]
            && addr[1] & p[5] == p[1]
            && addr[2] & p[6] == p[2]
            && addr[3] & p[7] == p[3]
        {
            return CLASS_GRID;
        }
    }
    CLASS_INTERNET
}
