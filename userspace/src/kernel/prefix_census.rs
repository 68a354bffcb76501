//! The installed prefixes as the lookup plan counts them: per family, how many prefixes of
//! each length, and the pool units of every length a pool can serve, in order.
//!
//! The plan is computed from this census and nothing else, and the census is kept up to date
//! by each table change (a prefix in, a prefix out). A change of a few thousand prefixes in
//! millions then gets its plan without a walk over the whole table, and the plan is the same
//! whether the census was counted whole or changed step by step.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

/// A prefix's pool unit: its address bits down to its length, as a number (IPv6: of the top
/// 64 bits, so only prefixes of length 64 or shorter have one).
pub fn unit(prefix: &IpNet) -> Option<u64> {
    match prefix {
        IpNet::V4(n) => Some(u64::from(
            u32::from(n.addr())
                .checked_shr(32 - u32::from(n.prefix_len()))
                .unwrap_or(0),
        )),
        IpNet::V6(n) if n.prefix_len() <= 64 => {
            let top = (u128::from(n.addr()) >> 64) as u64;
            Some(top.checked_shr(64 - u32::from(n.prefix_len())).unwrap_or(0))
        }
        IpNet::V6(_) => None,
    }
}

/// One family's prefixes, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyCensus {
    /// Prefixes per length (lengths with none are absent).
    pub counts: BTreeMap<u32, usize>,
    /// Pool units per length, for the lengths that have them.
    pub units: BTreeMap<u32, BTreeSet<u64>>,
}

impl FamilyCensus {
    fn add(&mut self, len: u32, unit: Option<u64>) {
        *self.counts.entry(len).or_default() += 1;
        if let Some(u) = unit {
            self.units.entry(len).or_default().insert(u);
        }
    }

    fn remove(&mut self, len: u32, unit: Option<u64>) {
        if let Some(n) = self.counts.get_mut(&len) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&len);
            }
        }
        if let (Some(u), Some(set)) = (unit, self.units.get_mut(&len)) {
            set.remove(&u);
            if set.is_empty() {
                self.units.remove(&len);
            }
        }
    }
}

/// Both families' prefixes, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixCensus {
    pub v4: FamilyCensus,
    pub v6: FamilyCensus,
}

impl PrefixCensus {
    /// The census of `prefixes` (each once: a table never lists a prefix twice).
    pub fn of<'a>(prefixes: impl IntoIterator<Item = &'a IpNet>) -> PrefixCensus {
        let mut c = PrefixCensus::default();
        for p in prefixes {
            c.add(p);
        }
        c
    }

    fn family(&mut self, prefix: &IpNet) -> &mut FamilyCensus {
        match prefix {
            IpNet::V4(_) => &mut self.v4,
            IpNet::V6(_) => &mut self.v6,
        }
    }

    /// Counts `prefix` in (it must not be counted already).
    pub fn add(&mut self, prefix: &IpNet) {
        let (len, u) = (u32::from(prefix.prefix_len()), unit(prefix));
        self.family(prefix).add(len, u);
    }

    /// How many (IPv4, IPv6) prefixes are counted.
    pub fn totals(&self) -> (usize, usize) {
        let sum = |f: &FamilyCensus| f.counts.values().sum();
        (sum(&self.v4), sum(&self.v6))
    }

    /// Counts `prefix` out (it must have been counted in).
    pub fn remove(&mut self, prefix: &IpNet) {
        let (len, u) = (u32::from(prefix.prefix_len()), unit(prefix));
        self.family(prefix).remove(len, u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn counted_in_and_out_step_by_step_equals_counted_whole() {
        let all = nets(&[
            "100.64.0.1/32",
            "100.64.0.2/32",
            "198.51.100.0/24",
            "2001:db8:1::/56",
            "2001:db8::1/128",
            "0.0.0.0/0",
        ]);
        let mut c = PrefixCensus::of(&all[..2]);
        for p in &all[2..] {
            c.add(p);
        }
        c.add(&"203.0.113.9/32".parse().unwrap());
        c.remove(&"203.0.113.9/32".parse().unwrap());
        assert_eq!(c, PrefixCensus::of(&all));
        assert_eq!(c.totals(), (4, 2));
        for p in &all {
            c.remove(p);
        }
        assert_eq!(c, PrefixCensus::default());
    }
}
