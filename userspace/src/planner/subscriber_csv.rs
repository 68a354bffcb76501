//! `quid report --subscribers-csv`: one row per subscriber with traffic in the hours held, its
//! plans and its own 95th percentile of hourly bytes, written as the report computes them (a
//! group of subscribers at a time, in key order), so memory stays at the ids.

use std::collections::HashMap;

use super::report_figures::SubscriberP95;
use crate::store::{Store, StoreError};

/// The columns, in order.
pub const COLUMNS: [&str; 10] = [
    "period_start",
    "subscriber",
    "plans",
    "plan",
    "p95_down_bytes_per_hour",
    "p95_up_bytes_per_hour",
    "p95_down_bits_per_second",
    "p95_up_bits_per_second",
    "down_bytes",
    "up_bytes",
];

/// What a row names: subscribers' ids by key, plan names by index.
pub struct Names {
    ids: HashMap<i64, String>,
    plans: Vec<String>,
}

impl Names {
    /// Read in one moment of `store`.
    pub fn read(store: &Store) -> Result<Names, StoreError> {
        let reader = store.period_reader()?;
        Ok(Names {
            ids: reader.ids()?,
            plans: reader.plan_history()?.plans,
        })
    }

    fn plan(&self, p: Option<u32>) -> &str {
        p.and_then(|p| self.plans.get(p as usize))
            .map_or(super::plan_attribution::UNKNOWN_PLAN, String::as_str)
    }

    /// Subscriber `s`'s row as text, in [`COLUMNS`] order (the Parquet file holds the same).
    pub fn record(&self, period_start: &str, s: &SubscriberP95) -> [String; COLUMNS.len()] {
        let id = self
            .ids
            .get(&s.key)
            .cloned()
            .unwrap_or_else(|| format!("#{}", s.key));
        let plans: Vec<&str> = s.plans.iter().map(|p| self.plan(Some(*p))).collect();
        let n = |v: u64| v.to_string();
        [
            period_start.to_owned(),
            id,
            plans.join(", "),
            self.plan(s.plan).to_owned(),
            n(s.p95_hour.down),
            n(s.p95_hour.up),
            n(bits_per_second(s.p95_hour.down)),
            n(bits_per_second(s.p95_hour.up)),
            n(s.bytes.down),
            n(s.bytes.up),
        ]
    }
}

/// The mean bits per second of `bytes` in an hour, rounded down.
pub fn bits_per_second(bytes: u64) -> u64 {
    u64::try_from(u128::from(bytes) * 8 / 3_600).unwrap_or(u64::MAX)
}

/// Writes the rows of a period to `out` as the report hands them over.
pub struct Writer<'a, W: std::io::Write> {
    out: csv::Writer<W>,
    names: &'a Names,
    period_start: String,
}

impl<'a, W: std::io::Write> Writer<'a, W> {
    /// Starts the file with its header.
    pub fn new(out: W, names: &'a Names, period_start: &str) -> csv::Result<Self> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(COLUMNS)?;
        Ok(Writer {
            out,
            names,
            period_start: period_start.to_owned(),
        })
    }

    /// One subscriber's row.
    pub fn row(&mut self, s: &SubscriberP95) -> csv::Result<()> {
        self.out
            .write_record(self.names.record(&self.period_start, s))
    }

    /// Flushes what is buffered.
    pub fn finish(mut self) -> csv::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
