//! Every subscriber's usage rows over a range, streamed for planners (`quid export usage`, the
//! what-if re-pricing): the time-keyed tier tables are read in their key order, so memory
//! stays constant however many rows there are (only the key → id map grows with subscribers).

use std::collections::{BTreeMap, HashMap};

use quid_common::SubscriberCounters;
use rusqlite::{Connection, TransactionBehavior, params};

use super::{Store, StoreError, hour_blocks, tiers, usage::counters_at};

/// One exported row: a subscriber's counts over `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportRow<'a> {
    /// The subscriber's id (a row whose key no subscriber holds, which quid never writes, is
    /// named `#<key>` rather than dropped).
    pub subscriber: &'a str,
    pub start: i64,
    pub end: i64,
    pub counters: SubscriberCounters,
}

/// The resolution of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The hourly rows (hours already rolled up into days are not there any more).
    Hour,
    /// Whole UTC days: the daily rows, and the hourly rows of each day summed per subscriber.
    Day,
}

/// What a stream reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Read {
    /// One tier's rows as they are.
    Rows(tiers::Tier),
    /// Whole days, each subscriber's daily row and hourly rows of the day folded into one.
    Days,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sink refused a row (a full disk, a closed pipe).
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
}

impl Store {
    /// Streams every subscriber's rows at `resolution` whose start lies in `[from, to)` to
    /// `each`, ordered by start then subscriber key, all read in one read transaction (one
    /// moment of the books while the daemon writes); returns how many rows were given.
    pub fn export_usage(
        &self,
        resolution: Resolution,
        from: i64,
        to: i64,
        mut each: impl FnMut(&ExportRow<'_>) -> std::io::Result<()>,
    ) -> Result<u64, ExportError> {
        self.stream(resolution, from, to, &mut |r| {
            each(r).map_err(ExportError::Write)
        })
    }

    /// Each subscriber's usage summed over the rows of both tiers starting in `[from, to)`
    /// (exact when the edges are whole days, as a month's are), by subscriber id.
    pub fn usage_by_subscriber(
        &self,
        from: i64,
        to: i64,
    ) -> Result<HashMap<String, SubscriberCounters>, StoreError> {
        let tx = self.begin(TransactionBehavior::Deferred)?;
        let sums = self.usage_by_subscriber_on(&tx, from, to)?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(sums)
    }

    /// [`Store::usage_by_subscriber`] inside a transaction the caller holds.
    pub(super) fn usage_by_subscriber_on(
        &self,
        tx: &Connection,
        from: i64,
        to: i64,
    ) -> Result<HashMap<String, SubscriberCounters>, StoreError> {
        let mut sums: HashMap<String, SubscriberCounters> = HashMap::new();
        // Sums need no order: each tier is read in its key order, without the sort that
        // folding days per subscriber takes.
        for tier in [tiers::Tier::Hourly, tiers::Tier::Daily] {
            self.stream_on(tx, Read::Rows(tier), from, to, &mut |r: &ExportRow<'_>| {
                match sums.get_mut(r.subscriber) {
                    Some(sum) => sum.add(&r.counters),
                    None => {
                        sums.insert(r.subscriber.to_owned(), r.counters);
                    }
                }
                Ok::<_, StoreError>(())
            })?;
        }
        Ok(sums)
    }

