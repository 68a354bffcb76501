//! The one clock (defined in `quid-report`, shared with the node agent), and the calendar
//! arithmetic the books need (RFC 3339 text, UTC months).
//!
//! Every module that needs "now" takes a [`Clock`] instead of asking the system, so tests can
//! run the books through months in seconds with [`Clock::manual`]. A clock that reads before
//! 1970 or beyond what the store can hold is an error, never a silent 0: a wrong time would
//! date usage and ledger entries wrongly.

pub use quid_report::clock::{Clock, ClockError};

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

/// [`rfc3339_or_secs`] of unsigned seconds (beyond i64: the plain number).
pub fn rfc3339_or_secs_unsigned(secs: u64) -> String {
    i64::try_from(secs).map_or_else(|_| secs.to_string(), rfc3339_or_secs)
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

/// `[from, to)` of the calendar month (UTC) holding unix time `t`, as unix seconds.
pub fn month_of(t: i64) -> Result<(i64, i64), ClockError> {
    let ts = jiff::Timestamp::from_second(t).map_err(|_| ClockError::OutOfRange(t))?;
    month_bounds(
        &ts.to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%Y-%m")
            .to_string(),
    )
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
