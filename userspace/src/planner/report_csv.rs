//! `quid report --csv`: one row per plan and one for the fleet, every figure an exact integer
//! in base units (bytes, micro-credits, core-microseconds, byte-seconds, microjoules).

use super::report::{PlanReport, Report};

/// The columns, in order.
pub const COLUMNS: [&str; 27] = [
    "period_start",
    "plan",
    "active",
    "contributing",
    "down_internet_bytes",
    "up_internet_bytes",
    "down_grid_bytes",
    "up_grid_bytes",
    "peak_hour_down_bytes",
    "peak_hour_up_bytes",
    "busy_hour_average_down_bytes",
    "busy_hour_average_up_bytes",
    "p95_hour_down_bytes",
    "p95_hour_up_bytes",
    "subscriber_p95_median_down_bytes",
    "subscriber_p95_median_up_bytes",
    "subscriber_p95_max_down_bytes",
    "subscriber_p95_max_up_bytes",
    "reports",
    "cpu_core_micros",
    "storage_byte_seconds",
    "energy_microjoules",
    "credits",
    "debits",
    "net",
    "previous_bytes",
    "growth_percent",
];

/// A plan's row, as text.
pub fn row(period_start: &str, p: &PlanReport) -> Vec<String> {
    let n = |v: u64| v.to_string();
    let c = &p.contributions;
    vec![
        period_start.to_owned(),
        p.plan.clone(),
        n(p.active),
        n(p.contributing),
        n(p.bytes.internet.down),
        n(p.bytes.internet.up),
        n(p.bytes.grid.down),
        n(p.bytes.grid.up),
        n(p.peak_hour.down),
        n(p.peak_hour.up),
        n(p.busy_hour_average.down),
        n(p.busy_hour_average.up),
        n(p.p95_hour.down),
        n(p.p95_hour.up),
        n(p.subscriber_p95_median.down),
        n(p.subscriber_p95_median.up),
        n(p.subscriber_p95_max.down),
        n(p.subscriber_p95_max.up),
        n(c.reports),
        n(c.cpu_core_micros),
        n(c.storage_byte_seconds),
        n(c.energy_microjoules),
        p.credits.to_string(),
        p.debits.to_string(),
        p.net.to_string(),
        p.previous_bytes.first().map_or_else(String::new, |b| n(*b)),
        p.growth_percent
            .map_or_else(String::new, |g| format!("{g:.3}")),
    ]
}

/// Writes `report` as CSV (a header, the plans, the fleet) to `out`.
pub fn write(report: &Report, period_start: &str, out: impl std::io::Write) -> csv::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(COLUMNS)?;
    for p in report.plans.iter().chain([&report.fleet]) {
        w.write_record(row(period_start, p))?;
    }
    w.flush()?;
    Ok(())
}
