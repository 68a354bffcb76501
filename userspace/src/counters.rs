//! Reading the kernel's per-CPU counters and summing them across CPUs.

use aya::maps::{MapData, PerCpuArray};
use quid_common::{Counter, IfaceCounters, SubscriberCounters};

use crate::datapath::{Datapath, DatapathError};

/// The summed counters of subscriber slots `0..n`.
pub fn subscribers(dp: &Datapath, n: usize) -> Result<Vec<SubscriberCounters>, DatapathError> {
    let map: PerCpuArray<&MapData, SubscriberCounters> = view(dp, "SUB_COUNTERS")?;
    (0..n as u32)
        .map(|slot| {
            let per_cpu = map.get(&slot, 0).map_err(|source| DatapathError::Map {
                name: "SUB_COUNTERS",
                source,
            })?;
            let mut sum = SubscriberCounters::default();
            for cpu in per_cpu.iter() {
                for (total, c) in sum.pairs.iter_mut().zip(cpu.pairs.iter()) {
                    total.add(c);
                }
            }
            Ok(sum)
        })
        .collect()
}

/// The summed buckets of one interface.
pub fn interface(dp: &Datapath, ifindex: u32) -> Result<IfaceCounters, DatapathError> {
    let map: PerCpuArray<&MapData, IfaceCounters> = view(dp, "IFACE_COUNTERS")?;
    let per_cpu = map.get(&ifindex, 0).map_err(|source| DatapathError::Map {
        name: "IFACE_COUNTERS",
        source,
    })?;
    let mut sum = IfaceCounters::default();
    for cpu in per_cpu.iter() {
        for (total, c) in sum.buckets.iter_mut().zip(cpu.buckets.iter()) {
            total.add(c);
        }
    }
    Ok(sum)
}

/// Sum of the counters of one direction over all classes.
pub fn direction(c: &SubscriberCounters, direction: usize) -> Counter {
    let mut sum = Counter::default();
    for class in [quid_common::CLASS_INTERNET, quid_common::CLASS_GRID] {
        sum.add(&c.pairs[quid_common::pair_index(direction, class)]);
    }
    sum
}

fn view<'a, T>(dp: &'a Datapath, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    let m = dp.ebpf.map(name).ok_or(DatapathError::MissingMap(name))?;
    T::try_from(m).map_err(|source| DatapathError::Map { name, source })
}
