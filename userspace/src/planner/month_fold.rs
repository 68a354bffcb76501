//! Folds each closed day of hourly rows into the month digests (`store::month_digests`), a
//! batch of subscriber keys per transaction, off the metering path (the daemon gives it a time
//! budget each interval). Each hour's bytes go to the plan in force when it began, as the
//! report attributes them.

use std::{collections::HashMap, time::Duration};

use super::{
    plan_attribution::{PlanAt, in_force},
    report_figures::{Bytes, HOUR},
};
use crate::store::{
    DigestCursor, DigestWrites, Figures, MonthDigest, PeriodReader, PlanHour, PlanSpan, Store,
    StoreError, UNKNOWN_PLAN,
};

/// Largest hourly values kept per direction: the nearest-rank 95th percentile of the longest
/// month (744 hours) is its 38th largest value.
pub const TOP: usize = 38;

/// Subscriber keys folded per transaction (about 200,000 hourly rows of a day).
const BATCH_KEYS: i64 = 8_192;

const DAY: i64 = 86_400;

/// What a call folded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FoldProgress {
    /// Transactions committed.
    pub batches: usize,
    /// Subscribers whose digests changed.
    pub subscribers: usize,
    /// Days completed.
    pub days: usize,
    /// Nothing closed is left to fold.
    pub caught_up: bool,
}

/// Folds batches until every closed day is folded or `budget` is spent (at least one batch).
pub fn fold(store: &Store, budget: Duration) -> Result<FoldProgress, StoreError> {
    let started = std::time::Instant::now();
    let mut progress = FoldProgress::default();
    loop {
        match fold_batch(store)? {
            Step::CaughtUp => {
                progress.caught_up = true;
                return Ok(progress);
            }
            Step::Folded {
                subscribers,
                day_done,
            } => {
                progress.batches += 1;
                progress.subscribers += subscribers;
                progress.days += usize::from(day_done);
            }
            Step::Raced => {}
        }
        if started.elapsed() >= budget {
            return Ok(progress);
        }
    }
}

/// Digests dropped per call (the daily tier's retention applies to them).
const DROP_PER_CALL: i64 = 16_384;

/// Drops up to a batch of the digests of months that ended more than `keep_secs` before
/// `now` (the daily rows' retention); the number dropped.
pub fn drop_expired(store: &Store, now: i64, keep_secs: i64) -> Result<usize, StoreError> {
    let month = crate::clock::month_of(now.saturating_sub(keep_secs))?.0;
    store
        .digest_folder()?
        .drop_digests_before(month, DROP_PER_CALL)
}

/// What one batch did.
enum Step {
    CaughtUp,
    Folded {
        subscribers: usize,
        day_done: bool,
    },
    /// Another fold moved the cursor first; nothing was written.
    Raced,
}

/// Folds the next batch of keys of the day being folded, in one transaction.
fn fold_batch(store: &Store) -> Result<Step, StoreError> {
    let r = store.digest_folder()?;
    let Some(end) = r.last_interval_end()? else {
        return Ok(Step::CaughtUp);
    };
    // Hours before this one are closed: no interval commit adds to them.
    let closed = end.div_euclid(HOUR) * HOUR;
    let at = r.digest_cursor()?;
    let oldest = r.oldest_hour()?;
    let ceil_day = |t: i64| t.div_euclid(DAY) * DAY + if t.rem_euclid(DAY) > 0 { DAY } else { 0 };
    let mut cursor = match (at, oldest) {
        (Some(c), _) => c,
        (None, Some(o)) => DigestCursor {
            since: ceil_day(o),
            day: ceil_day(o),
            key: 0,
        },
        (None, None) => return Ok(Step::CaughtUp),
    };
    // Hours rolled up into days before they were folded (the daemon was behind by the whole
    // hourly retention): the digests start again after them, and earlier months read the
    // hourly and daily rows as before.
    if let Some(o) = oldest.filter(|&o| o > cursor.day) {
        log::warn!("month digests: hours before {o} were rolled up unfolded; folding restarts");
        cursor = DigestCursor {
            since: ceil_day(o),
            day: ceil_day(o),
            key: 0,
        };
    }
    if cursor.day + DAY > closed {
        return Ok(Step::CaughtUp);
    }
    let (day, lo) = (cursor.day, cursor.key);
    let bound = r.key_bound(day, day + DAY)?.unwrap_or(0);
    let hi = lo.saturating_add(BATCH_KEYS).min(bound);
    let day_done = hi >= bound;
    let next = if day_done {
        DigestCursor {
            day: day + DAY,
            key: 0,
            ..cursor
        }
    } else {
        DigestCursor { key: hi, ..cursor }
    };
    let writes = if lo < hi {
        batch_writes(&r, day, lo, hi)?
    } else {
        DigestWrites::default()
    };
    let subscribers = writes.digests.len();
    Ok(if r.commit_fold(at, next, &writes)? {
        if day_done {
            log::debug!("month digests: day {day} folded");
        }
        Step::Folded {
            subscribers,
            day_done,
        }
    } else {
        Step::Raced
    })
}

