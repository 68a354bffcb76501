//! How large the kernel maps are made: from the config's sizes and the number of CPUs.

use crate::kernel::{error::KernelError, lookup_plan::PoolSizes};
use quid_common::map_name;

/// Table sizes the kernel maps are created with.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Subscriber slots (per-CPU counter array length).
    pub subscribers: u32,
    /// Prefixes per family (hash and trie each).
    pub prefixes: u32,
    /// Direct pool entries per family (0: no pool).
    pub pool_v4: u32,
    pub pool_v6: u32,
}

impl Sizes {
    /// The pool sizes the plan may use.
    pub fn pools(&self) -> PoolSizes {
        PoolSizes {
            v4: self.pool_v4,
            v6: self.pool_v6,
        }
    }

    /// `max_entries` for each of quid's maps: the lookup maps hold two generations,
    /// `SUB_COUNTERS` a region per CPU.
    pub fn map_sizes(&self) -> Result<[(&'static str, u32); 7], KernelError> {
        let cpus = possible_cpus_u32()?;
        let gens = quid_common::GENERATIONS_U32;
        // Two pool entries per array element.
        let pool = |name: &'static str, entries: u32| {
            let elements = pool_region(entries) * u64::from(gens) / 2;
            u32::try_from(elements)
                .map(|e| e.max(1))
                .map_err(|_| KernelError::MapTooLarge {
                    name,
                    entries: elements,
                })
        };
        // The config bounds each size, but their products with the generations and CPUs
        // must still fit the kernel's u32 `max_entries`.
        let times = |name: &'static str, a: u32, b: u32| {
            a.checked_mul(b).ok_or(KernelError::MapTooLarge {
                name,
                entries: u64::from(a) * u64::from(b),
            })
        };
        let prefixes = times(map_name::SUB_V4, self.prefixes, gens)?;
        Ok([
            (map_name::POOL_V4, pool(map_name::POOL_V4, self.pool_v4)?),
            (map_name::POOL_V6, pool(map_name::POOL_V6, self.pool_v6)?),
            (map_name::SUB_V4, prefixes),
            (map_name::SUB_V6, prefixes),
            (map_name::SUB_V4_TRIE, prefixes),
            (map_name::SUB_V6_TRIE, prefixes),
            (
                map_name::SUB_COUNTERS,
                times(map_name::SUB_COUNTERS, self.subscribers, cpus)?,
            ),
        ])
    }

    /// The sizes in words, for errors that compare two of them.
    pub fn describe(&self, cpus: u32) -> String {
        format!(
            "{} subscribers x {cpus} CPUs, {} prefixes, pools {}/{}",
            self.subscribers, self.prefixes, self.pool_v4, self.pool_v6
        )
    }
}

/// Pool array entries (u32 each) one generation's region takes: even, so regions start on a
/// whole array element.
pub fn pool_region(pool_entries: u32) -> u64 {
    u64::from(pool_entries.div_ceil(2) * 2)
}

/// Number of possible CPUs (the kernel's `nr_cpu_ids`): one counter region each.
pub fn possible_cpus() -> Result<usize, KernelError> {
    aya::util::nr_cpus().map_err(|(path, e)| KernelError::Cpus(format!("{path}: {e}")))
}

/// [`possible_cpus`] as the `u32` that map sizes and [`quid_common::Meta`] count in.
pub fn possible_cpus_u32() -> Result<u32, KernelError> {
    let cpus = possible_cpus()?;
    u32::try_from(cpus).map_err(|_| KernelError::Cpus(format!("{cpus} does not fit a u32")))
}
