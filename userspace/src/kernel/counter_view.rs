//! The `SUB_COUNTERS` array mapped into the daemon's memory: every subscriber's counters read
//! with no syscall per slot.

use aya::maps::Map;
use quid_common::{SubscriberCounters, map_name};

use crate::kernel::{error::KernelError, mmap_array::MappedArray};

/// The `SUB_COUNTERS` array mapped read-only: `cpus` regions of `capacity` slots each.
pub struct CounterView {
    array: MappedArray<SubscriberCounters>,
    capacity: usize,
    cpus: usize,
}

impl CounterView {
    /// Maps the `SUB_COUNTERS` array of a loaded object.
    pub fn new(map: &Map, capacity: u32, cpus: usize) -> Result<CounterView, KernelError> {
        let array = MappedArray::new(map, map_name::SUB_COUNTERS, capacity as usize * cpus, false)?;
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
                sum.add(&c);
            }
        }
        sum
    }

    /// The counters of slots `0..n`, each summed over every CPU.
    pub fn slots(&self, n: usize) -> Vec<SubscriberCounters> {
        (0..n).map(|s| self.slot(s)).collect()
    }
}
