//! The subscriber table in the kernel: slot assignment, prefix entries and the lookup plan.

use aya::maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key};
use ipnet::IpNet;
use quid_common::{LookupPlan, PrefixTarget, V4Key, V6Key};

use crate::{
    datapath::{Datapath, DatapathError, Sizes},
    mapped::MappedArray,
    plan::{self, Place},
    table::Table,
};

/// Errors while installing a table.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "the table has {have} {what}, the kernel tables hold {capacity}: raise \
         subscribers.{setting} in the config (memory grows with it)"
    )]
    TooLarge {
        what: &'static str,
        have: usize,
        capacity: u32,
        setting: &'static str,
    },
    #[error(transparent)]
    Datapath(#[from] DatapathError),
}

/// Checks before loading anything that `table` fits the configured kernel tables.
pub fn check_fits(table: &Table, sizes: Sizes) -> Result<(), RegistryError> {
    let n = table.subscribers.len();
    if n > sizes.subscribers as usize {
        return Err(RegistryError::TooLarge {
            what: "subscribers",
            have: n,
            capacity: sizes.subscribers,
            setting: "capacity",
        });
    }
    let (v4, v6) = table.prefix_counts();
    for (what, have) in [("IPv4 prefixes", v4), ("IPv6 prefixes", v6)] {
        if have > sizes.prefixes as usize {
            return Err(RegistryError::TooLarge {
                what,
                have,
                capacity: sizes.prefixes,
                setting: "prefix_capacity",
            });
        }
    }
    Ok(())
}

/// Writes `table` into the kernel: subscriber `i` gets counter slot `i`. Prefix entries go
/// in before the plan that makes the kernel probe their length, so a packet never probes a
/// length whose entries are still missing.
pub fn install(
    dp: &mut Datapath,
    table: &Table,
    hash_lengths: u32,
) -> Result<LookupPlan, RegistryError> {
    let all = table.subscribers.iter().flat_map(|s| &s.prefixes);
    let plan = plan::build(all, hash_lengths, dp.sizes.pools());
    let placed: Vec<(u32, &IpNet, Place)> = table
        .subscribers
        .iter()
        .enumerate()
        .flat_map(|(slot, s)| s.prefixes.iter().map(move |p| (slot as u32, p)))
        .map(|(slot, p)| (slot, p, plan::place(&plan, p)))
        .collect();
    {
        let mut pool4 = pool(dp, "POOL_V4", plan.v4_pool.units)?;
        let mut pool6 = pool(dp, "POOL_V6", plan.v6_pool.units)?;
        for &(slot, prefix, place) in &placed {
            if let Place::Pool(offset) = place {
                let pool = if matches!(prefix, IpNet::V4(_)) {
                    &mut pool4
                } else {
                    &mut pool6
                };
                // Two slots per element; stored as slot + 1 because the array starts zeroed
                // and 0 means "no owner".
                let i = (offset / 2) as usize;
                if let Some(mut pair) = pool.get(i) {
                    pair[(offset % 2) as usize] = slot + 1;
                    pool.set(i, pair);
                }
            }
        }
    }
    let mut v4: HashMap<&mut MapData, V4Key, PrefixTarget> = map(dp, "SUB_V4")?;
    for &(slot, prefix, place) in &placed {
        if let (IpNet::V4(net), Place::Hash) = (prefix, place) {
            let key = V4Key {
                prefix_len: u32::from(net.prefix_len()),
                addr: u32::from_ne_bytes(net.addr().octets()),
            };
            v4.insert(key, target(slot, prefix), 0)
                .map_err(|e| map_err("SUB_V4", e))?;
        }
    }
    let mut v6: HashMap<&mut MapData, V6Key, PrefixTarget> = map(dp, "SUB_V6")?;
    for &(slot, prefix, place) in &placed {
        if let (IpNet::V6(net), Place::Hash) = (prefix, place) {
            let key = V6Key {
                prefix_len: u32::from(net.prefix_len()),
                addr: v6_words(&net.addr().octets()),
            };
            v6.insert(key, target(slot, prefix), 0)
                .map_err(|e| map_err("SUB_V6", e))?;
        }
    }
    let mut t4: LpmTrie<&mut MapData, u32, PrefixTarget> = map(dp, "SUB_V4_TRIE")?;
    for &(slot, prefix, place) in &placed {
        if let (IpNet::V4(net), Place::Trie) = (prefix, place) {
            let key = Key::new(
                u32::from(net.prefix_len()),
                u32::from_ne_bytes(net.addr().octets()),
            );
            t4.insert(&key, target(slot, prefix), 0)
                .map_err(|e| map_err("SUB_V4_TRIE", e))?;
        }
    }
    let mut t6: LpmTrie<&mut MapData, [u32; 4], PrefixTarget> = map(dp, "SUB_V6_TRIE")?;
    for &(slot, prefix, place) in &placed {
        if let (IpNet::V6(net), Place::Trie) = (prefix, place) {
            let key = Key::new(u32::from(net.prefix_len()), v6_words(&net.addr().octets()));
            t6.insert(&key, target(slot, prefix), 0)
                .map_err(|e| map_err("SUB_V6_TRIE", e))?;
        }
    }
    let mut plan_map: Array<&mut MapData, LookupPlan> = map(dp, "LOOKUP_PLAN")?;
    plan_map
        .set(0, plan, 0)
        .map_err(|e| map_err("LOOKUP_PLAN", e))?;
    Ok(plan)
}

/// A writable mapping of a pool array (`units` is 0 when the plan uses no pool).
fn pool(
    dp: &Datapath,
    name: &'static str,
    units: u64,
) -> Result<MappedArray<[u32; 2]>, DatapathError> {
    let m = dp.ebpf.map(name).ok_or(DatapathError::MissingMap(name))?;
    MappedArray::new(m, name, units.div_ceil(2).max(1) as usize, true)
}

fn target(slot: u32, prefix: &IpNet) -> PrefixTarget {
    PrefixTarget {
        slot,
        prefix_len: u32::from(prefix.prefix_len()),
    }
}

/// IPv6 address bytes as the four native words the kernel loads from the packet.
pub fn v6_words(octets: &[u8; 16]) -> [u32; 4] {
    std::array::from_fn(|i| {
        u32::from_ne_bytes([
            octets[4 * i],
            octets[4 * i + 1],
            octets[4 * i + 2],
            octets[4 * i + 3],
        ])
    })
}

/// A typed view of one of the object's maps.
pub(crate) fn map<'a, T>(dp: &'a mut Datapath, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let m = dp
        .ebpf
        .map_mut(name)
        .ok_or(DatapathError::MissingMap(name))?;
    T::try_from(m).map_err(|source| DatapathError::Map { name, source })
}

fn map_err(name: &'static str, source: aya::maps::MapError) -> DatapathError {
    DatapathError::Map { name, source }
}
