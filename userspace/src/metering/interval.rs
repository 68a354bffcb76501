//! Turning the kernel's running counters into per-subscriber deltas, every interval, and
//! keeping them: each delta is added into the subscriber's row of the current hour, which with
//! the subscriber's stored base gives back the running total and the counter values it was
//! computed from (see `store::Base`), so one small write per active subscriber keeps all of it.

use std::collections::{BTreeMap, HashMap};

use quid_common::SubscriberCounters;

use crate::{
    clock::{self, Clock, ClockError},
    kernel::subscriber_maps::Slots,
    ledger::{chain::NewEntry, period::SettlementPeriod},
    settlement::matching,
    store::{Changes, IntervalRow, Record, Status, Store, StoreError, Usage},
    subscribers::table::{Subscriber, Table},
};

/// Store meta key: the `instance` of the kernel maps the `last` values were read from.
const INSTANCE: &str = "maps_instance";
/// Store meta key: end of the last committed interval (unix seconds).
const LAST_END: &str = "last_interval_end";
/// Store meta key: the month (YYYYMM) whose allowance every active subscriber has received.
const ALLOWANCE_MONTH: &str = "allowance_month";
/// Store meta key: start of the settlement period whose traffic is pending (unix seconds).
const PENDING_PERIOD: &str = "usage_pending_period";

/// Seconds in an hour: the bucket an interval's counts are added into.
const HOUR: i64 = 3_600;
/// A base older than this moves at the subscriber's next hour (its hour of the day is spread
/// by key, so about 1/24 of subscribers move at each hour's first commit).
const REBASE_AFTER: i64 = 24 * HOUR;

/// Subscribers whose keys share the top bits above these share their hour of the day: the
/// records a commit rewrites for moved bases lie together in the table (a key-modulo spread
/// would dirty every page of it each hour).
const PHASE_RUN_BITS: u32 = 10;

/// The start of the hour holding unix time `t`.
fn hour_of(t: u64) -> i64 {
    let t = crate::store::secs(t);
    t - t.rem_euclid(HOUR)
}

/// Whether `r`'s base should move to hour `h` now: the subscriber has rows since its base
/// (which the roll-up keeps until the base passes them) but none in `h` yet (a base can only
/// start an hour whose rows all come after it), and the base is a day old in the subscriber's
/// hour of the day, or two days old whatever the hour.
fn rebase_due(r: &Record, h: i64) -> bool {
    let age = h.saturating_sub(r.base.based);
    let phase = (h / HOUR)
        .wrapping_add(r.base.key >> PHASE_RUN_BITS)
        .rem_euclid(24)
        == 0;
    r.base.row_hour.is_some_and(|last| last < h)
        && (age >= 2 * REBASE_AFTER || (age >= REBASE_AFTER && phase))
}

/// The calendar month (UTC) of unix time `t`, as YYYYMM.
fn month_of(t: u64) -> Result<u64, ClockError> {
    let t = i64::try_from(t).map_err(|_| ClockError::OutOfRange(i64::MAX))?;
    clock::month_number(t).map(u64::from)
}

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
    #[error(transparent)]
    Clock(#[from] ClockError),
}

