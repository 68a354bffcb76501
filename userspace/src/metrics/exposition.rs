//! The Prometheus exposition: rendered once per interval from the books and the snapshot, and
//! served as it is by `GET /metrics`, so a scrape never walks a kernel map.
//!
//! Per-subscriber and per-plan series are written straight into the text: with a million
//! subscribers, building a client-library metric object per series would cost more than the
//! whole scrape may. The daemon's own metrics go through the `prometheus` crate's registry and
//! text encoder ([`crate::metrics::health`]), made once with the [`Exposition`]. Every name is
//! in base units and counters end in `_total`.

use std::fmt::Write as _;

use quid_common::{
    CLASS_GRID, CLASS_INTERNET, DIR_DOWNLOAD, DIR_UPLOAD, SubscriberCounters, pair_index,
};

use crate::{
    config::SubscriberSeries,
    metering::snapshot::InterfaceTotals,
    metrics::{
        health::HealthMetrics,
        in_order::InOrder,
        status::DaemonStatus,
        tally::{self, CONTRIBUTION, Figures, Seen, Tally},
    },
    store::Record,
};

/// Every metric family the exporter emits (the dashboards may use no other).
pub const FAMILIES: [&str; 34] = [
    "quid_subscriber_balance_credits",
    "quid_subscriber_pending_debit_credits",
    "quid_contribution_cpu_seconds_total",
    "quid_contribution_storage_byte_seconds_total",
    "quid_contribution_energy_joules_total",
    "quid_subscriber_bytes_total",
    "quid_subscriber_packets_total",
    "quid_plan_bytes_total",
    "quid_plan_packets_total",
    "quid_plan_subscribers",
    "quid_plan_contribution_cpu_seconds_total",
    "quid_plan_contribution_storage_byte_seconds_total",
    "quid_plan_contribution_energy_joules_total",
    "quid_traffic_bytes_total",
    "quid_traffic_packets_total",
    "quid_interface_bytes_total",
    "quid_interface_packets_total",
    "quid_xdp_attached",
    "quid_read_duration_seconds",
    "quid_commit_duration_seconds",
    "quid_last_interval_timestamp_seconds",
    "quid_map_entries",
    "quid_map_capacity",
    "quid_table_generation",
    "quid_table_reloads_total",
    "quid_table_last_reload_success",
    "quid_subscribers",
    "quid_build_info",
    "quid_xdp_reattachments_total",
    "quid_store_commit_failures_total",
    "quid_balances_unreadable",
    "quid_store_bytes",
    "quid_store_rows",
    "quid_rollup_lag_seconds",
];

/// Families of the anchored ledger: its head and the newest signed checkpoint.
pub const LEDGER_FAMILIES: [&str; 3] = [
    "quid_ledger_head_seq",
    "quid_ledger_checkpoint_seq",
    "quid_ledger_checkpoint_timestamp_seconds",
];

/// Families emitted for the HTTP listeners (metrics, reports, operator API).
pub const HTTP_FAMILIES: [&str; 3] = [
    "quid_http_connections_open",
    "quid_http_connections_total",
    "quid_http_requests_timed_out_total",
];

/// Families emitted while the operator API runs.
pub const OPERATOR_FAMILIES: [&str; 1] = ["quid_operator_requests_total"];

/// Families emitted while the report intake runs.
pub const REPORT_FAMILIES: [&str; 2] = ["quid_reports_total", "quid_report_rejections_total"];

const DIRECTIONS: [(usize, &str); 2] = [(DIR_UPLOAD, "upload"), (DIR_DOWNLOAD, "download")];
const CLASSES: [(usize, &str); 2] = [(CLASS_INTERNET, "internet"), (CLASS_GRID, "grid")];

/// (index among the contributions, family, help) per subscriber.
const CONTRIBUTION_FAMILIES: [(usize, &str, &str); 3] = [
    (
        0,
        "quid_contribution_cpu_seconds_total",
        "CPU core-seconds supplied, from settled reports.",
    ),
    (
        1,
        "quid_contribution_storage_byte_seconds_total",
        "Storage byte-seconds supplied, from settled reports.",
    ),
    (
        2,
        "quid_contribution_energy_joules_total",
        "Energy supplied in joules, from settled reports.",
    ),
];

