//! The subscriber table in the kernel: stable counter slots, prefix entries in two lookup
//! generations, and the flip between them.
//!
//! A change is applied to the generation packets do not use, whose plan is then written, and
//! `ACTIVE_GEN` flips to it in one aligned 4-byte store: every packet is looked up entirely in
//! the old table or entirely in the new one, so a prefix moved between subscribers is counted
//! to the old owner until the flip and to the new one after it, never to both or neither.
//! After a grace period (packets in flight finish in microseconds) the other generation is
//! brought to the same table, ready for the next change.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use aya::maps::{Array, HashMap as BpfHash, LpmTrie, MapData, lpm_trie::Key};
use ipnet::IpNet;
use quid_common::{
    GENERATIONS, GENERATIONS_U32, LookupPlan, PrefixTarget, SubscriberCounters, V4Key, V4TrieData,
    V6Key, V6TrieData, len_gen, map_name,
};

use crate::{
    kernel::error::KernelError,
    kernel::loader::{Datapath, map},
    kernel::lookup_plan::{self as plan, Place},
    kernel::mmap_array::MappedArray,
    kernel::prefix_census::PrefixCensus,
    kernel::sizes::{Sizes, pool_region},
    subscribers::{
        diff::{TableDiff, diff as table_diff},
        table::{Subscriber, Table},
    },
};

/// How long to wait after a flip before rewriting the generation packets just left.
pub const GRACE: Duration = Duration::from_millis(20);

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
    Datapath(#[from] KernelError),
}

/// Checks before loading anything that `table` fits the configured kernel tables.
pub fn check_fits(table: &Table, sizes: Sizes) -> Result<(), RegistryError> {
    fits(table.subscribers.len(), table.prefix_counts(), sizes)
}

/// Checks that `n` subscribers with `(v4, v6)` prefixes fit the configured kernel tables.
fn fits(n: usize, (v4, v6): (usize, usize), sizes: Sizes) -> Result<(), RegistryError> {
    if n > sizes.subscribers as usize {
        return Err(RegistryError::TooLarge {
            what: "subscribers",
            have: n,
            capacity: sizes.subscribers,
            setting: "capacity",
        });
    }
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

/// Installs `table` into freshly loaded maps (slots in table order); for tests and benchmarks.
pub fn install(
    dp: &mut Datapath,
    table: &Table,
    hash_lengths: u32,
) -> Result<Registry, RegistryError> {
    let mut r = Registry::new(hash_lengths);
    r.apply(dp, table.clone())?;
    Ok(r)
}

/// What a change did, for the log and the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Subscribers whose name, plan or prefixes changed.
    pub changed: Vec<String>,
}

impl Change {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The hash and trie entries one generation holds (the pools are rewritten whole).
#[derive(Default, Clone)]
struct Entries {
    v4: HashMap<V4Key, PrefixTarget>,
    v6: HashMap<V6Key, PrefixTarget>,
    t4: HashMap<(u32, V4TrieData), PrefixTarget>,
    t6: HashMap<(u32, V6TrieData), PrefixTarget>,
}

/// Slots handed to subscribers: stable for a subscriber's lifetime, reused only after its
/// final counts were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots {
    by_id: BTreeMap<String, u32>,
    free: Vec<u32>,
    next: u32,
}

impl Slots {
    /// Rebuilds the allocator from known assignments (after a restart).
    pub fn from_assignments(assigned: impl IntoIterator<Item = (String, u32)>) -> Slots {
        let by_id: BTreeMap<String, u32> = assigned.into_iter().collect();
        let next = by_id.values().map(|s| s + 1).max().unwrap_or(0);
        let mut used = vec![false; next as usize];
        for &s in by_id.values() {
            used[s as usize] = true;
        }
        let free = (0..next).rev().filter(|&s| !used[s as usize]).collect();
        Slots { by_id, free, next }
    }