    /// [`Store::export_usage`] with the sink's own error.
    fn stream<E: From<StoreError>>(
        &self,
        resolution: Resolution,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(&ExportRow<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let tx = self.begin(TransactionBehavior::Deferred)?;
        let what = match resolution {
            Resolution::Hour => Read::Rows(tiers::Tier::Hourly),
            Resolution::Day => Read::Days,
        };
        let n = self.stream_on(&tx, what, from, to, each)?;
        tx.commit().map_err(|e| E::from(self.sql(e)))?;
        Ok(n)
    }

    /// [`Store::stream`] inside a transaction the caller holds.
    pub(super) fn stream_on<E: From<StoreError>>(
        &self,
        tx: &Connection,
        what: Read,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(&ExportRow<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let sql = |e| E::from(self.sql(e));
        let ids = IdsByKey::of(ids_by_key(tx).map_err(sql)?);
        let mut unknown = String::new();
        let mut n = 0u64;
        let mut give = |key: i64, start: i64, end: i64, counters| -> Result<(), E> {
            let subscriber = match ids.get(key) {
                Some(id) => id.as_str(),
                None => {
                    unknown = format!("#{key}");
                    unknown.as_str()
                }
            };
            n += 1;
            each(&ExportRow {
                subscriber,
                start,
                end,
                counters,
            })
        };
        match what {
            Read::Rows(tier) => {
                let width = tier.width().unwrap_or(tiers::HOUR);
                let mut stmt = tx
                    .prepare(&format!(
                        "SELECT start, key, {} FROM {} WHERE start >= ?1 AND start < ?2
                         ORDER BY start, key",
                        tiers::COUNTERS.join(", "),
                        tier.table()
                    ))
                    .map_err(sql)?;
                // The hours not folded yet (a few at most), merged in (start, key) order and
                // added into the row of the same hour and subscriber.
                let open = if tier == tiers::Tier::Hourly {
                    hour_blocks::all(tx, from, to).map_err(sql)?
                } else {
                    Vec::new()
                };
                let mut open = open.into_iter().peekable();
                let mut rows = stmt.query(params![from, to]).map_err(sql)?;
                while let Some(r) = rows.next().map_err(sql)? {
                    let (start, key): (i64, i64) = (r.get(0).map_err(sql)?, r.get(1).map_err(sql)?);
                    let mut c = counters_at(r, 2).map_err(sql)?;
                    while let Some((s, k, o)) = open.next_if(|(s, k, _)| (*s, *k) <= (start, key)) {
                        if (s, k) == (start, key) {
                            c.add(&o);
                        } else {
                            give(k, s, s.saturating_add(width), o)?;
                        }
                    }
                    give(key, start, start.saturating_add(width), c)?;
                }
                for (s, k, o) in open {
                    give(k, s, s.saturating_add(width), o)?;
                }
            }
            Read::Days => {
                let cols = tiers::COUNTERS.join(", ");
                // A roll-up in progress leaves a day in both tiers: its daily rows and its
                // hourly rows are read together in key order and folded as they come, so only
                // one subscriber's sum is held at a time.
                let mut stmt = tx
                    .prepare(&format!(
                        "SELECT key, {cols} FROM usage_day WHERE start = ?1
                         UNION ALL
                         SELECT key, {cols} FROM usage_hour WHERE start >= ?1 AND start < ?2
                         ORDER BY 1",
                    ))
                    .map_err(sql)?;
                for day in days_held(tx, from, to).map_err(sql)? {
                    let end = day.saturating_add(tiers::DAY);
                    // The day's hours not folded yet, summed per subscriber in key order.
                    let mut open: BTreeMap<i64, SubscriberCounters> = BTreeMap::new();
                    for (_, k, c) in hour_blocks::all(tx, day, end).map_err(sql)? {
                        open.entry(k).or_default().add(&c);
                    }
                    let mut open = open.into_iter().peekable();
                    let mut rows = stmt.query(params![day, end]).map_err(sql)?;
                    let mut current: Option<(i64, SubscriberCounters)> = None;
                    let mut fold = |key: i64, c: SubscriberCounters| -> Result<(), E> {
                        match &mut current {
                            Some((k, sum)) if *k == key => sum.add(&c),
                            _ => {
                                if let Some((k, sum)) = current.replace((key, c)) {
                                    give(k, day, end, sum)?;
                                }
                            }
                        }
                        Ok(())
                    };
                    while let Some(r) = rows.next().map_err(sql)? {
                        let key: i64 = r.get(0).map_err(sql)?;
                        let c = counters_at(r, 1).map_err(sql)?;
                        while let Some((k, o)) = open.next_if(|(k, _)| *k <= key) {
                            fold(k, o)?;
                        }
                        fold(key, c)?;
                    }
                    for (k, o) in open {
                        fold(k, o)?;
                    }
                    if let Some((k, sum)) = current {
                        give(k, day, end, sum)?;
                    }
                }
            }
        }
        Ok(n)
    }
}

/// Subscriber ids by key for a lookup per row: a table indexed by key when the keys are dense
/// (the store hands them out in order), a map otherwise.
enum IdsByKey {
    Dense(Vec<Option<String>>),
    Sparse(HashMap<i64, String>),
}

impl IdsByKey {
    fn of(ids: HashMap<i64, String>) -> IdsByKey {
        let max = ids.keys().copied().max().unwrap_or(0);
        let dense = ids.keys().all(|&k| k >= 0)
            && usize::try_from(max).is_ok_and(|m| m <= 4 * ids.len() + 1_024);
        if !dense {
            return IdsByKey::Sparse(ids);
        }
        let mut table = vec![None; usize::try_from(max).unwrap_or(0) + 1];
        for (k, id) in ids {
            if let Some(slot) = usize::try_from(k).ok().and_then(|k| table.get_mut(k)) {
                *slot = Some(id);
            }
        }
        IdsByKey::Dense(table)
    }

    fn get(&self, key: i64) -> Option<&String> {
        match self {
            IdsByKey::Dense(t) => usize::try_from(key)
                .ok()
                .and_then(|k| t.get(k))
                .and_then(Option::as_ref),
            IdsByKey::Sparse(m) => m.get(&key),
        }
    }
}

/// Subscriber ids by usage key, from one pass over `subscribers`.
pub(super) fn ids_by_key(c: &Connection) -> rusqlite::Result<HashMap<i64, String>> {
    let mut stmt = c.prepare("SELECT key, id FROM subscribers WHERE key IS NOT NULL")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The starts of the UTC days in `[from, to)` (starts at or after `from`) that either tier
/// holds rows of: an empty stretch of years costs two lookups, not one query per day.
fn days_held(c: &Connection, from: i64, to: i64) -> rusqlite::Result<Vec<i64>> {
    let mut lo = None;
    let mut hi = None;
    for table in ["usage_hour", "usage_day", hour_blocks::TABLE] {
        if let Some((a, b)) = tiers::start_span(c, table)? {
            lo = Some(lo.map_or(a, |x: i64| x.min(a)));
            hi = Some(hi.map_or(b, |x: i64| x.max(b)));
        }
    }
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(Vec::new());
    };
    let first = tiers::bucket(from.saturating_add(tiers::DAY - 1), tiers::DAY)
        .max(tiers::bucket(lo, tiers::DAY));
    let last = to.min(hi.saturating_add(1));
    let mut days = Vec::new();
    let mut d = first;
    while d < last {
        days.push(d);
        d = d.saturating_add(tiers::DAY);
    }
    Ok(days)
}

impl Store {
    /// The start of the oldest hourly row (`None`: none held); older hours are in days.
    pub fn oldest_hour(&self) -> Result<Option<i64>, StoreError> {
        self.oldest(tiers::Tier::Hourly)
    }
}