/// The digests and plan-hours of keys `[lo, hi)` after adding `day`'s hours.
fn batch_writes(
    r: &PeriodReader<'_>,
    day: i64,
    lo: i64,
    hi: i64,
) -> Result<DigestWrites, StoreError> {
    let month = crate::clock::month_of(day)?.0;
    let width = usize::try_from(hi - lo).unwrap_or(0);
    // The batch's plan history; `ids` maps its plan indexes to digest ids.
    let history = r.plan_history_of(lo, hi)?;
    let ids = history
        .plans
        .iter()
        .map(|name| r.digest_plan_id(name))
        .collect::<Result<Vec<i64>, _>>()?;
    let plans = PlanAt::new(history);
    let spans: Vec<&[PlanSpan]> = (lo..hi).map(|key| plans.spans(key)).collect();
    let plan_id = |i: usize, start: i64| {
        in_force(spans[i], start)
            .and_then(|p| ids.get(p as usize).copied())
            .unwrap_or(UNKNOWN_PLAN)
    };
    // Each key's bytes per hour of the day; a (key, hour) may come twice (see `hourly`).
    let mut hours = vec![Bytes::default(); width * 24];
    let mut rows = vec![false; width];
    r.hourly((lo, hi), day, day + DAY, Figures::Bytes, |start, key, c| {
        let (Some(i), Some(h)) = (
            usize::try_from(key - lo).ok().filter(|&i| i < width),
            usize::try_from((start - day) / HOUR)
                .ok()
                .filter(|&h| h < 24),
        ) else {
            return;
        };
        hours[i * 24 + h].add(&Bytes::of(c));
        rows[i] = true;
    })?;
    let mut plan_hours: HashMap<(i64, i64), PlanHour> = HashMap::new();
    let mut digests: Vec<(i64, MonthDigest)> = Vec::new();
    let mut before: HashMap<i64, MonthDigest> = HashMap::new();
    r.month_digests(month, (lo, hi), |key, d| {
        before.insert(key, d);
    })?;
    for (i, &had_rows) in rows.iter().enumerate() {
        if !had_rows {
            continue;
        }
        let key = lo + i64::try_from(i).unwrap_or(0);
        let mut d = before.remove(&key).unwrap_or_default();
        let (mut down, mut up) = (Vec::with_capacity(24), Vec::with_capacity(24));
        for (h, b) in hours[i * 24..(i + 1) * 24].iter().enumerate() {
            let start = day + HOUR * i64::try_from(h).unwrap_or(0);
            let plan = plan_id(i, start);
            if *b != Bytes::default() {
                let p = plan_hours.entry((start, plan)).or_default();
                p.internet_down = p.internet_down.saturating_add(b.internet.down);
                p.internet_up = p.internet_up.saturating_add(b.internet.up);
                p.grid_down = p.grid_down.saturating_add(b.grid.down);
                p.grid_up = p.grid_up.saturating_add(b.grid.up);
                if let Err(at) = d.plans.binary_search(&plan) {
                    d.plans.insert(at, plan);
                }
            }
            let t = b.directions();
            d.down = d.down.saturating_add(t.down);
            d.up = d.up.saturating_add(t.up);
            down.push(t.down);
            up.push(t.up);
        }
        keep_largest(&mut d.top_down, down);
        keep_largest(&mut d.top_up, up);
        digests.push((key, d));
    }
    let mut plan_hours: Vec<_> = plan_hours
        .into_iter()
        .map(|((s, p), h)| (s, p, h))
        .collect();
    plan_hours.sort_unstable_by_key(|&(s, p, _)| (s, p));
    Ok(DigestWrites {
        month,
        digests,
        plan_hours,
    })
}

/// Merges `new` values into `top` (largest first), keeping the [`TOP`] largest non-zero ones.
pub fn keep_largest(top: &mut Vec<u64>, new: Vec<u64>) {
    top.extend(new.into_iter().filter(|&v| v > 0));
    top.sort_unstable_by(|a, b| b.cmp(a));
    top.truncate(TOP);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_values_are_kept_in_order_and_zeros_are_not() {
        let mut top = vec![90, 50, 10];
        keep_largest(&mut top, vec![0, 60, 5, 0]);
        assert_eq!(top, vec![90, 60, 50, 10, 5]);
        let mut top: Vec<u64> = (1..=40).collect();
        top.reverse();
        let mut top2 = Vec::new();
        keep_largest(&mut top2, top.clone());
        assert_eq!(top2.len(), TOP);
        assert_eq!(top2[0], 40);
        assert_eq!(*top2.last().unwrap(), 3);
        keep_largest(&mut top2, vec![100, 2]);
        assert_eq!((top2[0], top2.len(), *top2.last().unwrap()), (100, TOP, 4));
    }
}
