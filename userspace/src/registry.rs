//! The subscriber table in the kernel: slot assignment, prefix entries and the lookup plan.

use aya::maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key};
use ipnet::IpNet;
use quid_common::{LookupPlan, PrefixTarget, V4Key, V6Key};

use crate::{
    datapath::{Datapath, DatapathError, Sizes},
    plan,
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
    let plan = plan::build(all, hash_lengths);
    let mut v4: HashMap<&mut MapData, V4Key, PrefixTarget> = map(dp, "SUB_V4")?;
    for (slot, prefix) in entries(table, &plan, true, false) {
        if let IpNet::V4(net) = prefix {
            let key = V4Key {
                prefix_len: u32::from(net.prefix_len()),
                addr: u32::from_ne_bytes(net.addr().octets()),
            };
            v4.insert(key, target(slot, prefix), 0)
                .map_err(|e| map_err("SUB_V4", e))?;
        }
    }
    let mut v6: HashMap<&mut MapData, V6Key, PrefixTarget> = map(dp, "SUB_V6")?;
    for (slot, prefix) in entries(table, &plan, true, true) {
        if let IpNet::V6(net) = prefix {
            let key = V6Key {
                prefix_len: u32::from(net.prefix_len()),
                addr: v6_words(&net.addr().octets()),
            };
            v6.insert(key, target(slot, prefix), 0)
                .map_err(|e| map_err("SUB_V6", e))?;
        }
    }
    let mut t4: LpmTrie<&mut MapData, u32, PrefixTarget> = map(dp, "SUB_V4_TRIE")?;
    for (slot, prefix) in entries(table, &plan, false, false) {
        if let IpNet::V4(net) = prefix {
            let key = Key::new(
                u32::from(net.prefix_len()),
                u32::from_ne_bytes(net.addr().octets()),
            );
            t4.insert(&key, target(slot, prefix), 0)
                .map_err(|e| map_err("SUB_V4_TRIE", e))?;
        }
    }
    let mut t6: LpmTrie<&mut MapData, [u32; 4], PrefixTarget> = map(dp, "SUB_V6_TRIE")?;
    for (slot, prefix) in entries(table, &plan, false, true) {
        if let IpNet::V6(net) = prefix {
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

/// (slot, prefix) pairs of one family that the plan puts in the hash (or in the trie).
fn entries<'a>(
    table: &'a Table,
    plan: &'a LookupPlan,
    hash: bool,
    v6: bool,
) -> impl Iterator<Item = (u32, &'a IpNet)> + 'a {
    table
        .subscribers
        .iter()
        .enumerate()
        .flat_map(move |(slot, s)| {
            s.prefixes
                .iter()
                .filter(move |p| matches!(p, IpNet::V6(_)) == v6 && plan::in_hash(plan, p) == hash)
                .map(move |p| (slot as u32, p))
        })
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
