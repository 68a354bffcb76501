//! One interval's commit: changed subscriber records, the counts added into the current hour's
//! rows, the ledger entries that price them, meta values and metering changes, in one
//! transaction: all of it is on disk, or none.

use rusqlite::params;

use super::{
    IntervalRow, Record, Store, StoreError, Usage, ledger, plan_history, secs, set_meta_on,
    subscribers, tier_counts,
    tiers::{self, Tier},
    usage,
};
use crate::ledger::chain::NewEntry;

/// What a commit changes besides records and usage (see [`Store::commit_with`]).
#[derive(Debug, Default)]
pub struct Changes<'a> {
    /// Ledger entries to append.
    pub entries: &'a [NewEntry],
    /// Meta values to set.
    pub meta: &'a [(&'a str, u64)],
    /// The end the current meter span now reaches (the interval's end).
    pub metered_until: Option<u64>,
    /// Subscribers that entered the installed table at `at` (metered from then on).
    pub started: &'a [String],
    /// Subscribers that left the installed table at `at`.
    pub stopped: &'a [String],
    /// When `started` and `stopped` happened.
    pub at: u64,
    /// Subscribers whose settled usage changed: (id, cumulative counters now debited).
    pub settled: &'a [(&'a str, quid_common::SubscriberCounters)],
    /// Plans of the installed table, (subscriber key, plan), in force from `at`: recorded in
    /// the plan history where they differ from the last recorded plan.
    pub plans: &'a [(i64, &'a str)],
    /// Live bindings that began or changed, and those that ended (`store/bindings.rs`).
    pub sessions: &'a [super::StoredSession],
    pub sessions_ended: &'a [crate::bindings::request::SessionKey],
}

impl Store {
    /// Writes changed records and usage of subscribers known by id (each in `records` or the
    /// store already) in one transaction: for tools and tests; the daemon's books use
    /// [`Store::commit_with`].
    pub fn commit(
        &mut self,
        records: &[&Record],
        usage: &[(&str, Usage)],
    ) -> Result<(), StoreError> {
        let mut rows = Vec::new();
        for (id, u) in usage {
            let key = match records.iter().find(|r| r.id == *id) {
                Some(r) => r.base.key,
                None => self.key_of(id)?.ok_or_else(|| StoreError::Sql {
                    path: self.path.clone(),
                    source: rusqlite::Error::ToSqlConversionFailure(
                        format!("usage of {id}, a subscriber the store does not know").into(),
                    ),
                })?,
            };
            rows.push(IntervalRow { key, usage: *u });
        }
        self.commit_with(records, &rows, &Changes::default())
    }

    /// Like [`Store::commit`], with interval rows keyed by number, and the ledger entries,
    /// meta values and metering changes of `changes` in the same transaction.
    pub fn commit_with(
        &mut self,
        records: &[&Record],
        usage: &[IntervalRow],
        changes: &Changes<'_>,
    ) -> Result<(), StoreError> {
        let Changes {
            entries,
            meta,
            metered_until,
            started,
            stopped,
            at,
            settled,
            plans,
            sessions,
            sessions_ended,
        } = *changes;
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        subscribers::put(&tx, records).map_err(sql)?;
        plan_history::put(&tx, plans, secs(at)).map_err(sql)?;
        // The hour the newest counts went into (or the interval's, when none did): the hours
        // before it are closed, and a few of their blocks are folded into hourly rows.
        let open = usage
            .iter()
            .map(|r| secs(r.usage.start))
            .chain(metered_until.map(|u| secs(u).saturating_sub(1)))
            .max()
            .map(|t| tiers::bucket(t, tiers::HOUR));
        let (hours, journal) = usage::add(&tx, usage, open).map_err(sql)?;
        if self.outbox {
            let end = usage.iter().map(|r| secs(r.usage.end)).max();
            if let Some(until) = metered_until.map(secs).or(end) {
                super::outbox::seal(&tx, usage, until).map_err(sql)?;
            }
        }
        tier_counts::add(&tx, Tier::Hourly, hours).map_err(sql)?;
        tier_counts::add(&tx, Tier::Interval, journal).map_err(sql)?;
        ledger::append_on(&tx, entries).map_err(|e| e.into_store(&path))?;
        super::pending::put(&tx, settled).map_err(sql)?;
        super::bindings::put(&tx, sessions, sessions_ended).map_err(sql)?;
        for (key, value) in meta {
            set_meta_on(&tx, key, *value).map_err(sql)?;
        }
        if let Some(until) = metered_until {
            // The current span is the latest one; it only ever grows forward.
            tx.execute(
                "UPDATE meter_spans SET end = max(end, ?1)
                 WHERE start = (SELECT max(start) FROM meter_spans)",
                [secs(until)],
            )
            .map_err(sql)?;
        }
        for id in started {
            tx.execute(
                "INSERT INTO metering (subscriber, start, end) VALUES (?1, ?2, NULL)
                 ON CONFLICT(subscriber, start) DO UPDATE SET end = NULL",
                params![id, secs(at)],
            )
            .map_err(sql)?;
        }
        for id in stopped {
            tx.execute(
                "UPDATE metering SET end = ?2 WHERE subscriber = ?1 AND end IS NULL",
                params![id, secs(at)],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }
}

#[cfg(test)]
mod tests {
    use quid_common::{Counter, SubscriberCounters};

    use super::*;
    use crate::store::Status;

    fn counters(seed: u64) -> SubscriberCounters {
        let mut c = SubscriberCounters::default();
        for (i, p) in c.pairs.iter_mut().enumerate() {
            let i = u64::try_from(i).unwrap();
            *p = Counter {
                packets: seed * 10 + 2 * i,
                bytes: seed * 10 + 2 * i + 1,
            };
        }
        c
    }

    #[test]
    fn records_and_usage_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Record {
            id: "alice".into(),
            name: "Alice".into(),
            plan: "home".into(),
            prefixes: "100.64.0.1/32".into(),
            slot: Some(3),
            status: Status::Active,
            last: counters(1),
            total: counters(2),
            base: crate::store::Base {
                key: 7,
                based: 3_600,
                ..Default::default()
            },
        };
        {
            let mut s = Store::open(dir.path()).unwrap();
            s.set_meta("instance", 42).unwrap();
            let u = Usage {
                start: 100,
                end: 110,
                counters: counters(3),
            };
            s.commit(&[&rec], &[("alice", u)]).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.meta("instance").unwrap(), Some(42));
        assert_eq!(s.records().unwrap(), [rec]);
        // The interval's counts are alice's row of hour 0 (before her base hour, so they are
        // not added to her stored counters).
        let u = s.usage("alice", 0, 3_600).unwrap();
        assert_eq!((u.len(), u[0].start, u[0].end), (1, 0, 3_600));
        assert_eq!(u[0].counters, counters(3));
        assert!(s.usage("alice", 1, 7_200).unwrap().is_empty());
    }
}
