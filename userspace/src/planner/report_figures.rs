//! The figures of `quid report` (per plan, for the fleet, per subscriber) and the constants
//! they are computed with: the types the report's parts fill in and its outputs read.

use serde::Serialize;

use super::forecast::Forecast;

/// Subscribers whose hourly values are held at once: 4,096 × 744 hours × 16 bytes = 48 MiB.
pub const GROUP: usize = 4_096;
/// Seconds in an hour.
pub(super) const HOUR: i64 = 3_600;
/// The percentile of hourly values reported.
pub(super) const PERCENTILE: u32 = 95;
/// Previous periods whose bytes the growth figures compare with.
pub const PREVIOUS: usize = 3;
/// Hours the fleet's demand is forecast ahead: four weeks.
pub const FORECAST_HOURS: usize = 4 * super::forecast::SEASON;

/// A figure per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Directions {
    /// Towards the subscriber.
    pub down: u64,
    /// From the subscriber.
    pub up: u64,
}

impl Directions {
    pub(super) fn add(&mut self, o: Directions) {
        self.down = self.down.saturating_add(o.down);
        self.up = self.up.saturating_add(o.up);
    }

    /// Both directions together.
    pub fn total(self) -> u64 {
        self.down.saturating_add(self.up)
    }
}

/// Bytes by direction and class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Bytes {
    pub internet: Directions,
    pub grid: Directions,
}

impl Bytes {
    pub(super) fn of(c: &quid_common::SubscriberCounters) -> Bytes {
        use quid_common::{CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, pair_index};
        let b = |d, k| c.pairs[pair_index(d, k)].bytes;
        Bytes {
            internet: Directions {
                down: b(DIR_DOWNLOAD, CLASS_INTERNET),
                up: b(DIR_UPLOAD, CLASS_INTERNET),
            },
            grid: Directions {
                down: b(DIR_DOWNLOAD, CLASS_GRID),
                up: b(DIR_UPLOAD, CLASS_GRID),
            },
        }
    }

    pub(super) fn add(&mut self, o: &Bytes) {
        self.internet.add(o.internet);
        self.grid.add(o.grid);
    }

    /// Both classes per direction.
    pub fn directions(&self) -> Directions {
        let mut d = self.internet;
        d.add(self.grid);
        d
    }
}

/// What settled reports supplied, in their base units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Contributions {
    pub reports: u64,
    pub cpu_core_micros: u64,
    pub storage_byte_seconds: u64,
    pub energy_microjoules: u64,
}

/// One plan's (or the fleet's) figures for the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanReport {
    pub plan: String,
    /// Subscribers with usage in the period (one on two plans counts in both, once in the
    /// fleet).
    pub active: u64,
    /// Subscribers with a settled report in the period.
    pub contributing: u64,
    pub bytes: Bytes,
    /// Bytes in the fleet's peak hour.
    pub peak_hour: Directions,
    /// Mean bytes per hour in the busy hour of the day.
    pub busy_hour_average: Directions,
    /// The 95th percentile of the plan's hourly bytes (all its subscribers together).
    pub p95_hour: Directions,
    /// The median and the largest of its subscribers' own 95th percentiles of hourly bytes
    /// (subscribers with traffic in the hours held; each under its plan at the period's end).
    pub subscriber_p95_median: Directions,
    pub subscriber_p95_max: Directions,
    pub contributions: Contributions,
    /// Ledger entries of the period (micro-credits): positive ones, negative ones, their sum.
    pub credits: i128,
    pub debits: i128,
    pub net: i128,
    /// Bytes (both directions and classes) per day of the period.
    pub daily_bytes: Vec<u64>,
    /// Mean bytes per hour for each hour of the day (UTC), over the hours held.
    pub hour_of_day: Vec<u64>,
    /// Bytes of the previous periods, most recent first.
    pub previous_bytes: Vec<u64>,
    /// Growth of bytes against the previous period, in percent (`None`: none then).
    pub growth_percent: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub from: i64,
    pub to: i64,
    /// The hours whose hourly figures are held, `[hours_from, hours_to)` (older hours are
    /// rolled up into days, later ones not metered yet): busy hour and percentiles cover them.
    pub hours_from: i64,
    pub hours_to: i64,
    /// Start of the hour with the most fleet traffic (both directions).
    pub peak_hour: Option<i64>,
    /// The hour of the day (UTC) with the most fleet traffic on average.
    pub busy_hour_of_day: Option<u8>,
    /// By plan name.
    pub plans: Vec<PlanReport>,
    pub fleet: PlanReport,
    /// The previous periods compared, most recent first: `[from, to)`.
    pub previous: Vec<(i64, i64)>,
    /// Deciles (0 %, 10 %, ... 100 %) of each subscriber's net for the period (micro-credits),
    /// over the subscribers with ledger entries in it.
    pub net_deciles: Vec<i64>,
    /// The fleet's hourly bytes (both directions) for [`FORECAST_HOURS`] from `hours_to`, from
    /// the hours held (see `forecast`); `None` with `forecast_note` saying why.
    pub forecast: Option<Forecast>,
    pub forecast_note: Option<String>,
    /// The fleet's bytes (both directions) per hour held.
    pub fleet_hourly_bytes: Vec<u64>,
    /// The fleet's Internet bytes per hour held, per direction (what crosses the uplinks).
    pub internet_hourly: Vec<Directions>,
    /// The uplinks' utilisation, when their capacity is configured (see `uplink`).
    pub uplink: Option<Uplink>,
    /// Whether credits keep covering debits at the growth since the month before.
    pub supply: Option<super::supply::Supply>,
    /// What the period's usage was read from.
    pub read_from: ReadFrom,
}

/// What a report read a period's usage from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// The hourly and daily rows (any period).
    #[default]
    HourlyRows,
    /// The month digests (a calendar month folded whole; see `month_fold`).
    MonthDigests,
}

/// One subscriber's hourly figures, as the report computed them (for checks and exports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberP95 {
    pub key: i64,
    /// Its plan at the end of the hours held (index into the plan history's names): the plan
    /// whose subscriber percentiles count it.
    pub plan: Option<u32>,
    /// Every plan its hours held were attributed to, oldest first (indexes as `plan`).
    pub plans: Vec<u32>,
    /// The 95th percentile of its hourly bytes (both classes), per direction.
    pub p95_hour: Directions,
    /// Its bytes (both classes) in the hours held, per direction.
    pub bytes: Directions,
}

/// The uplinks' share of capacity used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Uplink {
    /// The core interfaces' capacity together (bits per second, each direction).
    pub capacity_bits_per_second: u64,
    /// In the peak hour of the busier direction, in percent.
    pub peak_percent: f64,
    /// The 95th percentile of the hours held, in percent.
    pub p95_percent: f64,
    /// The threshold the crossing is looked for at, in percent.
    pub threshold_percent: f64,
    /// The first month (YYYY-MM) whose forecast busy hour passes the threshold, within a
    /// year; `None` when none does (or there is no forecast: see `note`).
    pub crossing_month: Option<String>,
    pub note: Option<String>,
}

impl Uplink {
    /// The crossing as a reader sees it: the month, why there is none, or that none comes.
    pub fn crossing_text(&self) -> &str {
        self.crossing_month
            .as_deref()
            .or(self.note.as_deref())
            .unwrap_or("not within a year")
    }
}
