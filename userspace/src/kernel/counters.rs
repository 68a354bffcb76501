//! Reading the kernel's counters. Subscriber counters are read straight from the mmapped
//! `SUB_COUNTERS` array (no syscall per slot); interface buckets from a per-CPU array.

use aya::maps::{MapData, PerCpuArray};
use quid_common::{Counter, IfaceCounters, SubscriberCounters, map_name};

use crate::kernel::{error::KernelError, loader::Datapath};

/// The summed counters of subscriber slots `0..n`.
pub fn subscribers(dp: &Datapath, n: usize) -> Result<Vec<SubscriberCounters>, KernelError> {
    Ok(dp.counters.slots(n))
}

/// The summed buckets of one interface.
pub fn interface(dp: &Datapath, ifindex: u32) -> Result<IfaceCounters, KernelError> {
    let m = dp
        .ebpf
        .map(map_name::IFACE_COUNTERS)
        .ok_or(KernelError::MissingMap(map_name::IFACE_COUNTERS))?;
    let map: PerCpuArray<&MapData, IfaceCounters> =
        PerCpuArray::try_from(m).map_err(|source| KernelError::Map {
            name: map_name::IFACE_COUNTERS,
            source,
        })?;
    let per_cpu = map.get(&ifindex, 0).map_err(|source| KernelError::Map {
        name: map_name::IFACE_COUNTERS,
        source,
    })?;
    let mut sum = IfaceCounters::default();
    for cpu in per_cpu.iter() {
        sum.add(cpu);
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
