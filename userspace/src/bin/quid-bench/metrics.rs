//! The metrics benchmark (`bench/metrics.json`), in the two stages the daemon has:
//!
//! - the interval (`render_*`, `rank_*` rows): once per interval the daemon ranks the
//!   subscribers, advances the monotonic counters and renders the text;
//! - the scrape (the other rows): `GET /metrics` over loopback TCP through the daemon's own
//!   server and route, which serve the text rendered at the last interval.
//!
//! Each figure is the median of several runs with one renderer kept across them, as the
//! daemon keeps one for its life (the later renders are the steady state).

use std::{
    io::Read as _,
    path::Path,
    sync::{Arc, RwLock},
    time::Instant,
};

use anyhow::bail;
use quid::{
    config::SubscriberSeries,
    metrics::{exposition::Exposition, route, status::DaemonStatus},
    store::{Base, Record, Status},
};
use quid_common::SubscriberCounters;
use serde::Serialize;

/// Renders per interval scenario (the median is reported).
const RENDERS: usize = 5;
/// Scrapes per scenario (the median is reported).
const SCRAPES: usize = 21;

/// One row of metrics.json.
#[derive(Serialize)]
struct MetricsRow {
    scenario: String,
    /// `interval` (rank and render, once per interval) or `scrape` (one `GET /metrics`).
    stage: &'static str,
    subscribers: u32,
    series: usize,
    seconds: f64,
    bytes: usize,
}

/// Synthetic books of `n` subscribers with distinct traffic, keys and 8 plans.
fn records(n: u32) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut total = SubscriberCounters::default();
            for (j, p) in (0u64..).zip(total.pairs.iter_mut()) {
                p.packets = u64::from(i) * 7 + j;
                p.bytes = (u64::from(i) * 1500 + j * 40) * 1000;
            }
            Record {
                id: format!("sub-{i:07}"),
                name: String::new(),
                plan: format!("plan-{}", i % 8),
                prefixes: String::new(),
                slot: Some(i),
                status: Status::Active,
                last: SubscriberCounters::default(),
                total,
                // Row keys are unique in the books; the monotonic counters are kept by them.
                base: Base {
                    key: i64::from(i),
                    ..Base::default()
                },
            }
        })
        .collect()
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Runs every scenario and writes `out/metrics.json`.
pub fn run(out: &Path) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for (scenario, interval_name, n, series) in [
        ("full", "render_full", 10_000u32, SubscriberSeries::All),
        ("full", "render_full", 100_000, SubscriberSeries::All),
        (
            "top100",
            "rank_top100",
            1_000_000,
            SubscriberSeries::Top(100),
        ),
    ] {
        let mut records = records(n);
        // Everyone has a balance and contributions, as on a grid where every home has a node.
        let status = DaemonStatus {
            balances: records.iter().map(|r| (r.id.clone(), -1_234_567)).collect(),
            contributions: records
                .iter()
                .map(|r| (r.id.clone(), [3600.0, 1e12, 54_000.0]))
                .collect(),
            ..DaemonStatus::default()
        };
        let mut exposition = Exposition::new();
        let mut times = Vec::new();
        let mut text = String::new();
        for _ in 0..RENDERS {
            advance(&mut records);
            let refs: Vec<&Record> = records.iter().collect();
            let started = Instant::now();
            text = exposition.render(&refs, &[], &status, series);
            times.push(started.elapsed().as_secs_f64());
        }
        drop(records);
        let count = text.lines().filter(|l| !l.starts_with('#')).count();
        let bytes = text.len();
        let render = median(times);
        let scrape = scrape(text)?;
        for (name, stage, seconds) in [
            (format!("{interval_name}_{n}"), "interval", render),
            (format!("{scenario}_{n}"), "scrape", scrape),
        ] {
            log::info!(
                "{name:>20} ({stage}): {count} series, {bytes} bytes, {:.3} ms",
                seconds * 1e3
            );
            rows.push(MetricsRow {
                scenario: name,
                stage,
                subscribers: n,
                series: count,
                seconds,
                bytes,
            });
        }
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_string_pretty(&rows)? + "\n",
    )?;
    Ok(())
}

/// One more interval of traffic for everyone, more for higher ids (the top N stays put).
fn advance(records: &mut [Record]) {
    for (i, r) in (0u64..).zip(records.iter_mut()) {
        for p in &mut r.total.pairs {
            p.packets += i;
            p.bytes += 1500 * i;
        }
    }
}

/// The median time of a `GET /metrics` for `text` through the daemon's server and route,
/// on a kept-alive loopback connection, the body read to its end.
fn scrape(text: String) -> anyhow::Result<f64> {
    let expected = text.len();
    let published: route::Published = Arc::new(RwLock::new(text.into()));
    let (_rt, addr) = super::serve_loopback("metrics", route::router(published), 1)?;
    let agent = ureq::AgentBuilder::new().build();
    let url = format!("http://{addr}/metrics");
    let mut times = Vec::new();
    // The first scrape opens the connection; it is not counted.
    for i in 0..=SCRAPES {
        let started = Instant::now();
        // Read raw: `into_string` stops at 10 MB, and the full exposition is larger.
        let mut body = Vec::with_capacity(expected);
        agent
            .get(&url)
            .call()?
            .into_reader()
            .read_to_end(&mut body)?;
        let took = started.elapsed().as_secs_f64();
        if body.len() != expected {
            bail!("a scrape read {} bytes, {expected} published", body.len());
        }
        if i > 0 {
            times.push(took);
        }
    }
    Ok(median(times))
}