    /// The slot of subscriber `id`, if it has one.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Every (id, slot).
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.by_id.iter().map(|(k, &v)| (k.as_str(), v))
    }

    fn assign(&mut self, id: &str) -> u32 {
        if let Some(s) = self.get(id) {
            return s;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.by_id.insert(id.to_owned(), slot);
        slot
    }

    /// Gives `id`'s slot back (call only once its final counts were read).
    pub fn release(&mut self, id: &str) -> Option<u32> {
        let slot = self.by_id.remove(id)?;
        self.free.push(slot);
        Some(slot)
    }

    /// Slots in use or reserved: the high-water mark.
    pub fn high_water(&self) -> u32 {
        self.next
    }
}

/// The installed table and what each generation holds.
pub struct Registry {
    hash_lengths: u32,
    table: Table,
    slots: Slots,
    active: u32,
    entries: [Entries; GENERATIONS],
    plans: [LookupPlan; GENERATIONS],
    /// Owners written in each generation's (IPv4, IPv6) pool region, for `quid_map_entries`.
    pool_used: [[u64; 2]; GENERATIONS],
    /// The prefixes of `table`, counted as the plan needs them.
    census: PrefixCensus,
    /// Whether both generations hold `table` (false until the first apply on new maps, and
    /// after an apply that failed half-way: the next one then rewrites them whole).
    installed: bool,
    /// Generations rewritten whole so far (the others were changed by difference).
    rewrites: u64,
}

impl Registry {
    /// A registry for freshly created (empty) maps.
    pub fn new(hash_lengths: u32) -> Registry {
        Registry {
            hash_lengths,
            table: Table::default(),
            slots: Slots::default(),
            active: 0,
            entries: Default::default(),
            plans: Default::default(),
            pool_used: Default::default(),
            census: PrefixCensus::default(),
            installed: false,
            rewrites: 0,
        }
    }

    /// A registry for freshly created (empty) maps whose subscribers keep the slots `slots`
    /// gives them (a table installed whole as another registry holds it by difference).
    pub fn with_slots(hash_lengths: u32, slots: Slots) -> Registry {
        Registry {
            slots,
            ..Registry::new(hash_lengths)
        }
    }

    /// How many generations were rewritten whole (a first install, a plan that changed
    /// shape) rather than changed by difference.
    pub fn rewrites(&self) -> u64 {
        self.rewrites
    }

    /// A registry for adopted maps that hold `table` with `slots` in both generations, as a
    /// previous daemon left them (`active` is the generation it left active). Each
    /// generation's entries are taken as placed under the plan the kernel holds for it: a
    /// daemon of another version may have chosen another pool window, and the first change
    /// then rewrites that generation whole.
    pub fn adopt(
        dp: &Datapath,
        hash_lengths: u32,
        table: Table,
        slots: Slots,
        active: u32,
    ) -> Registry {
        let census = PrefixCensus::of(table.subscribers.iter().flat_map(|s| &s.prefixes));
        let mut r = Registry {
            hash_lengths,
            table,
            slots,
            active: active & 1,
            entries: Default::default(),
            plans: Default::default(),
            pool_used: Default::default(),
            census,
            installed: true,
            rewrites: 0,
        };
        for g in 0..GENERATIONS_U32 {
            let plan = kernel_plan(dp, g)
                .filter(|p| p.generation == g)
                .unwrap_or_else(|| r.plan(dp.sizes, g));
            let (entries, pools) = r.desired(&plan, g, &r.table.subscribers);
            r.pool_used[g as usize] = pool_counts(&pools);
            r.plans[g as usize] = plan;
            r.entries[g as usize] = entries;
        }
        r
    }

    /// The installed table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Slot assignments, including subscribers removed but not yet released.
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    /// Releases the slots of removed subscribers whose final counts were read; ids still in
    /// the installed table keep theirs. Returns how many slots were freed.
    pub fn release(&mut self, ids: &[String]) -> usize {
        let installed: std::collections::HashSet<&str> = self
            .table
            .subscribers
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        let mut freed = 0;
        for id in ids {
            if !installed.contains(id.as_str()) && self.slots.release(id).is_some() {
                freed += 1;
            }
        }
        freed
    }

