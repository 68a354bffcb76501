//! Reading the kernel's counters. Subscriber counters are read straight from the mmapped
//! `SUB_COUNTERS` array (no syscall per slot); interface buckets from a per-CPU array.

use aya::maps::{Map, MapData, PerCpuArray};
use quid_common::{Counter, IfaceCounters, SubscriberCounters};

use crate::{
    kernel::loader::{Datapath, DatapathError},
    kernel::mmap_array::MappedArray,
};

/// The `SUB_COUNTERS` array mapped read-only: `cpus` regions of `capacity` slots each.
pub struct CounterView {
    array: MappedArray<SubscriberCounters>,
    capacity: usize,
    cpus: usize,
}

impl CounterView {
    /// Maps the `SUB_COUNTERS` array of a loaded object.
    pub fn new(map: &Map, capacity: u32, cpus: usize) -> Result<CounterView, DatapathError> {
        let array = MappedArray::new(map, "SUB_COUNTERS", capacity as usize * cpus, false)?;
        Ok(CounterView {
            array,
            capacity: capacity as usize,
            cpus,
        })
    }

    /// The counters of `slot` summed over every CPU region.
    pub fn slot(&self, slot: usize) -> SubscriberCounters {
        let mut sum = SubscriberCounters::default();
        if slot >= self.capacity {
            return sum;
        }
        for cpu in 0..self.cpus {
            if let Some(c) = self.array.get(cpu * self.capacity + slot) {
                for (total, p) in sum.pairs.iter_mut().zip(c.pairs.iter()) {
                    total.add(p);
                }
            }
        }
        sum
    }

    /// The counters of slots `0..n`, each summed over every CPU.
    pub fn slots(&self, n: usize) -> Vec<SubscriberCounters> {
        (0..n).map(|s| self.slot(s)).collect()
    }
}

/// The summed counters of subscriber slots `0..n`.
pub fn subscribers(dp: &Datapath, n: usize) -> Result<Vec<SubscriberCounters>, DatapathError> {
    Ok(dp.counters.slots(n))
}

/// The summed buckets of one interface.
pub fn interface(dp: &Datapath, ifindex: u32) -> Result<IfaceCounters, DatapathError> {
    let m = dp
        .ebpf
        .map("IFACE_COUNTERS")
        .ok_or(DatapathError::MissingMap("IFACE_COUNTERS"))?;
    let map: PerCpuArray<&MapData, IfaceCounters> =
        PerCpuArray::try_from(m).map_err(|source| DatapathError::Map {
            name: "IFACE_COUNTERS",
            source,
        })?;
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