/// The same per plan: every plan has them, at zero until a subscriber of it contributes.
const PLAN_CONTRIBUTION_FAMILIES: [(usize, &str, &str); 3] = [
    (
        0,
        "quid_plan_contribution_cpu_seconds_total",
        "CPU core-seconds supplied per plan (each interval's settlements counted to the plan the subscriber has at its end).",
    ),
    (
        1,
        "quid_plan_contribution_storage_byte_seconds_total",
        "Storage byte-seconds supplied per plan, from settled reports.",
    ),
    (
        2,
        "quid_plan_contribution_energy_joules_total",
        "Energy supplied per plan in joules, from settled reports.",
    ),
];

/// Escapes a label value (backslash, double quote, newline), as the text format requires.
pub fn escape(value: &str, out: &mut String) {
    // Ids and plans are restricted tokens: nearly always nothing to escape.
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes the (direction, class) series of `counters` for one label prefix (`subscriber="x",`).
fn pairs(out: &mut String, name: &str, labels: &str, counters: &SubscriberCounters, bytes: bool) {
    // Written piece by piece: this runs for every series of every listed subscriber, where the
    // formatting machinery of `write!` would cost more than the text itself.
    let mut digits = itoa::Buffer::new();
    for (d, dname) in DIRECTIONS {
        for (c, cname) in CLASSES {
            let p = counters.pairs[pair_index(d, c)];
            let v = if bytes { p.bytes } else { p.packets };
            out.push_str(name);
            out.push('{');
            out.push_str(labels);
            out.push_str("direction=\"");
            out.push_str(dname);
            out.push_str("\",class=\"");
            out.push_str(cname);
            out.push_str("\"} ");
            out.push_str(digits.format(v));
            out.push('\n');
        }
    }
}

/// A settled contribution as the whole units the exposition writes: the fraction floored,
/// negatives and NaN as 0, anything beyond `u64::MAX` as `u64::MAX`.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "clamped at 0 first; `as` then floors and saturates at u64::MAX, the rendering wanted"
)]
fn whole(v: f64) -> u64 {
    v.max(0.0) as u64
}

fn volume(c: &SubscriberCounters) -> u64 {
    c.pairs.iter().map(|p| p.bytes).sum()
}

/// The exposition's renderer: made once when the daemon starts, so the daemon's own metrics
/// keep one registry (and their counters their values) for the life of the process.
#[derive(Default)]
pub struct Exposition {
    health: HealthMetrics,
    tally: Tally,
}

impl Exposition {
    /// A renderer with the daemon's own metrics registered and nothing counted yet.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Records one interval read and committed: its durations and its end (unix seconds).
    pub fn interval(&self, read_seconds: f64, commit_seconds: f64, end: u64) {
        self.health.interval(read_seconds, commit_seconds, end);
    }

    /// Renders the whole exposition from the books, the interfaces' buckets and `status`.
    pub fn render(
        &mut self,
        records: &[&Record],
        interfaces: &[InterfaceTotals],
        status: &DaemonStatus,
        series: SubscriberSeries,
    ) -> String {
        let mut out = render_books(&mut self.tally, records, interfaces, status, series);
        out.push_str(&self.health.render(records, status));
        out
    }
}

/// Which subscribers get series of their own under `series`: all, none, or the N with the
/// most bytes (in that order).
fn listed<'a>(records: &[&'a Record], series: SubscriberSeries) -> Vec<&'a Record> {
    match series {
        SubscriberSeries::All => records.to_vec(),
        SubscriberSeries::None => Vec::new(),
        SubscriberSeries::Top(n) => {
            let mut by_volume: Vec<(std::cmp::Reverse<u64>, &Record)> = records
                .iter()
                .map(|r| (std::cmp::Reverse(volume(&r.total)), *r))
                .collect();
            // Partition first (linear), then sort only the N listed.
            if n < by_volume.len() {
                by_volume.select_nth_unstable_by_key(n, |x| x.0);
                by_volume.truncate(n);
            }
            by_volume.sort_unstable_by_key(|x| x.0);
            by_volume.into_iter().map(|(_, r)| r).collect()
        }
    }
}