    /// (map, entries in use, capacity) of the lookup maps (both generations) and the slots.
    pub fn map_usage(&self, sizes: Sizes) -> Vec<(&'static str, u64, u64)> {
        let gens = GENERATIONS as u64;
        let cap = u64::from(sizes.prefixes) * gens;
        let sum = |f: &dyn Fn(&Entries) -> usize| self.entries.iter().map(|e| f(e) as u64).sum();
        let pool = |i: usize| self.pool_used.iter().map(|g| g[i]).sum();
        vec![
            (
                map_name::POOL_V4,
                pool(0),
                pool_region(sizes.pool_v4) * gens,
            ),
            (
                map_name::POOL_V6,
                pool(1),
                pool_region(sizes.pool_v6) * gens,
            ),
            (map_name::SUB_V4, sum(&|e| e.v4.len()), cap),
            (map_name::SUB_V6, sum(&|e| e.v6.len()), cap),
            (map_name::SUB_V4_TRIE, sum(&|e| e.t4.len()), cap),
            (map_name::SUB_V6_TRIE, sum(&|e| e.t6.len()), cap),
            (
                map_name::SUB_COUNTERS,
                self.slots.by_id.len() as u64,
                u64::from(sizes.subscribers),
            ),
        ]
    }

    /// The plan packets use now.
    pub fn active_plan(&self) -> &LookupPlan {
        &self.plans[self.active as usize]
    }

    /// The active generation.
    pub fn active(&self) -> u32 {
        self.active
    }

    /// Makes `table` the installed one: only the difference is written, in the inactive
    /// generation first, then the flip, then the other generation. Removed subscribers keep
    /// their slot until [`Registry::release`]. Returns what changed and, for every slot handed
    /// out now, its counters before any of the subscriber's packets could reach it.
    ///
    /// Only the subscribers the change touches are visited, unless the plan changes shape
    /// (other probed lengths, a pool moved or resized): a generation under a new plan is
    /// rewritten whole, as on the first install.
    pub fn apply(
        &mut self,
        dp: &mut Datapath,
        table: Table,
    ) -> Result<(Change, Vec<(String, SubscriberCounters)>), RegistryError> {
        let d = table_diff(&self.table, &table);
        let change = change_of(&self.table, &table, &d);
        if d.is_empty() && self.installed {
            return Ok((change, Vec::new()));
        }
        // The new table's prefixes are counted from the old table's and the change, not by
        // walking the table.
        recount(&mut self.census, &self.table, &table, &d);
        if let Err(e) = fits(table.subscribers.len(), self.census.totals(), dp.sizes) {
            recount(&mut self.census, &table, &self.table, &d.reversed());
            return Err(e);
        }
        // Slots held by subscribers outside the new table: the old table's (each has one)
        // that leave it, and those removed earlier whose final counts are not read yet.
        let staying = self.table.subscribers.len().saturating_sub(d.removed.len());
        let returning = d
            .added
            .iter()
            .filter(|&&j| self.slots.get(&table.subscribers[j].id).is_some())
            .count();
        let kept = self.slots.by_id.len().saturating_sub(staying + returning);
        let would_need = kept + table.subscribers.len();
        if would_need > dp.sizes.subscribers as usize {
            recount(&mut self.census, &table, &self.table, &d.reversed());
            return Err(RegistryError::TooLarge {
                what: "subscribers (counting those just removed, whose final counts are not read yet)",
                have: would_need,
                capacity: dp.sizes.subscribers,
                setting: "capacity",
            });
        }
        let mut baselines = Vec::new();
        let fresh = if self.installed {
            // Everyone else of the new table was in the old one, with a slot.
            d.added.iter().map(|&j| &table.subscribers[j]).collect()
        } else {
            table.subscribers.iter().collect::<Vec<_>>()
        };
        for s in fresh {
            if self.slots.get(&s.id).is_none() {
                let slot = self.slots.assign(&s.id);
                baselines.push((s.id.clone(), dp.counters.slot(slot as usize)));
            }
        }
        let old = std::mem::take(&mut self.table);
        match self.switch(dp, &old, &table, &d) {
            Ok(()) => {
                self.table = table;
                self.installed = true;
                // Freeing a million subscribers' strings takes longer than the change itself
                // (tens of ms): done on a thread of its own, off the reload's path; where no
                // thread can be started it is freed here.
                let _ = std::thread::Builder::new()
                    .name("quid-free-table".into())
                    .spawn(move || drop(old));
                Ok((change, baselines))
            }
            Err(e) => {
                // The kernel holds part of the change: the next apply rewrites both
                // generations whole, whatever it asks for.
                recount(&mut self.census, &table, &old, &d.reversed());
                self.table = old;
                self.installed = false;
                Err(e.into())
            }
        }
    }

