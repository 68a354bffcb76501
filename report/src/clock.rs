//! The one clock of the project, shared by the router daemon and the node agent: every module
//! that needs "now" takes a [`Clock`] instead of asking the system, so tests can run months in
//! seconds with [`Clock::manual`]. A clock that reads before 1970 or beyond what the store can
//! hold is an error, never a silent 0: a wrong time would misdate records and reports.

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

impl Clock {
    /// Unix milliseconds now (a manual clock reads whole seconds): for deadlines and request
    /// times finer than a second.
    pub fn now_ms(&self) -> Result<i64, ClockError> {
        match &self.manual {
            Some(_) => Ok(self.now_i64()?.saturating_mul(1000)),
            None => {
                let d = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| ClockError::BeforeEpoch)?;
                i64::try_from(d.as_millis()).map_err(|_| ClockError::OutOfRange(i64::MAX))
            }
        }
    }
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
}
