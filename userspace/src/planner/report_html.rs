//! `quid report --html`: the report as one self-contained HTML page (no script, no font, no
//! link to fetch: it opens offline and can be mailed), its charts inline SVG drawn with
//! plotters: demand by plan per day, the busy-hour profile, supply against demand per plan,
//! and the distribution of subscribers' net for the period.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::{
    forecast::{Forecast, SEASON},
    report::{PlanReport, Report},
};
use crate::clock;

/// Why the page could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the report's chart `{chart}`: {detail}")]
pub struct HtmlError {
    chart: &'static str,
    detail: String,
}

/// Chart size in pixels.
const SIZE: (u32, u32) = (760, 360);
const GB: f64 = 1e9;

/// Text as HTML text (plan names come from the operator's table).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A plan's colour (the fleet's is black).
fn colour(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// Runs `draw` on an SVG canvas and returns the SVG.
fn svg(
    chart: &'static str,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<String, HtmlError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        let fail = |detail: String| HtmlError { chart, detail };
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(out)
}

/// The top of a y axis holding `max` (never zero: an empty chart still has an axis).
fn top(max: f64) -> f64 {
    if max > 0.0 { max * 1.1 } else { 1.0 }
}

/// Daily bytes per plan, as lines.
fn demand(r: &Report) -> Result<String, HtmlError> {
    svg("demand by plan", |root| {
        let days = r.fleet.daily_bytes.len();
        let max = r.plans.iter().flat_map(|p| &p.daily_bytes).copied().max();
        let y = top(max.unwrap_or(0) as f64 / GB);
        let mut chart = ChartBuilder::on(root)
            .caption("Demand by plan (GB per day)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(1..days.max(1), 0.0..y)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("day of the month")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, p) in r.plans.iter().enumerate() {
            let c = colour(i);
            let points = p
                .daily_bytes
                .iter()
                .enumerate()
                .map(|(d, b)| (d + 1, *b as f64 / GB));
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(p.plan.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// The fleet's mean rate per hour of the day, the busy hour marked.
fn busy_hour(r: &Report) -> Result<String, HtmlError> {
    svg("busy hour", |root| {
        let mbps = |bytes: u64| bytes as f64 * 8.0 / 3_600.0 / 1e6;
        let max = r.fleet.hour_of_day.iter().copied().max().unwrap_or(0);
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Busy hour: mean fleet rate by hour of day (Mbit/s, UTC)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0u32..24u32, 0.0..top(mbps(max)))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("hour of day")
            .draw()
            .map_err(|e| e.to_string())?;
        let busy = r.busy_hour_of_day.map(u32::from);
        chart
            .draw_series(r.fleet.hour_of_day.iter().zip(0u32..).map(|(b, h)| {
                let c = if Some(h) == busy { RED } else { BLUE };
                Rectangle::new([(h, 0.0), (h + 1, mbps(*b))], c.mix(0.7).filled())
            }))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Per plan: credits (supply) against debits (demand), in credits.
fn supply(r: &Report) -> Result<String, HtmlError> {
    svg("supply vs demand", |root| {
        let credits = |m: i128| m as f64 / 1e6;
        let max = r
            .plans
            .iter()
            .map(|p| credits(p.credits).max(credits(-p.debits)))
            .fold(0.0, f64::max);
        let n = u32::try_from(r.plans.len()).unwrap_or(u32::MAX).max(1);
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Supply (credits, green) vs demand (debits, orange) per plan",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(72)
            .build_cartesian_2d(0u32..n * 3, 0.0..top(max))
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = r.plans.iter().map(|p| p.plan.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(names.len().max(1) * 3)
            .x_label_formatter(&|x| {
                if x % 3 == 1 {
                    names.get((x / 3) as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("credits")
            .draw()
            .map_err(|e| e.to_string())?;
        let bars = r.plans.iter().zip(0u32..).flat_map(|(p, i)| {
            [
                Rectangle::new(
                    [(3 * i, 0.0), (3 * i + 1, credits(p.credits))],
                    GREEN.mix(0.7).filled(),
                ),
                Rectangle::new(
                    [(3 * i + 1, 0.0), (3 * i + 2, credits(-p.debits))],
                    RGBColor(255, 140, 0).mix(0.8).filled(),
                ),
            ]
        });
        chart.draw_series(bars).map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Deciles of the subscribers' net for the period.
fn balances(r: &Report) -> Result<String, HtmlError> {
    svg("balances distribution", |root| {
        let v: Vec<f64> = r.net_deciles.iter().map(|m| *m as f64 / 1e6).collect();
        let lo = v.iter().copied().fold(0.0, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        let pad = ((hi - lo) * 0.1).max(1e-6);
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Subscribers' net for the period, by decile (credits)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(72)
            .build_cartesian_2d(0u32..100u32, (lo - pad)..(hi + pad))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("share of subscribers (%)")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                v.iter().zip((0u32..).step_by(10)).map(|(n, x)| (x, *n)),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new([(0, 0.0), (100, 0.0)], BLACK.mix(0.5)))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// The fleet's last two weeks held and its forecast for four weeks, with the band.
fn ahead(r: &Report, f: &Forecast, history: &[f64]) -> Result<String, HtmlError> {
    svg("forecast", |root| {
        let mbps = |bytes: f64| bytes * 8.0 / 3_600.0 / 1e6;
        let past = history.len().min(2 * SEASON);
        let shown = &history[history.len() - past..];
        let n = past + f.mean.len();
        let max = shown.iter().chain(&f.high).copied().fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Fleet demand: last two weeks and forecast with band (Mbit/s)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0..n.max(1), 0.0..top(mbps(max)))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(format!(
                "hours from {}",
                clock::rfc3339_or_secs(r.hours_to - 3_600 * i64::try_from(past).unwrap_or(0))
            ))
            .draw()
            .map_err(|e| e.to_string())?;
        let band: Vec<(usize, f64)> = f
            .high
            .iter()
            .enumerate()
            .map(|(h, v)| (past + h, mbps(*v)))
            .chain(
                f.low
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(h, v)| (past + h, mbps(*v))),
            )
            .collect();
        chart
            .draw_series([Polygon::new(band, BLUE.mix(0.2).filled())])
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                shown.iter().enumerate().map(|(h, v)| (h, mbps(*v))),
                BLACK.stroke_width(1),
            ))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                f.mean.iter().enumerate().map(|(h, v)| (past + h, mbps(*v))),
                BLUE.stroke_width(1),
            ))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// One plan's row of the page's table.
fn row(out: &mut String, p: &PlanReport) {
    let gb = |b: u64| format!("{:.3}", b as f64 / GB);
    let mbps = |b: u64| format!("{:.2}", b as f64 * 8.0 / 3_600.0 / 1e6);
    let _ = writeln!(
        out,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape(&p.plan),
        p.active,
        p.contributing,
        gb(p.bytes.internet.down),
        gb(p.bytes.internet.up),
        gb(p.bytes.grid.total()),
        mbps(p.peak_hour.down),
        mbps(p.busy_hour_average.down),
        mbps(p.p95_hour.down),
        crate::ledger::chain::credits_wide(p.credits),
        crate::ledger::chain::credits_wide(p.debits),
        crate::ledger::chain::credits_wide(p.net),
        p.growth_percent
            .map_or_else(|| "-".to_owned(), |g| format!("{g:+.1}%")),
    );
}

/// The page for `period`.
pub fn page(period: &str, r: &Report) -> Result<String, HtmlError> {
    let mut out = String::new();
    let when = clock::rfc3339_or_secs;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>quid report {p}</title><style>\
         body{{font-family:sans-serif;margin:24px;color:#222}}\
         table{{border-collapse:collapse;margin:12px 0}}\
         td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}\
         .charts{{display:grid;grid-template-columns:repeat(2,{w}px);gap:12px}}\
         </style></head><body>\n<h1>quid: planning report {p}</h1>\n\
         <p>Hourly figures over {a} .. {b}; peak hour {peak}; busy hour of the day {busy}.</p>\n",
        p = escape(period),
        w = SIZE.0,
        a = when(r.hours_from),
        b = when(r.hours_to),
        peak = r.peak_hour.map_or_else(|| "-".to_owned(), when),
        busy = r
            .busy_hour_of_day
            .map_or_else(|| "-".to_owned(), |h| format!("{h:02}:00 UTC")),
    );
    if let Some(u) = &r.uplink {
        let _ = writeln!(
            out,
            "<p>Uplinks ({} Mbit/s): peak {:.1} %, 95th percentile {:.1} %; forecast demand \
             passes {:.0} % of capacity: {}.</p>",
            u.capacity_bits_per_second / 1_000_000,
            u.peak_percent,
            u.p95_percent,
            u.threshold_percent,
            escape(u.crossing_text()),
        );
    }
    if let Some(s) = &r.supply {
        let _ = writeln!(
            out,
            "<p>Supply against demand: credits stop covering debits at this month's growth: \
             {}.</p>",
            escape(s.text())
        );
    }
    out.push_str(
        "<table><tr><th>plan</th><th>active</th><th>contributing</th><th>down GB</th>\
         <th>up GB</th><th>grid GB</th><th>peak Mbit/s</th><th>busy hour Mbit/s</th>\
         <th>p95 Mbit/s</th><th>credits</th><th>debits</th><th>net</th><th>growth</th></tr>\n",
    );
    for p in r.plans.iter().chain([&r.fleet]) {
        row(&mut out, p);
    }
    out.push_str("</table>\n<div class=\"charts\">\n");
    for chart in [demand(r)?, busy_hour(r)?, supply(r)?, balances(r)?] {
        let _ = writeln!(out, "<div class=\"chart\">{chart}</div>");
    }
    match &r.forecast {
        Some(f) => {
            let history: Vec<f64> = r.fleet_hourly_bytes.iter().map(|b| *b as f64).collect();
            let _ = writeln!(out, "<div class=\"chart\">{}</div>", ahead(r, f, &history)?);
        }
        None => {
            let note = r.forecast_note.as_deref().unwrap_or("no forecast");
            let _ = writeln!(out, "<p>Forecast: {}.</p>", escape(note));
        }
    }
    out.push_str("</div>\n</body></html>\n");
    Ok(out)
}