    /// Gives the subscribers at `rows` (positions in the installed table) new prefixes, and
    /// changes nothing else: the live bindings' path. Only those rows are copied and their
    /// entries patched, so a change costs the same at a million subscribers as at ten;
    /// when the lookup plan changes shape the whole table goes through [`Registry::apply`].
    pub fn apply_prefixes(
        &mut self,
        dp: &mut Datapath,
        rows: Vec<(usize, Vec<IpNet>)>,
    ) -> Result<Change, RegistryError> {
        let rows: Vec<(usize, Vec<IpNet>)> = rows
            .into_iter()
            .filter(|(i, p)| {
                self.table
                    .subscribers
                    .get(*i)
                    .is_some_and(|s| s.prefixes != *p)
            })
            .collect();
        if rows.is_empty() {
            return Ok(Change::default());
        }
        let old = Table {
            subscribers: rows
                .iter()
                .map(|(i, _)| self.table.subscribers[*i].clone())
                .collect(),
        };
        let mut new = old.clone();
        for (s, (_, prefixes)) in new.subscribers.iter_mut().zip(&rows) {
            s.prefixes.clone_from(prefixes);
        }
        let d = TableDiff {
            changed: (0..rows.len()).map(|k| (k, k)).collect(),
            ..TableDiff::default()
        };
        recount(&mut self.census, &old, &new, &d);
        let same_plans = self.installed
            && (0..GENERATIONS_U32).all(|g| self.plans[g as usize] == self.plan(dp.sizes, g));
        let fit = fits(self.table.subscribers.len(), self.census.totals(), dp.sizes);
        recount(&mut self.census, &new, &old, &d.reversed());
        fit?;
        if !same_plans {
            let mut table = self.table.clone();
            for (i, prefixes) in rows {
                table.subscribers[i].prefixes = prefixes;
            }
            return self.apply(dp, table).map(|(change, _)| change);
        }
        recount(&mut self.census, &old, &new, &d);
        match self.switch(dp, &old, &new, &d) {
            Ok(()) => {
                for (i, prefixes) in rows {
                    self.table.subscribers[i].prefixes = prefixes;
                }
                Ok(Change {
                    changed: new.subscribers.into_iter().map(|s| s.id).collect(),
                    ..Change::default()
                })
            }
            Err(e) => {
                recount(&mut self.census, &new, &old, &d.reversed());
                self.installed = false;
                Err(e.into())
            }
        }
    }

    /// Writes the change from `old` to `new` into the inactive generation, flips to it, and
    /// brings the other generation to the same.
    fn switch(
        &mut self,
        dp: &mut Datapath,
        old: &Table,
        new: &Table,
        d: &TableDiff,
    ) -> Result<(), KernelError> {
        let next = 1 - self.active;
        self.bring(dp, next, old, new, d)?;
        flip(dp, next)?;
        self.active = next;
        std::thread::sleep(GRACE);
        self.bring(dp, 1 - next, old, new, d)
    }

    /// The plan of generation `g` for the counted prefixes.
    fn plan(&self, sizes: Sizes, g: u32) -> LookupPlan {
        let mut plan = plan::from_census(&self.census, self.hash_lengths, sizes.pools());
        plan.generation = g;
        plan.v4_pool.base = u64::from(g) * pool_region(sizes.pool_v4);
        plan.v6_pool.base = u64::from(g) * pool_region(sizes.pool_v6);
        plan
    }

    /// Brings generation `g` (not the active one) from `old` to `new`: only the entries of
    /// the subscribers in `d` when its plan stays, all of them when the plan changes.
    fn bring(
        &mut self,
        dp: &mut Datapath,
        g: u32,
        old: &Table,
        new: &Table,
        d: &TableDiff,
    ) -> Result<(), KernelError> {
        let plan = self.plan(dp.sizes, g);
        if self.installed && self.plans[g as usize] == plan {
            self.patch(dp, &plan, old, new, d)
        } else {
            self.rewrites += 1;
            self.sync(dp, plan, new)
        }
    }

