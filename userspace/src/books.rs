//! Turning the kernel's running counters into per-subscriber deltas, every interval, and
//! keeping them: each subscriber's running total and one usage record per interval, committed
//! together with the counter values they were computed from.

use std::collections::BTreeMap;

use quid_common::SubscriberCounters;

use crate::{
    counters::CounterView,
    registry::Slots,
    store::{Record, Status, Store, StoreError, Usage},
    table::{Subscriber, Table},
};

/// Store meta key: the `instance` of the kernel maps the `last` values were read from.
const INSTANCE: &str = "maps_instance";
/// Store meta key: end of the last committed interval (unix seconds).
const LAST_END: &str = "last_interval_end";

/// Errors of the books.
#[derive(Debug, thiserror::Error)]
pub enum BooksError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the pinned kernel maps (instance {maps:#x}) were not created with this store \
         (instance {store}); their slots cannot be matched to subscribers. Point \
         daemon.state_dir at the store that created them, or run `quid detach` first (the \
         kernel counters restart from zero)"
    )]
    ForeignMaps { maps: u64, store: String },
}

/// The books in memory, mirrored in the store.
pub struct Books {
    store: Store,
    records: BTreeMap<String, Record>,
    last_end: u64,
    /// Prices usage debits (all zero: no debits).
    pub tariff: crate::tariff::Tariff,
}

/// What one interval added up to.
#[derive(Debug, Default, Clone, Copy)]
pub struct IntervalSummary {
    pub active: usize,
    pub delta: SubscriberCounters,
    /// Time spent reading the counters and computing deltas.
    pub read_seconds: f64,
    /// Time spent committing to the store.
    pub write_seconds: f64,
}

impl Books {
    /// Opens the books for kernel maps with `instance`. When the maps were `adopted`, returns
    /// the table and slots they hold (the previous daemon's); otherwise the counters are new,
    /// so every baseline restarts from zero.
    pub fn open(
        store: Store,
        instance: u64,
        adopted: bool,
        now: u64,
    ) -> Result<(Books, Option<(Table, Slots)>), BooksError> {
        let records: BTreeMap<String, Record> = store
            .records()?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let known = store.meta(INSTANCE)?;
        let last_end = store.meta(LAST_END)?.unwrap_or(now);
        let mut books = Books {
            store,
            records,
            last_end,
            tariff: Default::default(),
        };
        if adopted {
            if known != Some(instance) {
                return Err(BooksError::ForeignMaps {
                    maps: instance,
                    store: known.map_or("none".into(), |k| format!("{k:#x}")),
                });
            }
            let mut table = Table::default();
            let mut slots = Vec::new();
            for r in books.records.values() {
                if let Some(slot) = r.slot {
                    slots.push((r.id.clone(), slot));
                }
                if r.status == Status::Active {
                    table.subscribers.push(subscriber_of(r));
                }
            }
            return Ok((books, Some((table, Slots::from_assignments(slots)))));
        }
        // New maps: no slot holds anything yet.
        let changed: Vec<String> = books.records.keys().cloned().collect();
        for r in books.records.values_mut() {
            r.slot = None;
            r.last = SubscriberCounters::default();
        }
        books.store.set_meta(INSTANCE, instance)?;
        let refs: Vec<&Record> = changed.iter().map(|id| &books.records[id]).collect();
        books.store.commit(&refs, &[])?;
        Ok((books, None))
    }

    /// Records a new installed table: subscribers get their (possibly new) slot; one whose
    /// slot is new starts from `baselines`, the slot's counters before its prefixes went live.
    pub fn install(
        &mut self,
        table: &Table,
        slots: &Slots,
        baselines: &[(String, SubscriberCounters)],
    ) -> Result<(), BooksError> {
        let baselines: std::collections::HashMap<&str, &SubscriberCounters> =
            baselines.iter().map(|(id, c)| (id.as_str(), c)).collect();
        let mut touched = Vec::new();
        for s in &table.subscribers {
            let slot = slots.get(&s.id);
            let r = self.records.entry(s.id.clone()).or_insert_with(|| Record {
                id: s.id.clone(),
                name: String::new(),
                plan: String::new(),
                prefixes: String::new(),
                slot: None,
                status: Status::Active,
                last: SubscriberCounters::default(),
                total: SubscriberCounters::default(),
            });
            r.name = s.name.clone();
            r.plan = s.plan.clone();
            r.prefixes = prefixes_text(s);
            r.status = Status::Active;
            if r.slot != slot {
                r.slot = slot;
                r.last = baselines
                    .get(s.id.as_str())
                    .map(|c| **c)
                    .unwrap_or_default();
            }
            touched.push(s.id.clone());
        }
        let refs: Vec<&Record> = touched.iter().map(|id| &self.records[id]).collect();
        self.store.commit(&refs, &[])?;
        Ok(())
    }