/// Advances `tally` by the interval the books now hold: every subscriber's figures, with the
/// settled contributions of those that have any.
fn advance(tally: &mut Tally, records: &[&Record], listed: &[&Record], status: &DaemonStatus) {
    let keys: std::collections::HashSet<i64> = listed.iter().map(|r| r.base.key).collect();
    let mut contributions = InOrder::new(&status.contributions);
    tally.update(records.iter().map(|r| Seen {
        key: r.base.key,
        plan: &r.plan,
        now: tally::figures(
            &r.total,
            contributions.get(&r.id).map_or([0; 3], |c| c.map(whole)),
        ),
        listed: keys.contains(&r.base.key),
    }));
}

/// Writes the bytes or packets series of (direction, class) held in `f`.
fn figure_pairs(out: &mut String, name: &str, labels: &str, f: &Figures, bytes: bool) {
    pairs(out, name, labels, &tally::counters(f), bytes);
}

/// The per-subscriber, per-plan and per-interface families, written straight into the text.
fn render_books(
    tally: &mut Tally,
    records: &[&Record],
    interfaces: &[InterfaceTotals],
    status: &DaemonStatus,
    series: SubscriberSeries,
) -> String {
    let mut all = SubscriberCounters::default();
    for r in records {
        all.add(&r.total);
    }
    let listed = listed(records, series);
    advance(tally, records, &listed, status);
    // Under `all` a series is the subscriber's lifetime figures; otherwise the tally's
    // running value, and `other` is always there (at zero until something is not listed).
    let every = matches!(series, SubscriberSeries::All);
    let values: Vec<Figures> = listed
        .iter()
        .map(|r| {
            if every {
                let c = status.contributions.get(&r.id).copied().unwrap_or_default();
                tally::figures(&r.total, c.map(whole))
            } else {
                tally.series(r.base.key)
            }
        })
        .collect();
    let other = (!every).then(|| *tally.other());
    // About 12 series of 80 bytes per listed subscriber, plus the fixed families.
    let mut out = String::with_capacity(16 * 1024 + listed.len() * 12 * 80);
    for (name, bytes, help) in [
        (
            "quid_subscriber_bytes_total",
            true,
            "IP-layer bytes per subscriber, direction and class (subscriber=\"other\": every interval of the subscribers without a series of their own then).",
        ),
        (
            "quid_subscriber_packets_total",
            false,
            "Packets per subscriber, direction and class (subscriber=\"other\": every interval of the subscribers without a series of their own then).",
        ),
    ] {
        header(&mut out, name, "counter", help);
        let mut labels = String::new();
        for (r, v) in listed.iter().zip(&values) {
            labels.clear();
            labels.push_str("subscriber=\"");
            escape(&r.id, &mut labels);
            labels.push_str("\",");
            figure_pairs(&mut out, name, &labels, v, bytes);
        }
        if let Some(o) = &other {
            figure_pairs(&mut out, name, "subscriber=\"other\",", o, bytes);
        }
    }

    // Balances for the same listed subscribers; `other` holds the rest. One lookup per listed
    // subscriber; the totals come from one pass over each map.
    let balances: Vec<i64> = listed
        .iter()
        .map(|r| status.balances.get(&r.id).copied().unwrap_or(0))
        .collect();
    let unlisted = other.is_some();
    header(
        &mut out,
        "quid_subscriber_balance_credits",
        "gauge",
        "Balance in credits (the ledger's entries summed; negative: in deficit).",
    );
    let mut label = String::new();
    for (r, balance) in listed.iter().zip(&balances) {
        label.clear();
        escape(&r.id, &mut label);
        let _ = writeln!(
            out,
            "quid_subscriber_balance_credits{{subscriber=\"{label}\"}} {}",
            crate::ledger::chain::credits(*balance)
        );
    }
    if unlisted {
        // i128: the sum of any number of i64 balances a store can hold is exact.
        let all_balance: i128 = status.balances.values().map(|&b| i128::from(b)).sum();
        let listed_sum: i128 = balances.iter().map(|&b| i128::from(b)).sum();
        let _ = writeln!(
            out,
            "quid_subscriber_balance_credits{{subscriber=\"other\"}} {}",
            crate::ledger::chain::credits_wide(all_balance - listed_sum)
        );
    }
    header(
        &mut out,
        "quid_subscriber_pending_debit_credits",
        "gauge",
        "Usage debit not yet settled into the ledger (zero or negative; balance plus this is \
         the balance after the next settlement).",
    );
    let pending = |id: &str| status.pending.get(id).copied().unwrap_or(0);
    for r in &listed {
        label.clear();
        escape(&r.id, &mut label);
        let _ = writeln!(
            out,
            "quid_subscriber_pending_debit_credits{{subscriber=\"{label}\"}} {}",
            crate::ledger::chain::credits(pending(&r.id))
        );
    }
    if unlisted {
        // i128: exact whatever the number of subscribers.
        let all: i128 = status.pending.values().map(|&p| i128::from(p)).sum();
        let listed_sum: i128 = listed.iter().map(|r| i128::from(pending(&r.id))).sum();
        let _ = writeln!(
            out,
            "quid_subscriber_pending_debit_credits{{subscriber=\"other\"}} {}",
            crate::ledger::chain::credits_wide(all - listed_sum)
        );
    }
    // Contributions are written as whole units: a floored running sum is still monotonic.
    for (i, name, help) in CONTRIBUTION_FAMILIES {
        header(&mut out, name, "counter", help);
        for (r, v) in listed.iter().zip(&values) {
            label.clear();
            escape(&r.id, &mut label);
            let _ = writeln!(
                out,
                "{name}{{subscriber=\"{label}\"}} {}",
                v[CONTRIBUTION + i]
            );
        }
        if let Some(o) = &other {
            let _ = writeln!(
                out,
                "{name}{{subscriber=\"other\"}} {}",
                o[CONTRIBUTION + i]
            );
        }
    }

    let plans = tally.plans();
    for (name, bytes, help) in [
        (
            "quid_plan_bytes_total",
            true,
            "IP-layer bytes per plan, direction and class (each interval counted to the plan the subscriber has at its end).",
        ),
        (
            "quid_plan_packets_total",
            false,
            "Packets per plan, direction and class (each interval counted to the plan the subscriber has at its end).",
        ),
    ] {
        header(&mut out, name, "counter", help);
        for (plan, p) in plans {
            let mut labels = String::from("plan=\"");
            escape(plan, &mut labels);
            labels.push_str("\",");
            figure_pairs(&mut out, name, &labels, &p.figures, bytes);
        }
    }
    header(
        &mut out,
        "quid_plan_subscribers",
        "gauge",
        "Subscribers per plan with traffic in the last interval (0 on the daemon's first).",
    );
    for (plan, p) in plans {
        let mut labels = String::new();
        escape(plan, &mut labels);
        let _ = writeln!(
            out,
            "quid_plan_subscribers{{plan=\"{labels}\"}} {}",
            p.active
        );
    }
    for (i, name, help) in PLAN_CONTRIBUTION_FAMILIES {
        header(&mut out, name, "counter", help);
        for (plan, p) in plans {
            let mut labels = String::new();
            escape(plan, &mut labels);
            let _ = writeln!(
                out,
                "{name}{{plan=\"{labels}\"}} {}",
                p.figures[CONTRIBUTION + i]
            );
        }
    }
    for (name, bytes, help) in [
        (
            "quid_traffic_bytes_total",
            true,
            "IP-layer bytes of all subscribers, per direction and class.",
        ),
        (
            "quid_traffic_packets_total",
            false,
            "Packets of all subscribers, per direction and class.",
        ),
    ] {
        header(&mut out, name, "counter", help);
        pairs(&mut out, name, "", &all, bytes);
    }
    for (name, bytes, help) in [
        (
            "quid_interface_bytes_total",
            true,
            "Bytes per interface and bucket (attributed and unknown: IP bytes; non_ip, malformed and pppoe_discovery: frame bytes).",
        ),
        (
            "quid_interface_packets_total",
            false,
            "Frames per interface and bucket; every frame is in exactly one bucket.",
        ),
    ] {
        header(&mut out, name, "counter", help);
        for i in interfaces {
            for (bucket, c) in [
                ("attributed", i.attributed),
                ("non_ip", i.non_ip),
                ("unknown", i.unknown),
                ("malformed", i.malformed),
                ("pppoe_discovery", i.pppoe_discovery),
            ] {
                let v = if bytes { c.bytes } else { c.packets };
                let mut iface = String::new();
                escape(&i.attachment.name, &mut iface);
                let _ = writeln!(
                    out,
                    "{name}{{interface=\"{iface}\",bucket=\"{bucket}\"}} {v}"
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Status;
    use quid_common::Counter;

    fn record(id: &str, plan: &str, up_bytes: u64) -> Record {
        let mut total = SubscriberCounters::default();
        total.pairs[pair_index(DIR_UPLOAD, CLASS_INTERNET)] = Counter {
            packets: up_bytes / 100,
            bytes: up_bytes,
        };
        Record {
            id: id.into(),
            name: String::new(),
            plan: plan.into(),
            prefixes: String::new(),
            slot: Some(0),
            status: Status::Active,
            last: SubscriberCounters::default(),
            total,
            // Unique per id, as the books' keys are.
            base: crate::store::Base {
                key: id
                    .bytes()
                    .fold(0i64, |k, b| k.wrapping_mul(131).wrapping_add(i64::from(b))),
                ..crate::store::Base::default()
            },
        }
    }

    fn value(text: &str, series: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    /// A status with every optional part present and non-zero.
    fn busy_status() -> DaemonStatus {
        use std::sync::{Arc, atomic::Ordering::Relaxed};
        let http = Arc::new(crate::http::serve::ListenerStats::default());
        http.open.store(2, Relaxed);
        http.accepted.store(40, Relaxed);
        http.tls_failed.store(3, Relaxed);
        http.timed_out.store(1, Relaxed);
        let operator = crate::http::operator::Counts::default();
        operator.lock().unwrap().insert(("reload", "ok"), 5);
        let mut reports = crate::settlement::intake::Counts::default();
        reports.outcomes.insert("accepted", 7);
        reports.rejections.insert("bad_signature", 2);
        DaemonStatus {
            maps: vec![("SUB_V4", 10, 100), ("SUB_V6", 3, 50)],
            generation: 1,
            reloads_ok: 4,
            reloads_failed: 1,
            last_reload_ok: true,
            attachments: vec![("eth0".into(), "downstream".into(), "native".into(), true)],
            reports: Some(reports),
            audits: None,
            balances: [("s1".to_string(), -1_500_000)].into(),
            pending: [("s1".to_string(), -250_000)].into(),
            bad_balances: 1,
            contributions: [("s1".to_string(), [1.5, 2.0, 3.0])].into(),
            reattachments: 2,
            commit_failures: 3,
            store_bytes: 8192,
            store_rows: vec![("interval", 5), ("hourly", 1), ("daily", 0)],
            rollup_lag: 0,
            http: vec![("metrics", http)],
            operator: Some(operator),
            anchor: crate::metrics::status::LedgerAnchor {
                head_seq: 751,
                checkpoint: Some((700, 1_796_000_000)),
            },
            cluster: Some(std::sync::Arc::new(crate::cluster::stats::ShipStats {
                router: "pop-1".into(),
                outbox_batches: 3.into(),
                outbox_rows: 120.into(),
                sealed_until: 1_796_000_060.into(),
                shipped_until: 1_796_000_000.into(),
                shipped_batches: 40.into(),
                failures: 2.into(),
                ..Default::default()
            })),
            bindings: Some({
                use crate::bindings::request::{BindingSource, Outcome};
                let mut c = crate::bindings::counts::BindingCounts::default();
                for _ in 0..3 {
                    c.count(BindingSource::Radius, Outcome::Bound);
                }
                c.count(BindingSource::Dhcp, Outcome::UnknownSubscriber);
                c.active.insert(BindingSource::Radius, 2);
                c
            }),
            radius: Some({
                let c = std::sync::Arc::new(crate::radius::outcome::Counts::default());
                c.add(crate::radius::outcome::Outcome::BadAuthenticator);
                c
            }),
            dhcp: None,
            accounting_out: Some({
                let c =
                    std::sync::Arc::new(crate::radius::accounting_out::outcome::Counts::default());
                c.add(crate::radius::accounting_out::outcome::Outcome::Accepted);
                c
            }),
        }
    }

    #[test]
    fn the_renderer_kept_for_the_daemons_life_renders_the_same_books_the_same() {
        let recs: Vec<Record> = (1..=4)
            .map(|i| record(&format!("s{i}"), "home", i * 1000))
            .collect();
        let refs: Vec<&Record> = recs.iter().collect();
        let status = busy_status();
        let mut exposition = Exposition::new();
        let first = exposition.render(&refs, &[], &status, SubscriberSeries::Top(2));
        // Counters are brought to their totals, never counted twice.
        assert_eq!(
            exposition.render(&refs, &[], &status, SubscriberSeries::Top(2)),
            first
        );
        assert_eq!(
            Exposition::new().render(&refs, &[], &status, SubscriberSeries::Top(2)),
            first
        );
        for series in [
            "quid_reports_total{outcome=\"accepted\"} 7",
            "quid_http_connections_total{listener=\"metrics\",outcome=\"accepted\"} 40",
            "quid_operator_requests_total{action=\"reload\",outcome=\"ok\"} 5",
            "quid_table_reloads_total{result=\"ok\"} 4",
            // s1 is outside the top 2: its pending debit is in `other`.
            "quid_subscriber_pending_debit_credits{subscriber=\"other\"} -0.250000",
            "quid_subscriber_pending_debit_credits{subscriber=\"s4\"} 0.000000",
            "quid_ledger_head_seq 751",
            "quid_ledger_checkpoint_seq 700",
            "quid_ledger_checkpoint_timestamp_seconds 1796000000",
            "quid_binding_events_total{outcome=\"bound\",source=\"radius\"} 3",
            "quid_binding_events_total{outcome=\"unknown_subscriber\",source=\"dhcp\"} 1",
            // Every outcome has its series from the start.
            "quid_binding_events_total{outcome=\"conflicts_with_table\",source=\"dhcp\"} 0",
            "quid_bindings_active{source=\"radius\"} 2",
            "quid_radius_requests_total{outcome=\"bad_authenticator\"} 1",
            "quid_radius_requests_total{outcome=\"applied\"} 0",
            "quid_radius_accounting_out_total{outcome=\"accepted\"} 1",
            "quid_radius_accounting_out_total{outcome=\"gave_up\"} 0",
        ] {
            assert!(first.contains(series), "no {series} in\n{first}");
        }
    }

    #[test]
    fn contributions_are_summed_per_plan_in_whole_units_and_every_plan_has_them() {
        let recs = [record("a", "home", 0), record("b", "biz", 0)];
        let refs: Vec<&Record> = recs.iter().collect();
        let mut status = DaemonStatus::default();
        status.contributions.insert("a".into(), [3600.9, 2e9, 7.5]);
        let text = Exposition::new().render(&refs, &[], &status, SubscriberSeries::All);
        for (series, v) in [
            (
                "quid_plan_contribution_cpu_seconds_total{plan=\"home\"}",
                3600,
            ),
            (
                "quid_plan_contribution_storage_byte_seconds_total{plan=\"home\"}",
                2_000_000_000,
            ),
            (
                "quid_plan_contribution_energy_joules_total{plan=\"home\"}",
                7,
            ),
            // A plan nobody contributes in has its series, at zero.
            ("quid_plan_contribution_cpu_seconds_total{plan=\"biz\"}", 0),
        ] {
            assert_eq!(value(&text, series), v, "{series}");
        }
    }

    /// `other` and a plan through a change of the top N and a plan change: never down, and
    /// the steps add up to the traffic.
    #[test]
    fn other_and_plans_only_go_up_when_the_top_n_and_plans_change() {
        let mut recs: Vec<Record> = (1..=4)
            .map(|i| record(&format!("s{i}"), "home", i * 1000))
            .collect();
        let status = DaemonStatus::default();
        let mut exposition = Exposition::new();
        let key = |s: &str| {
            format!(
                "quid_subscriber_bytes_total{{subscriber=\"{s}\",direction=\"upload\",class=\"internet\"}}"
            )
        };
        let plan = |p: &str| {
            format!("quid_plan_bytes_total{{plan=\"{p}\",direction=\"upload\",class=\"internet\"}}")
        };
        let render = |e: &mut Exposition, recs: &[Record]| {
            let refs: Vec<&Record> = recs.iter().collect();
            e.render(&refs, &[], &status, SubscriberSeries::Top(1))
        };
        let first = render(&mut exposition, &recs);
        assert_eq!(value(&first, &key("s4")), 4000);
        assert_eq!(value(&first, &key("other")), 6000);
        // s1 sends 5000 bytes and displaces s4; s4 moves to "biz" without traffic.
        recs[0].total.pairs[pair_index(DIR_UPLOAD, CLASS_INTERNET)].bytes += 5000;
        recs[3].plan = "biz".into();
        let second = render(&mut exposition, &recs);
        assert!(!second.contains("subscriber=\"s4\""));
        // s1's series appears at its lifetime total; its interval is in `other`.
        assert_eq!(value(&second, &key("s1")), 6000);
        assert_eq!(value(&second, &key("other")), 11_000);
        assert_eq!(value(&second, &plan("home")), 15_000);
        assert_eq!(value(&second, &plan("biz")), 0);
        assert_eq!(value(&second, "quid_plan_subscribers{plan=\"home\"}"), 1);
        assert_eq!(value(&second, "quid_plan_subscribers{plan=\"biz\"}"), 0);
        // s1 goes on: now in its own series.
        recs[0].total.pairs[pair_index(DIR_UPLOAD, CLASS_INTERNET)].bytes += 100;
        let third = render(&mut exposition, &recs);
        assert_eq!(value(&third, &key("s1")), 6100);
        assert_eq!(value(&third, &key("other")), 11_000);
    }

    #[test]
    fn top_n_plus_other_adds_up_to_the_aggregate() {
        let recs: Vec<Record> = (1..=10)
            .map(|i| record(&format!("s{i}"), "home", i * 1000))
            .collect();
        let refs: Vec<&Record> = recs.iter().collect();
        let text = Exposition::new().render(
            &refs,
            &[],
            &DaemonStatus::default(),
            SubscriberSeries::Top(3),
        );
        let key = |s: &str| {
            format!(
                "quid_subscriber_bytes_total{{subscriber=\"{s}\",direction=\"upload\",class=\"internet\"}}"
            )
        };
        let listed: u64 = ["s10", "s9", "s8"]
            .iter()
            .map(|s| value(&text, &key(s)))
            .sum();
        assert_eq!(listed, 27_000);
        assert!(!text.contains("subscriber=\"s7\""));
        let other = value(&text, &key("other"));
        let all = value(
            &text,
            "quid_traffic_bytes_total{direction=\"upload\",class=\"internet\"}",
        );
        assert_eq!((other, all), (28_000, 55_000));
        assert_eq!(listed + other, all);
    }

    #[test]
    fn label_values_are_escaped_and_never_become_names() {
        let recs = [record("a", "home \"gold\"\\\nplan", 5)];
        let refs: Vec<&Record> = recs.iter().collect();
        let text =
            Exposition::new().render(&refs, &[], &DaemonStatus::default(), SubscriberSeries::All);
        assert!(
            text.contains("quid_plan_subscribers{plan=\"home \\\"gold\\\"\\\\\\nplan\"} 0"),
            "{text}"
        );
    }
}