    /// The hash/trie entries and pool writes generation `g` needs for `subscribers`.
    fn desired<'a>(
        &self,
        plan: &LookupPlan,
        g: u32,
        subscribers: impl IntoIterator<Item = &'a Subscriber>,
    ) -> (Entries, Vec<PoolWrite>) {
        let mut e = Entries::default();
        let mut pools = Vec::new();
        for s in subscribers {
            let Some(slot) = self.slots.get(&s.id) else {
                continue;
            };
            for prefix in &s.prefixes {
                entry(plan, g, slot, prefix, &mut e, &mut pools);
            }
        }
        (e, pools)
    }

    /// Rewrites generation `plan.generation` (not the active one) whole for `table`.
    fn sync(
        &mut self,
        dp: &mut Datapath,
        plan: LookupPlan,
        table: &Table,
    ) -> Result<(), KernelError> {
        let g = plan.generation;
        let (want, pools) = self.desired(&plan, g, &table.subscribers);
        let have = std::mem::take(&mut self.entries[g as usize]);
        write_pools(dp, &plan, &pools)?;
        sync_map::<V4Key>(dp, map_name::SUB_V4, &have.v4, &want.v4)?;
        sync_map::<V6Key>(dp, map_name::SUB_V6, &have.v6, &want.v6)?;
        sync_trie::<V4TrieData>(dp, map_name::SUB_V4_TRIE, &have.t4, &want.t4)?;
        sync_trie::<V6TrieData>(dp, map_name::SUB_V6_TRIE, &have.t6, &want.t6)?;
        write_plan(dp, &plan)?;
        self.plans[g as usize] = plan;
        self.entries[g as usize] = want;
        self.pool_used[g as usize] = pool_counts(&pools);
        Ok(())
    }

    /// Changes generation `plan.generation` (not the active one, under the same plan) from
    /// `old` to `new` for the subscribers in `d` alone: their old entries out, their new ones
    /// in (a prefix moved between two of them ends with its new owner).
    fn patch(
        &mut self,
        dp: &mut Datapath,
        plan: &LookupPlan,
        old: &Table,
        new: &Table,
        d: &TableDiff,
    ) -> Result<(), KernelError> {
        let g = plan.generation;
        let leaving = d
            .removed
            .iter()
            .chain(d.changed.iter().map(|(i, _)| i))
            .map(|&i| &old.subscribers[i]);
        let coming = d
            .added
            .iter()
            .chain(d.changed.iter().map(|(_, j)| j))
            .map(|&j| &new.subscribers[j]);
        let (gone, gone_pools) = self.desired(plan, g, leaving);
        let (come, come_pools) = self.desired(plan, g, coming);
        let cleared: Vec<PoolWrite> = gone_pools.iter().map(|&(v6, i, _)| (v6, i, 0)).collect();
        patch_pools(dp, &cleared)?;
        patch_pools(dp, &come_pools)?;
        let have = &mut self.entries[g as usize];
        patch_map::<V4Key>(dp, map_name::SUB_V4, &mut have.v4, &gone.v4, &come.v4)?;
        patch_map::<V6Key>(dp, map_name::SUB_V6, &mut have.v6, &gone.v6, &come.v6)?;
        patch_trie::<V4TrieData>(dp, map_name::SUB_V4_TRIE, &mut have.t4, &gone.t4, &come.t4)?;
        patch_trie::<V6TrieData>(dp, map_name::SUB_V6_TRIE, &mut have.t6, &gone.t6, &come.t6)?;
        let used = &mut self.pool_used[g as usize];
        for (u, (out, into)) in used.iter_mut().zip(
            pool_counts(&gone_pools)
                .into_iter()
                .zip(pool_counts(&come_pools)),
        ) {
            *u = u.saturating_sub(out) + into;
        }
        Ok(())
    }
}