    /// Closes the books of subscribers no longer in `table` (call after an interval read
    /// their final counts); returns their ids so their slots can be released.
    pub fn retire(&mut self, table: &Table) -> Result<Vec<String>, BooksError> {
        let live: std::collections::HashSet<&str> =
            table.subscribers.iter().map(|s| s.id.as_str()).collect();
        let gone: Vec<String> = self
            .records
            .values()
            .filter(|r| r.status == Status::Active && !live.contains(r.id.as_str()))
            .map(|r| r.id.clone())
            .collect();
        for id in &gone {
            if let Some(r) = self.records.get_mut(id) {
                r.status = Status::Removed;
                r.slot = None;
            }
        }
        let refs: Vec<&Record> = gone.iter().map(|id| &self.records[id]).collect();
        self.store.commit(&refs, &[])?;
        Ok(gone)
    }

    /// Reads every slot in use, turns what it counted since the last read into a usage record
    /// for `[last end, now)`, and commits records and usage in one transaction.
    pub fn interval(
        &mut self,
        counters: &CounterView,
        now: u64,
    ) -> Result<IntervalSummary, BooksError> {
        let start = self.last_end.min(now);
        let began = std::time::Instant::now();
        let mut summary = IntervalSummary::default();
        let mut changed = Vec::new();
        let mut usage = Vec::new();
        let mut entries = Vec::new();
        for r in self.records.values_mut() {
            let Some(slot) = r.slot else { continue };
            let current = counters.slot(slot as usize);
            let delta = sub(&current, &r.last);
            if delta == SubscriberCounters::default() {
                continue;
            }
            r.last = current;
            let before = r.total;
            add(&mut r.total, &delta);
            let debit = self.tariff.usage_debit(&before, &r.total);
            if debit != 0 {
                entries.push(crate::ledger::NewEntry {
                    at: now as i64,
                    subscriber: r.id.clone(),
                    kind: "usage_debit",
                    amount: debit,
                    reference: format!("usage {start}..{now}"),
                });
            }
            add(&mut summary.delta, &delta);
            summary.active += 1;
            changed.push(r.id.clone());
            usage.push(Usage {
                start,
                end: now,
                counters: delta,
            });
        }
        summary.read_seconds = began.elapsed().as_secs_f64();
        let began = std::time::Instant::now();
        let refs: Vec<&Record> = changed.iter().map(|id| &self.records[id]).collect();
        let rows: Vec<(&str, Usage)> = changed.iter().map(String::as_str).zip(usage).collect();
        self.store.commit_with(&refs, &rows, &entries)?;
        self.store.set_meta(LAST_END, now)?;
        self.last_end = now;
        summary.write_seconds = began.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// Settles the pending reports the books now cover (see `settle`).
    pub fn settle(
        &mut self,
        nodes: &crate::nodes::Nodes,
        rules: &crate::settle::SettlementConfig,
    ) -> Result<Vec<crate::settle::Settled>, BooksError> {
        let until = self.last_end as i64;
        Ok(self
            .store
            .settle(nodes, &self.tariff, rules, until, until)?)
    }

    /// The store behind the books (for reading).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every subscriber the books know, active and removed.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }
}

fn prefixes_text(s: &Subscriber) -> String {
    s.prefixes
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn subscriber_of(r: &Record) -> Subscriber {
    Subscriber {
        id: r.id.clone(),
        name: r.name.clone(),
        plan: r.plan.clone(),
        prefixes: r
            .prefixes
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
    }
}

fn sub(a: &SubscriberCounters, b: &SubscriberCounters) -> SubscriberCounters {
    let mut out = SubscriberCounters::default();
    for i in 0..out.pairs.len() {
        out.pairs[i].packets = a.pairs[i].packets.wrapping_sub(b.pairs[i].packets);
        out.pairs[i].bytes = a.pairs[i].bytes.wrapping_sub(b.pairs[i].bytes);
    }
    out
}

fn add(total: &mut SubscriberCounters, d: &SubscriberCounters) {
    for (t, x) in total.pairs.iter_mut().zip(d.pairs.iter()) {
        t.add(x);
    }
}