/// The books in memory, mirrored in the store.
pub struct Books {
    store: Store,
    records: BTreeMap<String, Record>,
    last_end: u64,
    /// Prices usage debits (all zero: no debits).
    pub tariff: crate::ledger::tariff::Tariff,
    /// How often usage debits enter the ledger.
    pub period: SettlementPeriod,
    /// Each subscriber's cumulative counters already debited (absent: none).
    settled: HashMap<String, SubscriberCounters>,
    /// Start of the settlement period whose traffic is pending (none before the first commit).
    pending_period: Option<u64>,
    /// The key the next new subscriber gets.
    next_key: i64,
    /// The usage rates last written to the store (for the CLI's pending debits).
    rates_written: Option<[u64; 4]>,
    clock: Clock,
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
        clock: Clock,
    ) -> Result<(Books, Option<(Table, Slots)>), BooksError> {
        let now = clock.now()?;
        let records: BTreeMap<String, Record> = store
            .records()?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let known = store.meta(INSTANCE)?;
        // Adopted maps counted while no daemon ran: the next interval covers that time. Fresh
        // maps start from zero now, so the books resume from now, not from the last interval.
        let last_end = match store.meta(LAST_END)? {
            Some(end) if adopted => end,
            _ => now,
        };
        let settled = store.settled_usage()?;
        let pending_period = store.meta(PENDING_PERIOD)?;
        let next_key = records
            .values()
            .map(|r| r.base.key)
            .max()
            .map_or(1, |k| k.saturating_add(1));
        let mut books = Books {
            store,
            records,
            last_end,
            tariff: Default::default(),
            period: SettlementPeriod::default(),
            settled,
            pending_period,
            next_key,
            rates_written: None,
            clock,
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
        // New maps: no slot holds anything yet, and the meter starts a new span.
        books.store.begin_meter_span(now)?;
        books.store.set_meta(LAST_END, now)?;
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
        let now = self.clock.now()?;
        self.install_at(table, slots, baselines, now)
    }

    /// [`Books::install`] at unix time `now` (when new subscribers start being metered).
    pub fn install_at(
        &mut self,
        table: &Table,
        slots: &Slots,
        baselines: &[(String, SubscriberCounters)],
        now: u64,
    ) -> Result<(), BooksError> {
        self.install_rows(table.subscribers.iter(), slots, baselines, now)
    }

    /// Records a change of the installed table: only the subscribers at `rows` (the added and
    /// changed ones, [`crate::kernel::subscriber_maps::Change::rows`]) are visited and written,
    /// so a change of a few lines costs the same in a table of a million. The books must hold
    /// the table before the change (a whole [`Books::install`] made them so).
    pub fn install_change(
        &mut self,
        table: &Table,
        rows: &[usize],
        slots: &Slots,
        baselines: &[(String, SubscriberCounters)],
    ) -> Result<(), BooksError> {
        let now = self.clock.now()?;
        let subscribers = rows.iter().filter_map(|&i| table.subscribers.get(i));
        self.install_rows(subscribers, slots, baselines, now)
    }

    /// Records `subscribers` of the installed table, at unix time `now`.
    fn install_rows<'t>(
        &mut self,
        subscribers: impl Iterator<Item = &'t Subscriber>,
        slots: &Slots,
        baselines: &[(String, SubscriberCounters)],
        now: u64,
    ) -> Result<(), BooksError> {
        let baselines: std::collections::HashMap<&str, &SubscriberCounters> =
            baselines.iter().map(|(id, c)| (id.as_str(), c)).collect();
        let mut touched = Vec::new();
        // Subscribers new to the books or on another plan: their plan is in force from now.
        let mut replanned = Vec::new();
        let mut entries = Vec::new();
        // Subscribers new to the books, or back after a removal: metered from now on.
        let mut started = Vec::new();
        // A subscriber who joins after this month's allowances went out gets theirs now.
        let granted = self.tariff.monthly_allowance > 0
            && self.store.meta(ALLOWANCE_MONTH)? == Some(month_of(now)?);
        for s in subscribers {
            let slot = slots.get(&s.id);
            if granted && !self.records.contains_key(&s.id) {
                entries.push(self.allowance(&s.id, now)?);
            }
            if self
                .records
                .get(&s.id)
                .is_none_or(|r| r.status == Status::Removed)
            {
                started.push(s.id.clone());
            }
            let based = hour_of(self.last_end);
            let next_key = &mut self.next_key;
            let r = self.records.entry(s.id.clone()).or_insert_with(|| {
                let key = *next_key;
                *next_key = key.saturating_add(1);
                // Its rows start with the next interval's hour.
                Record::fresh(&s.id, key, based)
            });
            r.name = s.name.clone();
            if r.plan != s.plan {
                replanned.push(s.id.clone());
            }
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
        let plans: Vec<(i64, &str)> = replanned
            .iter()
            .map(|id| (self.records[id].base.key, self.records[id].plan.as_str()))
            .collect();
        let entries = self.fitting(entries);
        self.store.commit_with(
            &refs,
            &[],
            &Changes {
                entries: &entries,
                started: &started,
                at: now,
                plans: &plans,
                ..Changes::default()
            },
        )?;
        Ok(())
    }

    /// Records new prefixes for the subscribers at `rows` of `table` (live bindings moved
    /// addresses; nothing else about them changed), committing only their records, with the
    /// live sessions that began or changed (`sessions`) and ended, in one transaction.
    pub fn reprefix(
        &mut self,
        table: &Table,
        rows: &[usize],
        (sessions, sessions_ended): (
            &[crate::store::StoredSession],
            &[crate::bindings::request::SessionKey],
        ),
    ) -> Result<(), BooksError> {
        let mut touched = Vec::new();
        for s in rows.iter().filter_map(|&i| table.subscribers.get(i)) {
            if let Some(r) = self.records.get_mut(&s.id) {
                r.prefixes = prefixes_text(s);
                touched.push(s.id.clone());
            }
        }
        let refs: Vec<&Record> = touched.iter().map(|id| &self.records[id]).collect();
        self.store.commit_with(
            &refs,
            &[],
            &Changes {
                at: self.clock.now()?,
                sessions,
                sessions_ended,
                ..Changes::default()
            },
        )?;
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
        let at = self.clock.now()?;
        self.retire_ids(gone, at)
    }

    /// Closes the books of the subscribers `ids`, removed from the table at unix time `at`
    /// (call after an interval read their final counts); returns those that were open, so
    /// their slots can be released.
    pub fn retire_ids(&mut self, ids: Vec<String>, at: u64) -> Result<Vec<String>, BooksError> {
        let gone: Vec<String> = ids
            .into_iter()
            .filter(|id| {
                self.records
                    .get(id)
                    .is_some_and(|r| r.status == Status::Active)
            })
            .collect();
        for id in &gone {
            if let Some(r) = self.records.get_mut(id) {
                r.status = Status::Removed;
                r.slot = None;
            }
        }
        let refs: Vec<&Record> = gone.iter().map(|id| &self.records[id]).collect();
        self.store.commit_with(
            &refs,
            &[],
            &Changes {
                stopped: &gone,
                at,
                ..Changes::default()
            },
        )?;
        Ok(gone)
    }

    /// Reads every slot in use (`counters(slot)`: summed over CPUs), adds what each counted
    /// since the last read (over `[last end, now)`) into its hourly row, and commits usage,
    /// moved bases, settlement debits and the interval's end in one transaction.
    pub fn interval(
        &mut self,
        counters: impl Fn(usize) -> SubscriberCounters,
        now: u64,
    ) -> Result<IntervalSummary, BooksError> {
        let start = self.last_end.min(now);
        let began = std::time::Instant::now();
        let mut summary = IntervalSummary::default();
        let mut changed = Vec::new();
        let mut entries = Vec::new();
        // What each changed record held before, to put back if the commit fails.
        let mut before = Vec::new();
        // The period this interval's traffic belongs to: the one holding its last second.
        let period = self.period.bounds(now.saturating_sub(1))?.0;
        // A boundary passed since the pending traffic was counted: settle it, in this commit,
        // before this interval's traffic is added (see `ledger::period`).
        let mut settled_now: HashMap<String, SubscriberCounters> = HashMap::new();
        if let Some(pending) = self.pending_period.filter(|&p| p < period) {
            // The pending period's end, or the current period's start if the configured
            // period changed to a longer one: the debit stays dated inside its own month.
            let end = self.period.bounds(pending)?.1.min(period);
            let at = crate::store::secs(end.saturating_sub(1));
            for r in self.records.values() {
                let settled = self.settled.get(&r.id).copied().unwrap_or_default();
                if settled == r.total {
                    continue;
                }
                // The cumulative rule: what is due for the total, minus what was debited.
                let debit = self.tariff.usage_debit(&settled, &r.total);
                if debit != 0 {
                    entries.push(NewEntry::usage_debit(&r.id, at, debit, pending, end));
                }
                settled_now.insert(r.id.clone(), r.total);
            }
        }
        // The hour this interval's counts go into: the one holding its start.
        let hour = hour_of(start);
        let mut rows = Vec::new();
        for r in self.records.values_mut() {
            let current = r.slot.map(|slot| counters(slot as usize));
            let delta = current.map(|c| c.wrapping_sub(&r.last)).unwrap_or_default();
            let active = delta != SubscriberCounters::default();
            let rebase = rebase_due(r, hour);
            if !active && !rebase {
                continue;
            }
            before.push((r.id.clone(), r.last, r.total, r.base));
            if rebase {
                // The stored counters become the current ones; rows from this hour on add up.
                r.base.based = hour;
                r.base.since = SubscriberCounters::default();
                r.base.row_hour = None;
                changed.push(r.id.clone());
            }
            if !active {
                continue;
            }
            r.last = current.unwrap_or(r.last);
            r.total.add(&delta);
            r.base.since.add(&delta);
            r.base.row_hour = Some(hour);
            summary.delta.add(&delta);
            summary.active += 1;
            rows.push(IntervalRow {
                key: r.base.key,
                usage: Usage {
                    start,
                    end: now,
                    counters: delta,
                },
            });
        }
        summary.read_seconds = began.elapsed().as_secs_f64();
        let began = std::time::Instant::now();
        let refs: Vec<&Record> = changed.iter().map(|id| &self.records[id]).collect();
        let mut settled: Vec<(&str, SubscriberCounters)> = settled_now
            .iter()
            .map(|(id, c)| (id.as_str(), *c))
            .collect();
        // In id order, as the ledger entries are: the table's pages are visited front to back.
        settled.sort_unstable_by_key(|(id, _)| *id);
        let mut meta = vec![(LAST_END, now)];
        let rates = crate::store::usage_rates(&self.tariff);
        if self.rates_written != Some(rates) {
            meta.extend(crate::store::RATE_KEYS.into_iter().zip(rates));
        }
        let pending_period = self.pending_period.map_or(period, |p| p.max(period));
        if self.pending_period != Some(pending_period) {
            meta.push((PENDING_PERIOD, pending_period));
        }
        let month = month_of(now)?;
        if self.tariff.monthly_allowance > 0 && self.store.meta(ALLOWANCE_MONTH)? != Some(month) {
            for r in self.records.values().filter(|r| r.status == Status::Active) {
                entries.push(self.allowance(&r.id, now)?);
            }
            meta.push((ALLOWANCE_MONTH, month));
        }
        let entries = self.fitting(entries);
        // Usage, debits, allowances, pending usage and the interval's end commit together or
        // not at all.
        let changes = Changes {
            entries: &entries,
            meta: &meta,
            metered_until: Some(now),
            settled: &settled,
            ..Changes::default()
        };
        if let Err(e) = self.store.commit_with(&refs, &rows, &changes) {
            // Disk full, store unwritable: the counts stay in the kernel, so forget this read
            // and the next interval covers the whole time since the last commit.
            drop(refs);
            for (id, last, total, base) in before {
                if let Some(r) = self.records.get_mut(&id) {
                    r.last = last;
                    r.total = total;
                    r.base = base;
                }
            }
            return Err(e.into());
        }
        drop(refs);
        drop(settled);
        self.rates_written = Some(rates);
        self.settled.extend(settled_now);
        self.pending_period = Some(pending_period);
        self.last_end = now;
        summary.write_seconds = began.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// The entries the ledger can take: one that would carry its subscriber's balance out of
    /// i64 is left out (and logged) so that it cannot stop everyone else's books.
    fn fitting(&self, entries: Vec<NewEntry>) -> Vec<NewEntry> {
        let refusals = match self.store.refusals(&entries) {
            Ok(r) => r,
            Err(e) => {
                // The commit checks again, and fails whole (keeping the counts) if it must.
                log::warn!("balances unread before the commit: {e}");
                return entries;
            }
        };
        entries
            .into_iter()
            .zip(refusals)
            .filter_map(|(e, refused)| match refused {
                None => Some(e),
                Some(err) => {
                    log::error!("{} {} not recorded: {err}", e.kind, e.reference);
                    None
                }
            })
            .collect()
    }

    /// The monthly allowance entry of subscriber `id` at unix time `now`.
    fn allowance(&self, id: &str, now: u64) -> Result<NewEntry, BooksError> {
        Ok(NewEntry::allowance(
            id,
            crate::store::secs(now),
            i64::try_from(self.tariff.monthly_allowance).unwrap_or(i64::MAX),
            month_of(now)?,
        ))
    }

    /// Settles the pending reports the books now cover (see `settlement::matching`), their
    /// storage credited as `storage` says.
    pub fn settle(
        &mut self,
        nodes: &crate::settlement::nodes::Nodes,
        rules: &crate::settlement::matching::SettlementConfig,
        storage: matching::StorageProof,
    ) -> Result<Vec<crate::settlement::matching::Settled>, BooksError> {
        let until = crate::store::secs(self.last_end);
        let tariff = &self.tariff;
        // The store reads and records in one transaction; the rules judge in between.
        Ok(self.store.settle_pending(
            until,
            |node| nodes.by_id.get(node).map(|n| n.subscriber.clone()),
            |report, subscriber, evidence| {
                // With audits on, a node never audited has proven no storage; without, the
                // declared capacity bounds it (admission).
                let evidence = matching::Evidence {
                    audits: (storage == matching::StorageProof::Audits)
                        .then(|| evidence.audits.unwrap_or_default()),
                    ..*evidence
                };
                matching::decide(report, subscriber, &evidence, tariff, rules, until)
            },
        )?)
    }

    /// Start of the settlement period whose usage is pending: every period before it is in
    /// the ledger (none before the first interval commit).
    pub fn pending_period(&self) -> Option<u64> {
        self.pending_period
    }

    /// Rolls usage up into the coarser tiers, one bounded batch (see `Store::roll_up`).
    pub fn roll_up(
        &mut self,
        keep: &crate::store::Retention,
    ) -> Result<crate::store::RollupProgress, BooksError> {
        let now = self.clock.now_i64()?;
        Ok(self.store.roll_up(now, keep)?)
    }

    /// Each subscriber's pending usage debit (negative; absent when zero): its running total
    /// less what was settled, at the current tariff (what the next settlement will debit).
    pub fn pending_debits(&self) -> HashMap<String, i64> {
        self.records
            .values()
            .filter_map(|r| {
                let settled = self.settled.get(&r.id).copied().unwrap_or_default();
                let debit = self.tariff.usage_debit(&settled, &r.total);
                (debit != 0).then(|| (r.id.clone(), debit))
            })
            .collect()
    }

    /// The store behind the books (for reading).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, for writes outside the books' own (the live bindings).
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ledger::statement::month,
        ledger::tariff::Tariff,
        settlement::matching::SettlementConfig,
        settlement::nodes::{Node, Nodes},
        settlement::report::{Period, Report, rfc3339},
    };
    use quid_common::{CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, pair_index};

    /// November 2026 through the real books: hourly intervals of traffic, a daily node report
    /// settled against the meter, the monthly allowance; the statement's closing balance is
    /// the figure computed by hand.
    #[test]
    fn a_simulated_month_closes_at_the_hand_computed_balance() {
        let (from, to) = month("2026-11").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (mut books, _) = Books::open(
            Store::open(dir.path()).unwrap(),
            1,
            false,
            Clock::manual(from),
        )
        .unwrap();
        books.tariff = Tariff {
            cpu_core_hour: 20_000,
            download_internet_gb: 10_000,
            upload_internet_gb: 5_000,
            monthly_allowance: 1_000_000,
            ..Tariff::default()
        };
        let table = Table::parse(
            b"id,name,plan,prefixes\nalice,A,home,100.64.0.1\n",
            "t.csv".as_ref(),
        )
        .unwrap();
        let slots = Slots::from_assignments([("alice".to_owned(), 0)]);
        let from_secs = u64::try_from(from).unwrap();
        books.install_at(&table, &slots, &[], from_secs).unwrap();
        books.store.nodes_seen(["pi"].into_iter(), from).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
        let nodes = Nodes::from_iter([Node {
            id: "pi".into(),
            subscriber: "alice".into(),
            key: key.verifying_key(),
            cpu_cores: 4,
            storage_bytes: 0,
            max_watts: 0,
        }]);
        // Every hour: 360 MB down and 90 MB up from the Internet, 50 MB down from the grid.
        let hourly = |k: u64| {
            let mut c = SubscriberCounters::default();
            c.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes = k * 360_000_000;
            c.pairs[pair_index(DIR_UPLOAD, CLASS_INTERNET)].bytes = k * 90_000_000;
            c.pairs[pair_index(DIR_DOWNLOAD, CLASS_GRID)].bytes = k * 50_000_000;
            c
        };
        let rules = SettlementConfig::default();
        // What the previous release debited, one interval at a time, for the same traffic.
        let mut per_interval = 0i64;
        for day in 0..30u64 {
            for hour in 1..=24u64 {
                let k = day * 24 + hour;
                per_interval += books.tariff.usage_debit(&hourly(k - 1), &hourly(k));
                books
                    .interval(|_| hourly(k), from_secs + 3600 * k - 1)
                    .unwrap();
                if k == 12 {
                    // Mid-day: nothing debited yet, half a day pending (12 x 3,600 + 12 x
                    // 450), and the balance after it is what the subscriber owes.
                    assert_eq!(books.store().balances().unwrap()["alice"], 1_000_000);
                    assert_eq!(books.store().pending_debit("alice").unwrap(), -48_600);
                }
            }
            // The node reports its day: 4 cores busy, the grid bytes it saw.
            let start = from + i64::try_from(day).unwrap() * 86_400;
            let mut r = Report {
                node: "pi".into(),
                seq: day + 1,
                period_start: rfc3339(start),
                period_end: rfc3339(start + 86_399),
                cpu_core_micros: 4 * 86_399 * 1_000_000,
                storage_byte_seconds: 0,
                energy_microjoules: 0,
                energy_source: None,
                grid_bytes_sent: 0,
                grid_bytes_received: 24 * 50_000_000,
                signature: String::new(),
            };
            r.sign(&key).unwrap();
            let p = Period {
                start,
                end: start + 86_399,
            };
            books
                .store
                .insert_report(&r, p, start + 86_400, "alice")
                .unwrap();
            let settled = books
                .settle(&nodes, &rules, matching::StorageProof::Declared)
                .unwrap();
            assert_eq!(settled.len(), 1);
            assert_eq!(
                settled[0].outcome,
                crate::settlement::outcome::Outcome::Matched,
                "{settled:?}"
            );
        }
        // The first interval of December (no traffic) settles November 30th, dated inside it.
        assert_eq!(books.store().pending_debit("alice").unwrap(), -97_200);
        books
            .interval(|_| hourly(720), u64::try_from(to).unwrap() + 9)
            .unwrap();
        assert_eq!(books.store().pending_debit("alice").unwrap(), 0);
        let debits: Vec<_> = books
            .store()
            .entries(Some("alice"))
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == crate::ledger::chain::EntryKind::UsageDebit)
            .collect();
        // Exactly one debit a day, each dated on its own day, adding up to the old total.
        let days: std::collections::BTreeSet<i64> =
            debits.iter().map(|e| (e.at - from) / 86_400).collect();
        assert_eq!(days, (0..30).collect());
        assert_eq!(debits.len(), 30);
        assert_eq!(debits.iter().map(|e| e.amount).sum::<i64>(), per_interval);
        assert_eq!(per_interval, -(2_592_000 + 324_000));
        let s = books.store().statement("alice", "2026-11").unwrap();
        // Allowance 1,000,000. Debits: 720 h x 0.36 GB = 259.2 GB x 10,000 = 2,592,000 and
        // 64.8 GB x 5,000 = 324,000. Credits: 30 reports of 4 x 86,399 core-seconds
        // (95.99 core-hours) x 20,000 = 1,919,977 each (floored), 57,599,310 in all.
        assert_eq!(s.debits, -(2_592_000 + 324_000));
        assert_eq!(s.credits, 1_000_000 + 57_599_310);
        assert_eq!(s.opening_balance, 0);
        assert_eq!(s.closing_balance, 55_683_310);
        assert_eq!(s.bytes.download_internet, 259_200_000_000);
        assert_eq!(s.contributions.reports_matched, 30);
        // December's allowance came with the commit that settled November 30th.
        assert_eq!(
            books.store().balances().unwrap()["alice"],
            55_683_310 + 1_000_000
        );
        assert!(to > from);
        // 30 daily debits (the previous release wrote 720), 2 allowances, 30 credits.
        assert_eq!(
            crate::ledger::chain::verify(&books.store().entries(None).unwrap()).unwrap(),
            30 + 2 + 30
        );
        // `QUID_WRITE_FIXTURE=DIR` keeps this month's store: the fixture a newer quid's
        // migration is tested against (userspace/tests/fixtures/).
        drop(books);
        if let Ok(out) = std::env::var("QUID_WRITE_FIXTURE") {
            std::fs::copy(
                dir.path().join(crate::store::FILE),
                std::path::Path::new(&out).join(crate::store::FILE),
            )
            .unwrap();
        }
    }

    fn down_gb(gb: u64) -> SubscriberCounters {
        let mut c = SubscriberCounters::default();
        c.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes = gb * 1_000_000_000;
        c
    }

    fn alice() -> (Table, Slots) {
        let table = Table::parse(
            b"id,name,plan,prefixes\nalice,A,home,100.64.0.1\n",
            "t.csv".as_ref(),
        )
        .unwrap();
        (table, Slots::from_assignments([("alice".to_owned(), 0)]))
    }

    fn usage_debits(books: &Books) -> Vec<(i64, i64)> {
        books
            .store()
            .entries(Some("alice"))
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == crate::ledger::chain::EntryKind::UsageDebit)
            .map(|e| (e.at, e.amount))
            .collect()
    }

    /// The daemon stops on day 0 with usage pending and starts on fresh maps on day 3: its
    /// first commit settles day 0 once (dated on day 0), and the traffic read after the gap
    /// is pending in day 3.
    #[test]
    fn a_restart_across_boundaries_settles_the_missed_period_once() {
        let (nov, _) = month("2026-11").unwrap();
        let day0 = u64::try_from(nov).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tariff = Tariff {
            download_internet_gb: 1_000_000,
            ..Tariff::default()
        };
        let (table, slots) = alice();
        {
            let clock = Clock::manual(nov);
            let (mut books, _) =
                Books::open(Store::open(dir.path()).unwrap(), 1, false, clock).unwrap();
            books.tariff = tariff.clone();
            books.install_at(&table, &slots, &[], day0).unwrap();
            books.interval(|_| down_gb(2), day0 + 36_000).unwrap();
            books.interval(|_| down_gb(5), day0 + 72_000).unwrap();
            assert!(usage_debits(&books).is_empty());
            assert_eq!(books.store().pending_debit("alice").unwrap(), -5_000_000);
        }
        let day3 = day0 + 3 * 86_400;
        let clock = Clock::manual(i64::try_from(day3 + 3_600).unwrap());
        let (mut books, _) =
            Books::open(Store::open(dir.path()).unwrap(), 2, false, clock).unwrap();
        books.tariff = tariff;
        books.install_at(&table, &slots, &[], day3 + 3_600).unwrap();
        // Pending survived the restart (it is in the store, not in memory).
        assert_eq!(books.store().pending_debit("alice").unwrap(), -5_000_000);
        books.interval(|_| down_gb(1), day3 + 7_200).unwrap();
        let day0_end = i64::try_from(day0 + 86_399).unwrap();
        assert_eq!(usage_debits(&books), [(day0_end, -5_000_000)]);
        assert_eq!(books.store().pending_debit("alice").unwrap(), -1_000_000);
        books.interval(|_| down_gb(1), day3 + 86_400 + 10).unwrap();
        let day3_end = i64::try_from(day3 + 86_399).unwrap();
        assert_eq!(
            usage_debits(&books),
            [(day0_end, -5_000_000), (day3_end, -1_000_000)]
        );
        assert_eq!(books.store().balances().unwrap()["alice"], -6_000_000);
        assert_eq!(books.store().pending_debit("alice").unwrap(), 0);
    }

    /// The store written by the previous release (a debit every interval) opens in place and
    /// goes on with daily debits: November, already debited, is not debited again.
    #[test]
    fn the_previous_releases_store_migrates_and_settles_daily_without_double_debits() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/store-2026-11")
                .join(crate::store::FILE),
            dir.path().join(crate::store::FILE),
        )
        .unwrap();
        let (dec, _) = month("2026-12").unwrap();
        let dec1 = u64::try_from(dec).unwrap();
        let clock = Clock::manual(dec + 60);
        let (mut books, _) =
            Books::open(Store::open(dir.path()).unwrap(), 7, false, clock).unwrap();
        books.tariff = Tariff {
            download_internet_gb: 10_000,
            upload_internet_gb: 5_000,
            ..Tariff::default()
        };
        let november = books.store().statement("alice", "2026-11").unwrap();
        assert_eq!(november.closing_balance, 55_683_310);
        assert_eq!(books.store().pending_debit("alice").unwrap(), 0);
        let (table, slots) = alice();
        books.install_at(&table, &slots, &[], dec1 + 60).unwrap();
        // December 1st: 100 GB down (1,000,000 µcr), pending until the day ends.
        books.interval(|_| down_gb(100), dec1 + 3_600).unwrap();
        assert_eq!(books.store().pending_debit("alice").unwrap(), -1_000_000);
        assert_eq!(books.store().balances().unwrap()["alice"], 55_683_310);
        books.interval(|_| down_gb(100), dec1 + 86_410).unwrap();
        assert_eq!(books.store().balances().unwrap()["alice"], 54_683_310);
        let entries = books.store().entries(None).unwrap();
        assert_eq!(crate::ledger::chain::verify(&entries).unwrap(), 751 + 1);
        let last = entries.last().unwrap();
        assert_eq!(
            (last.amount, last.reference.as_str()),
            (-1_000_000, &*format!("usage {}..{}", dec1, dec1 + 86_400))
        );
        // November's statement is unchanged; December's holds the one daily debit.
        assert_eq!(
            books.store().statement("alice", "2026-11").unwrap(),
            november
        );
        let december = books.store().statement("alice", "2026-12").unwrap();
        assert_eq!((december.debits, december.entries), (-1_000_000, 1));
        // Opening again migrates nothing twice.
        drop(books);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.balances().unwrap()["alice"], 54_683_310);
        assert_eq!(store.pending_debit("alice").unwrap(), 0);
    }

    /// A change recorded by its rows, with the removed subscriber closed after the next read,
    /// leaves the books as recording the new table whole does (in memory and in the store).
    #[test]
    fn a_change_recorded_by_its_rows_leaves_the_books_as_a_whole_install() {
        let parse = |text: &str| {
            Table::parse(
                format!("id,name,plan,prefixes\n{text}").as_bytes(),
                "t.csv".as_ref(),
            )
            .unwrap()
        };
        let open = |dir: &tempfile::TempDir| {
            Books::open(
                Store::open(dir.path()).unwrap(),
                1,
                false,
                Clock::manual(3_600),
            )
            .unwrap()
            .0
        };
        let before = parse("a,A,home,100.64.0.1\nb,B,home,100.64.0.2\nc,C,home,100.64.0.3\n");
        // b leaves, c changes plan and name, d joins.
        let after =
            parse("a,A,home,100.64.0.1\nc,Cee,pro,100.64.0.3 100.64.0.9\nd,D,home,100.64.0.4\n");
        let slots = Slots::from_assignments(
            ["a", "b", "c", "d"]
                .iter()
                .zip(0u32..)
                .map(|(id, i)| (id.to_string(), i)),
        );
        let by_rows = tempfile::tempdir().unwrap();
        let mut books = open(&by_rows);
        books.install(&before, &slots, &[]).unwrap();
        books.install_change(&after, &[1, 2], &slots, &[]).unwrap();
        books
            .interval(|_| SubscriberCounters::default(), 3_601)
            .unwrap();
        assert_eq!(books.retire_ids(vec!["b".into()], 3_600).unwrap(), ["b"]);
        // Closing twice closes nothing.
        assert!(
            books
                .retire_ids(vec!["b".into()], 3_600)
                .unwrap()
                .is_empty()
        );
        let whole = tempfile::tempdir().unwrap();
        let mut reference = open(&whole);
        reference.install(&before, &slots, &[]).unwrap();
        reference.install(&after, &slots, &[]).unwrap();
        reference
            .interval(|_| SubscriberCounters::default(), 3_601)
            .unwrap();
        reference.retire(&after).unwrap();
        let view = |b: &Books| {
            let mut v: Vec<_> = b
                .records()
                .map(|r| {
                    (
                        r.id.clone(),
                        r.name.clone(),
                        r.plan.clone(),
                        r.prefixes.clone(),
                        r.status,
                        r.slot,
                    )
                })
                .collect();
            v.sort_by(|x, y| x.0.cmp(&y.0));
            v
        };
        assert_eq!(view(&books), view(&reference));
        assert_eq!(view(&open(&by_rows)), view(&open(&whole)), "as stored");
    }

    #[test]
    fn a_failed_commit_loses_nothing_the_next_interval_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let (mut books, _) = Books::open(
            Store::open(dir.path()).unwrap(),
            1,
            false,
            Clock::manual(1000),
        )
        .unwrap();
        books.tariff = Tariff {
            download_internet_gb: 1_000_000,
            ..Tariff::default()
        };
        let table = Table::parse(
            b"id,name,plan,prefixes\nalice,A,home,100.64.0.1\n",
            "t.csv".as_ref(),
        )
        .unwrap();
        books
            .install(
                &table,
                &Slots::from_assignments([("alice".to_owned(), 0)]),
                &[],
            )
            .unwrap();
        let down = |gb: u64| {
            let mut c = SubscriberCounters::default();
            c.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes = gb * 1_000_000_000;
            c
        };
        books.interval(|_| down(1), 1010).unwrap();
        // The store refuses writes (as on a full disk) for two intervals.
        let ro = |books: &Books, on: bool| {
            books
                .store
                .execute_unchecked_for_tests(&format!("PRAGMA query_only = {}", i32::from(on)))
                .unwrap()
        };
        ro(&books, true);
        assert!(books.interval(|_| down(3), 1020).is_err());
        assert!(books.interval(|_| down(4), 1030).is_err());
        ro(&books, false);
        books.interval(|_| down(6), 1040).unwrap();
        let usage = books.store().usage("alice", 0, 2000).unwrap();
        let spans: Vec<(u64, u64)> = usage.iter().map(|u| (u.start, u.end)).collect();
        assert_eq!(spans, [(0, 3_600)], "one hourly row");
        let bytes: u64 = usage
            .iter()
            .map(|u| u.counters.pairs[pair_index(DIR_DOWNLOAD, CLASS_INTERNET)].bytes)
            .sum();
        assert_eq!(
            bytes, 6_000_000_000,
            "every byte the kernel counted is in the books"
        );
        // Every byte is priced too: pending until the day settles.
        assert_eq!(books.store().pending_debit("alice").unwrap(), -6_000_000);
    }
}