/// Counts the change `d` from `old` to `new` into `census`.
fn recount(census: &mut PrefixCensus, old: &Table, new: &Table, d: &TableDiff) {
    for &i in d.removed.iter().chain(d.changed.iter().map(|(i, _)| i)) {
        for p in &old.subscribers[i].prefixes {
            census.remove(p);
        }
    }
    for &j in d.added.iter().chain(d.changed.iter().map(|(_, j)| j)) {
        for p in &new.subscribers[j].prefixes {
            census.add(p);
        }
    }
}

/// The ids of `d`, in the order of the tables.
fn change_of(old: &Table, new: &Table, d: &TableDiff) -> Change {
    let id = |t: &Table, i: usize| t.subscribers[i].id.clone();
    Change {
        added: d.added.iter().map(|&j| id(new, j)).collect(),
        removed: d.removed.iter().map(|&i| id(old, i)).collect(),
        changed: d.changed.iter().map(|&(_, j)| id(new, j)).collect(),
    }
}

/// How many (IPv4, IPv6) pool elements `writes` owns.
fn pool_counts(writes: &[PoolWrite]) -> [u64; 2] {
    let v6 = writes.iter().filter(|w| w.0).count() as u64;
    [writes.len() as u64 - v6, v6]
}

/// A pool entry: (IPv6?, index in the whole array, slot + 1).
type PoolWrite = (bool, u64, u32);

fn entry(
    plan: &LookupPlan,
    g: u32,
    slot: u32,
    prefix: &IpNet,
    e: &mut Entries,
    pools: &mut Vec<PoolWrite>,
) {
    let len = u32::from(prefix.prefix_len());
    let target = PrefixTarget {
        slot,
        prefix_len: len,
    };
    match (prefix, plan::place(plan, prefix)) {
        (IpNet::V4(_), Place::Pool(offset)) => {
            pools.push((false, plan.v4_pool.base + offset, slot + 1))
        }
        (IpNet::V6(_), Place::Pool(offset)) => {
            pools.push((true, plan.v6_pool.base + offset, slot + 1))
        }
        (IpNet::V4(net), Place::Hash) => {
            let key = V4Key {
                len_gen: len_gen(len, g),
                addr: u32::from_ne_bytes(net.addr().octets()),
            };
            e.v4.insert(key, target);
        }
        (IpNet::V6(net), Place::Hash) => {
            let key = V6Key {
                len_gen: len_gen(len, g),
                addr: v6_words(&net.addr().octets()),
            };
            e.v6.insert(key, target);
        }
        (IpNet::V4(net), Place::Trie) => {
            e.t4.insert(
                (32 + len, [g, u32::from_ne_bytes(net.addr().octets())]),
                target,
            );
        }
        (IpNet::V6(net), Place::Trie) => {
            let w = v6_words(&net.addr().octets());
            e.t6.insert((32 + len, [g, w[0], w[1], w[2], w[3]]), target);
        }
    }
}

/// The pool array `name` of `entries` per generation, mapped.
fn pool_array(
    dp: &Datapath,
    name: &'static str,
    entries: u32,
) -> Result<MappedArray<[u32; 2]>, KernelError> {
    let total = pool_region(entries) * GENERATIONS as u64;
    let m = dp.ebpf.map(name).ok_or(KernelError::MissingMap(name))?;
    let elements = usize::try_from(total / 2).map_err(|_| KernelError::MapTooLarge {
        name,
        entries: total / 2,
    })?;
    MappedArray::new(m, name, elements, true)
}

