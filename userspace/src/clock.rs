//! The one clock, and the calendar arithmetic the books need (RFC 3339 text, UTC months).
//!
//! Every module that needs "now" takes a [`Clock`] instead of asking the system, so tests can
//! run the books through months in seconds with [`Clock::manual`]. A clock that reads before
//! 1970 or beyond what the store can hold is an error, never a silent 0: a wrong time would
//! date usage and ledger entries wrongly.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

/// Why the time could not be read or formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error(
        "the system clock reads before 1970-01-01: set the time (NTP) before starting quid, or \
         its records would be misdated"
    )]
    BeforeEpoch,
    #[error("unix time {0} is out of the range quid can date")]
    OutOfRange(i64),
    #[error("`{0}` is not a month: use YYYY-MM, for example 2026-11")]
    Month(String),
}

/// Where the time comes from: the system, or a value a test sets.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock (real time).
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that reads `at` (unix seconds) until set or advanced: for tests.
    pub fn manual(at: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(at))),
        }
    }

    /// Sets a manual clock (every copy sees it); a system clock ignores this.
    pub fn set(&self, at: i64) {
        if let Some(t) = &self.manual {
            t.store(at, Ordering::SeqCst);
        }
    }

    /// Moves a manual clock forward by `secs`; a system clock ignores this.
    pub fn advance(&self, secs: i64) {
        if let Some(t) = &self.manual {
            t.fetch_add(secs, Ordering::SeqCst);
        }
    }

    /// Unix seconds now, never before 1970.
    pub fn now(&self) -> Result<u64, ClockError> {
        let secs = self.now_i64()?;
        u64::try_from(secs).map_err(|_| ClockError::BeforeEpoch)
    }

    /// Unix seconds now as a signed figure (the type reports and ledger entries use).
    pub fn now_i64(&self) -> Result<i64, ClockError> {
        match &self.manual {
            Some(t) => {
                let at = t.load(Ordering::SeqCst);
                if at < 0 {
                    return Err(ClockError::BeforeEpoch);
                }
                Ok(at)
            }
            None => {
                let d = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| ClockError::BeforeEpoch)?;
                i64::try_from(d.as_secs()).map_err(|_| ClockError::OutOfRange(i64::MAX))
            }
        }
    }
}

/// Formats unix seconds as RFC 3339 in UTC (`2026-11-24T10:00:00Z`).
pub fn rfc3339(secs: i64) -> Result<String, ClockError> {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .map_err(|_| ClockError::OutOfRange(secs))
}

/// RFC 3339 of unix seconds, or the plain number when out of range (for display only).
pub fn rfc3339_or_secs(secs: i64) -> String {
    rfc3339(secs).unwrap_or_else(|_| secs.to_string())
}

/// The calendar month (UTC) of unix time `t`, as YYYYMM.
pub fn month_number(t: i64) -> Result<u32, ClockError> {
    let ts = jiff::Timestamp::from_second(t).map_err(|_| ClockError::OutOfRange(t))?;
    let d = ts.to_zoned(jiff::tz::TimeZone::UTC).date();
    let year = u32::try_from(d.year()).map_err(|_| ClockError::OutOfRange(t))?;
    let month = u32::try_from(d.month()).map_err(|_| ClockError::OutOfRange(t))?;
    Ok(year * 100 + month)
}

/// `[from, to)` of a `YYYY-MM` month in UTC, as unix seconds.
pub fn month_bounds(period: &str) -> Result<(i64, i64), ClockError> {
    let bad = || ClockError::Month(period.to_owned());
    if period.len() != 7 {
        return Err(bad());
    }
    let start: jiff::civil::Date = format!("{period}-01").parse().map_err(|_| bad())?;
    let end = start
        .checked_add(jiff::Span::new().months(1))
        .map_err(|_| bad())?;
    let ts = |d: jiff::civil::Date| {
        d.to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_second())
            .map_err(|_| bad())
    };
    Ok((ts(start)?, ts(end)?))
}

/// The `YYYY-MM` of the calendar month (UTC) before the one holding unix time `t`.
pub fn previous_month(t: i64) -> Result<String, ClockError> {
    let ts = jiff::Timestamp::from_second(t).map_err(|_| ClockError::OutOfRange(t))?;
    let last = ts
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .first_of_month()
        .checked_sub(jiff::Span::new().days(1))
        .map_err(|_| ClockError::OutOfRange(t))?;
    Ok(last.strftime("%Y-%m").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_by_its_copies_and_refuses_times_before_1970() {
        let clock = Clock::manual(1_764_547_200);
        let copy = clock.clone();
        clock.advance(86_400);
        assert_eq!(copy.now(), Ok(1_764_633_600));
        clock.set(-1);
        assert_eq!(copy.now(), Err(ClockError::BeforeEpoch));
        assert!(Clock::system().now().unwrap() > 1_700_000_000);
    }

    #[test]
    fn months_have_their_calendar_lengths() {
        assert_eq!(
            month_bounds("2026-02"),
            Ok((1_769_904_000, 1_769_904_000 + 28 * 86_400))
        );
        assert_eq!(month_bounds("2024-02").map(|(a, b)| b - a), Ok(29 * 86_400));
        for bad in ["2026-13", "2026-1", "26-01", "2026-01-01", ""] {
            assert!(month_bounds(bad).is_err(), "{bad}");
        }
        assert_eq!(month_number(1_769_904_000), Ok(202602));
        assert_eq!(previous_month(1_769_904_000).as_deref(), Ok("2026-01"));
        assert_eq!(rfc3339(0).as_deref(), Ok("1970-01-01T00:00:00Z"));
        assert!(rfc3339(i64::MAX).is_err());
    }
}
