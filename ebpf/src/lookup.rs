//! Finding the subscriber that owns an address: exact-match hash probes over the prefix
//! lengths in use (longest first), with the LPM trie only for lengths the plan left out.
//!
//! Results are plain integers with a sentinel ([`NO_SLOT`]), not `Option`s: LLVM leaves the
//! payload of a `None` undefined and may read it from a register a helper call clobbered,
//! which the verifier rejects.

use aya_ebpf::maps::lpm_trie::Key;
use quid_common::{LookupPlan, MAX_HASH_LENGTHS, V4Key, V6Key};

use crate::maps::{SUB_V4, SUB_V4_TRIE, SUB_V6, SUB_V6_TRIE};

/// "No subscriber owns this address."
pub const NO_SLOT: u32 = u32::MAX;

/// The slot of the subscriber owning IPv4 `addr` (most specific prefix wins), or [`NO_SLOT`].
#[inline(always)]
pub fn v4(plan: &LookupPlan, addr: u32) -> u32 {
    let mut slot = NO_SLOT;
    let mut best_len = 0;
    for i in 0..MAX_HASH_LENGTHS {
        if i as u32 >= plan.v4_probes {
            break;
        }
        let probe = &plan.v4[i];
        let key = V4Key {
            prefix_len: probe.prefix_len,
            addr: addr & probe.mask,
        };
        if let Some(target) = unsafe { SUB_V4.get(&key) } {
            slot = target.slot;
            best_len = probe.prefix_len;
            break;
        }
    }
    if plan.v4_trie_max > best_len {
        if let Some(target) = SUB_V4_TRIE.get(Key::new(32, addr)) {
            if target.prefix_len > best_len {
                slot = target.slot;
            }
        }
    }
    slot
}

/// The slot of the subscriber owning IPv6 `addr` (most specific prefix wins), or [`NO_SLOT`].
#[inline(always)]
pub fn v6(plan: &LookupPlan, addr: &[u32; 4]) -> u32 {
    let mut slot = NO_SLOT;
    let mut best_len = 0;
    for i in 0..MAX_HASH_LENGTHS {
        if i as u32 >= plan.v6_probes {
            break;
        }
        let probe = &plan.v6[i];
        let key = V6Key {
            prefix_len: probe.prefix_len,
            addr: [
                addr[0] & probe.mask[0],
                addr[1] & probe.mask[1],
                addr[2] & probe.mask[2],
                addr[3] & probe.mask[3],
            ],
        };
        if let Some(target) = unsafe { SUB_V6.get(&key) } {
            slot = target.slot;
            best_len = probe.prefix_len;
            break;
        }
    }
    if plan.v6_trie_max > best_len {
        if let Some(target) = SUB_V6_TRIE.get(Key::new(128, *addr)) {
            if target.prefix_len > best_len {
                slot = target.slot;
            }
        }
    }
    slot
}
