//! The grid's prefixes in the kernel (map `GRID`): what makes traffic class grid.

use aya::maps::{Array, MapData};
use ipnet::IpNet;
use quid_common::{GridSet, MAX_GRID_PREFIXES, map_name, v4_mask, v6_mask};

use crate::{
    kernel::error::KernelError,
    kernel::loader::{Datapath, map},
    kernel::subscriber_maps::v6_words,
};

/// The kernel's form of a list of grid prefixes (config validation keeps it within bounds;
/// prefixes past the bound are ignored here).
pub fn grid_set(prefixes: &[IpNet]) -> GridSet {
    let mut g = GridSet::default();
    for p in prefixes {
        let len = u32::from(p.prefix_len());
        match p {
            IpNet::V4(n) if (g.v4_count as usize) < MAX_GRID_PREFIXES => {
                g.v4[g.v4_count as usize] = [u32::from_ne_bytes(n.addr().octets()), v4_mask(len)];
                g.v4_count += 1;
            }
            IpNet::V6(n) if (g.v6_count as usize) < MAX_GRID_PREFIXES => {
                let a = v6_words(&n.addr().octets());
                let m = v6_mask(len);
                g.v6[g.v6_count as usize] = [a[0], a[1], a[2], a[3], m[0], m[1], m[2], m[3]];
                g.v6_count += 1;
            }
            _ => {}
        }
    }
    g
}

/// Writes the grid prefixes into the kernel (one map update: packets see the old or new set).
pub fn install(dp: &mut Datapath, prefixes: &[IpNet]) -> Result<(), KernelError> {
    let mut grid: Array<&mut MapData, GridSet> = map(dp, map_name::GRID)?;
    grid.set(0, grid_set(prefixes), 0)
        .map_err(|source| KernelError::Map {
            name: map_name::GRID,
            source,
        })
}