/// The pools: (IPv6?, map name, entries per generation).
fn pools(sizes: Sizes) -> [(bool, &'static str, u32); 2] {
    [
        (false, map_name::POOL_V4, sizes.pool_v4),
        (true, map_name::POOL_V6, sizes.pool_v6),
    ]
}

/// Rewrites the pool regions of `plan`'s generation: cleared, then the owners written.
fn write_pools(dp: &Datapath, plan: &LookupPlan, writes: &[PoolWrite]) -> Result<(), KernelError> {
    for (v6, name, entries) in pools(dp.sizes) {
        if entries == 0 {
            continue;
        }
        let mut pool = pool_array(dp, name, entries)?;
        let base = if v6 {
            plan.v6_pool.base
        } else {
            plan.v4_pool.base
        };
        // Regions start on an even entry and hold an even number: whole elements.
        let first = usize::try_from(base / 2).unwrap_or(usize::MAX);
        let count = usize::try_from(pool_region(entries) / 2).unwrap_or(0);
        for i in first..first.saturating_add(count) {
            pool.set(i, [0, 0]);
        }
    }
    patch_pools(dp, writes)
}

/// Writes single pool entries (an owner, or 0 for none).
fn patch_pools(dp: &Datapath, writes: &[PoolWrite]) -> Result<(), KernelError> {
    for (v6, name, entries) in pools(dp.sizes) {
        if entries == 0 || !writes.iter().any(|w| w.0 == v6) {
            continue;
        }
        let mut pool = pool_array(dp, name, entries)?;
        for &(is_v6, index, value) in writes {
            if is_v6 != v6 {
                continue;
            }
            let i = usize::try_from(index / 2).unwrap_or(usize::MAX);
            if let Some(mut pair) = pool.get(i) {
                pair[(index % 2) as usize] = value;
                pool.set(i, pair);
            }
        }
    }
    Ok(())
}

/// Writes generation `plan.generation`'s plan.
fn write_plan(dp: &mut Datapath, plan: &LookupPlan) -> Result<(), KernelError> {
    let mut plans: Array<&mut MapData, LookupPlan> = map(dp, map_name::LOOKUP_PLAN)?;
    plans
        .set(plan.generation, *plan, 0)
        .map_err(|e| map_err(map_name::LOOKUP_PLAN, e))
}

/// Deletes what `have` holds and `want` does not, then writes what is new or different.
fn sync_map<K>(
    dp: &mut Datapath,
    name: &'static str,
    have: &HashMap<K, PrefixTarget>,
    want: &HashMap<K, PrefixTarget>,
) -> Result<(), KernelError>
where
    K: aya::Pod + Eq + std::hash::Hash,
{
    let mut m: BpfHash<&mut MapData, K, PrefixTarget> = map(dp, name)?;
    for k in have.keys().filter(|k| !want.contains_key(k)) {
        m.remove(k).map_err(|e| map_err(name, e))?;
    }
    for (k, v) in want {
        if have.get(k) != Some(v) {
            m.insert(k, *v, 0).map_err(|e| map_err(name, e))?;
        }
    }
    Ok(())
}

fn sync_trie<D>(
    dp: &mut Datapath,
    name: &'static str,
    have: &HashMap<(u32, D), PrefixTarget>,
    want: &HashMap<(u32, D), PrefixTarget>,
) -> Result<(), KernelError>
where
    D: aya::Pod + Eq + std::hash::Hash,
{
    let mut m: LpmTrie<&mut MapData, D, PrefixTarget> = map(dp, name)?;
    for (len, data) in have.keys().filter(|k| !want.contains_key(k)) {
        m.remove(&Key::new(*len, *data))
            .map_err(|e| map_err(name, e))?;
    }
    for (&(len, data), v) in want {
        if have.get(&(len, data)) != Some(v) {
            m.insert(&Key::new(len, data), *v, 0)
                .map_err(|e| map_err(name, e))?;
        }
    }
    Ok(())
}

/// Deletes the keys of `gone` that `come` does not have, then writes `come`'s entries that
/// `have` lacks or holds otherwise; `have` follows.
fn patch_map<K>(
    dp: &mut Datapath,
    name: &'static str,
    have: &mut HashMap<K, PrefixTarget>,
    gone: &HashMap<K, PrefixTarget>,
    come: &HashMap<K, PrefixTarget>,
) -> Result<(), KernelError>
where
    K: aya::Pod + Eq + std::hash::Hash,
{
    if gone.is_empty() && come.is_empty() {
        return Ok(());
    }
    let mut m: BpfHash<&mut MapData, K, PrefixTarget> = map(dp, name)?;
    for k in gone.keys().filter(|k| !come.contains_key(k)) {
        if have.remove(k).is_some() {
            m.remove(k).map_err(|e| map_err(name, e))?;
        }
    }
    for (k, v) in come {
        if have.get(k) != Some(v) {
            m.insert(k, *v, 0).map_err(|e| map_err(name, e))?;
            have.insert(*k, *v);
        }
    }
    Ok(())
}

/// [`patch_map`] for an LPM trie.
fn patch_trie<D>(
    dp: &mut Datapath,
    name: &'static str,
    have: &mut HashMap<(u32, D), PrefixTarget>,
    gone: &HashMap<(u32, D), PrefixTarget>,
    come: &HashMap<(u32, D), PrefixTarget>,
) -> Result<(), KernelError>
where
    D: aya::Pod + Eq + std::hash::Hash,
{
    if gone.is_empty() && come.is_empty() {
        return Ok(());
    }
    let mut m: LpmTrie<&mut MapData, D, PrefixTarget> = map(dp, name)?;
    for k in gone.keys().filter(|k| !come.contains_key(k)) {
        if have.remove(k).is_some() {
            m.remove(&Key::new(k.0, k.1))
                .map_err(|e| map_err(name, e))?;
        }
    }
    for (&(len, data), v) in come {
        if have.get(&(len, data)) != Some(v) {
            m.insert(&Key::new(len, data), *v, 0)
                .map_err(|e| map_err(name, e))?;
            have.insert((len, data), *v);
        }
    }
    Ok(())
}

/// The plan the kernel holds for generation `g`, if it can be read.
fn kernel_plan(dp: &Datapath, g: u32) -> Option<LookupPlan> {
    let m = dp.ebpf.map(map_name::LOOKUP_PLAN)?;
    let plans: Array<&MapData, LookupPlan> = Array::try_from(m).ok()?;
    plans.get(&g, 0).ok()
}

/// Makes generation `g` the one packets use.
fn flip(dp: &mut Datapath, g: u32) -> Result<(), KernelError> {
    let mut active: Array<&mut MapData, u32> = map(dp, map_name::ACTIVE_GEN)?;
    active
        .set(0, g, 0)
        .map_err(|e| map_err(map_name::ACTIVE_GEN, e))
}

/// The generation a (possibly adopted) datapath has active.
pub fn active_generation(dp: &Datapath) -> Result<u32, KernelError> {
    let m = dp
        .ebpf
        .map(map_name::ACTIVE_GEN)
        .ok_or(KernelError::MissingMap(map_name::ACTIVE_GEN))?;
    let a: Array<&MapData, u32> = Array::try_from(m).map_err(|source| KernelError::Map {
        name: map_name::ACTIVE_GEN,
        source,
    })?;
    a.get(&0, 0).map_err(|e| map_err(map_name::ACTIVE_GEN, e))
}

/// Who was added, removed or changed between two tables.
pub fn diff(old: &Table, new: &Table) -> Change {
    change_of(old, new, &table_diff(old, new))
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

fn map_err(name: &'static str, source: aya::maps::MapError) -> KernelError {
    KernelError::Map { name, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        Table::parse(text.as_bytes(), "t.csv".as_ref()).unwrap()
    }

    #[test]
    fn diff_names_added_removed_and_changed_subscribers() {
        let a = table(
            "id,name,plan,prefixes\na,A,home,100.64.0.1\nb,B,home,100.64.0.2\nc,C,home,100.64.0.3\n",
        );
        let b = table(
            "id,name,plan,prefixes\na,A,home,100.64.0.1\nc,C,biz,100.64.0.3\nd,D,home,100.64.0.4\n",
        );
        let c = diff(&a, &b);
        assert_eq!(c.added, ["d"]);
        assert_eq!(c.removed, ["b"]);
        assert_eq!(c.changed, ["c"]);
    }

    #[test]
    fn slots_are_stable_and_reused_only_after_release() {
        let mut s = Slots::default();
        assert_eq!((s.assign("a"), s.assign("b"), s.assign("a")), (0, 1, 0));
        assert_eq!(s.release("a"), Some(0));
        assert_eq!(s.assign("c"), 0);
        let again = Slots::from_assignments([
            ("b".to_owned(), 1),
            ("c".to_owned(), 0),
            ("e".to_owned(), 4),
        ]);
        assert_eq!(again.high_water(), 5);
        let mut again = again;
        assert_eq!(again.assign("f"), 2);
        assert_eq!(again.assign("g"), 3);
        assert_eq!(again.assign("h"), 5);
    }
}
