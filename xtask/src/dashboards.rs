//! `cargo xtask dashboards`: the Grafana dashboards, their provisioning and the Prometheus
//! rules, generated from one definition of each query so panels and rules never drift apart.
//! The output is committed; the tests fail when regenerating would change it.

use std::path::Path;

use serde_json::{Value, json};

/// Recording rules the dashboards build on: (name, expression).
pub const RECORDING: [(&str, &str); 8] = [
    (
        "quid:contribution_cores:rate1h",
        "sum by (job, instance) (rate(quid_contribution_cpu_seconds_total[1h]))",
    ),
    (
        "quid:contribution_storage_bytes:rate1h",
        "sum by (job, instance) (rate(quid_contribution_storage_byte_seconds_total[1h]))",
    ),
    (
        "quid:contribution_watts:rate1h",
        "sum by (job, instance) (rate(quid_contribution_energy_joules_total[1h]))",
    ),
    (
        "quid:traffic_bits:rate1m",
        "sum by (job, instance, direction, class) (rate(quid_traffic_bytes_total[1m])) * 8",
    ),
    (
        "quid:plan_bits:rate1m",
        "sum by (job, instance, plan, direction) (rate(quid_plan_bytes_total[1m])) * 8",
    ),
    (
        "quid:download_bits:rate1m",
        "sum by (job, instance) (rate(quid_traffic_bytes_total{direction=\"download\"}[1m])) * 8",
    ),
    (
        // Download demand per contributed CPU core, counting at least one core: finite while
        // nothing is contributed (the whole demand then rests on one core's worth).
        "quid:download_bits_per_core:ratio",
        "quid:download_bits:rate1m / on (job, instance) clamp_min(quid:contribution_cores:rate1h, 1)",
    ),
    (
        "quid:unattributed_packets:ratio_rate5m",
        "sum by (job, instance) (rate(quid_interface_packets_total{bucket!=\"attributed\"}[5m])) / sum by (job, instance) (rate(quid_interface_packets_total[5m]))",
    ),
];

/// Alerts: (name, expression, for, severity, summary).
pub const ALERTS: [(&str, &str, &str, &str, &str); 19] = [
    (
        "QuidIntervalStale",
        "time() - quid_last_interval_timestamp_seconds > 300",
        "2m",
        "critical",
        "quid on {{ $labels.instance }} completed no interval for {{ $value | humanizeDuration }}: it answers scrapes with stale figures",
    ),
    (
        "QuidReportRejectionsHigh",
        "sum by (instance) (rate(quid_report_rejections_total[10m])) > 0.1",
        "15m",
        "warning",
        "{{ $value }} node reports a second refused on {{ $labels.instance }}: a misconfigured or forging node",
    ),
    (
        "QuidSubscriberBalanceLow",
        "quid_subscriber_balance_credits{subscriber!=\"other\"} < -100",
        "1h",
        "warning",
        "subscriber {{ $labels.subscriber }} is {{ $value }} credits in deficit",
    ),
    (
        "QuidDown",
        "up{job=\"quid\"} == 0",
        "2m",
        "critical",
        "quid on {{ $labels.instance }} is not answering scrapes: traffic may go uncounted",
    ),
    (
        "QuidProgramDetached",
        "quid_xdp_attached == 0",
        "1m",
        "critical",
        "quid's XDP program is not attached to {{ $labels.interface }} on {{ $labels.instance }}",
    ),
    (
        "QuidUnattributedTrafficHigh",
        "quid:unattributed_packets:ratio_rate5m > 0.05",
        "15m",
        "warning",
        "{{ $value | humanizePercentage }} of the frames on {{ $labels.instance }} belong to no subscriber",
    ),
    (
        "QuidMapNearCapacity",
        "quid_map_entries / quid_map_capacity > 0.9",
        "10m",
        "warning",
        "kernel map {{ $labels.map }} on {{ $labels.instance }} is over 90% full",
    ),
    (
        "QuidStoreCommitsFailing",
        "increase(quid_store_commit_failures_total[5m]) > 0",
        "5m",
        "critical",
        "quid on {{ $labels.instance }} cannot write its store (disk full or unwritable): counts wait in the kernel, reports are refused",
    ),
    (
        "QuidStoreDiskFilling",
        "quid_rollup_lag_seconds > 3600 or (predict_linear(quid_store_bytes[1d], 7 * 86400) > 2 * quid_store_bytes and on (instance, job) quid_store_rows{tier=\"daily\"} > 0)",
        "30m",
        "warning",
        "quid's store on {{ $labels.instance }} keeps growing: the usage roll-up is over an hour behind, or the file would double within a week at its rate of the last day",
    ),
    (
        "QuidLedgerCheckpointStale",
        "quid_ledger_checkpoint_timestamp_seconds > 0 and time() - quid_ledger_checkpoint_timestamp_seconds > 86400 and quid_ledger_head_seq > quid_ledger_checkpoint_seq",
        "30m",
        "warning",
        "quid on {{ $labels.instance }} has signed no ledger checkpoint for a day although the ledger moved: new entries are not anchored",
    ),
    (
        "QuidOperatorLoginFailures",
        "sum by (instance) (increase(quid_operator_requests_total{outcome=~\"missing_credential|bad_credential\"}[10m])) > 5",
        "0m",
        "warning",
        "{{ $value }} operator API requests without a valid token on {{ $labels.instance }} in 10 minutes",
    ),
    (
        "QuidHttpConnectionsRefused",
        "sum by (instance, listener) (rate(quid_http_connections_total{outcome=~\"refused_.*\"}[5m])) > 1",
        "10m",
        "warning",
        "the {{ $labels.listener }} listener on {{ $labels.instance }} refuses connections (full or one address flooding)",
    ),
    (
        "QuidClusterShippingLag",
        "quid_cluster_shipping_lag_seconds > 600",
        "5m",
        "warning",
        "router {{ $labels.router }} ({{ $labels.instance }}) is {{ $value | humanizeDuration }} behind in shipping its books to the shared store: fleet balances and settlement wait for it",
    ),
    (
        "QuidClusterDatabaseUnreachable",
        "quid_cluster_database_up == 0",
        "10m",
        "warning",
        "router {{ $labels.router }} ({{ $labels.instance }}) cannot reach the shared store: it keeps counting into its outbox",
    ),
    (
        "QuidInterfaceReattached",
        "increase(quid_xdp_reattachments_total[15m]) > 0",
        "0m",
        "info",
        "an interface on {{ $labels.instance }} was deleted and created again; quid re-attached to it",
    ),
    (
        "QuidTableReloadFailed",
        "quid_table_last_reload_success == 0",
        "5m",
        "warning",
        "the last subscriber table reload on {{ $labels.instance }} was refused",
    ),
    (
        "QuidBillingAccountingFailing",
        "sum by (instance) (increase(quid_radius_accounting_out_total{outcome=\"gave_up\"}[30m])) > 0",
        "30m",
        "warning",
        "quid on {{ $labels.instance }} gave up on {{ $value }} accounting requests to the billing server in 30 minutes: billing is behind",
    ),
    (
        "QuidRadiusForgedRequests",
        "sum by (instance) (rate(quid_radius_requests_total{outcome=~\"bad_authenticator|bad_message_authenticator|unknown_client\"}[10m])) > 0.1",
        "15m",
        "warning",
        "{{ $value }} RADIUS accounting requests a second on {{ $labels.instance }} fail their authenticator or come from an unknown client",
    ),
    (
        "QuidNodeAuditDisqualified",
        "max by (instance, node) (quid_audit_disqualified) == 1",
        "5m",
        "warning",
        "node {{ $labels.node }} failed enough storage audits to be disqualified: it earns no storage credit",
    ),
];

/// One panel: kind, title, description, unit, its queries (expression, legend), and what a
/// stat panel colours.
struct Panel {
    kind: &'static str,
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    queries: Vec<(&'static str, &'static str)>,
    /// Threshold steps (from, colour) after the base colour; the base is green unless the
    /// first step starts the scale at zero.
    thresholds: Vec<(f64, &'static str)>,
    /// Base colour of the thresholds.
    base: &'static str,
    /// Data links from the panel's series.
    links: Vec<Value>,
    /// What the panel says when a query returns nothing (by design, e.g. too little history).
    no_value: Option<&'static str>,
}

impl Panel {
    /// Colours from `base` up, changing at each (value, colour).
    fn colours(mut self, base: &'static str, steps: &[(f64, &'static str)]) -> Panel {
        self.base = base;
        self.thresholds = steps.to_vec();
        self
    }

    fn link(mut self, title: &str, url: &str) -> Panel {
        self.links.push(json!({"title": title, "url": url}));
        self
    }

    fn no_value(mut self, text: &'static str) -> Panel {
        self.no_value = Some(text);
        self
    }
}

fn panel(
    kind: &'static str,
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    queries: Vec<(&'static str, &'static str)>,
) -> Panel {
    Panel {
        kind,
        title,
        description,
        unit,
        queries,
        thresholds: Vec::new(),
        base: "green",
        links: Vec::new(),
        no_value: None,
    }
}

fn ts(
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    queries: Vec<(&'static str, &'static str)>,
) -> Panel {
    panel("timeseries", title, description, unit, queries)
}

fn stat(
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    queries: Vec<(&'static str, &'static str)>,
) -> Panel {
    panel("stat", title, description, unit, queries)
}

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// The matchers every series selector gets, so the `job` and `instance` variables apply.
const SCOPE: &str = "job=~\"$job\",instance=~\"$instance\"";

/// `expr` with [`SCOPE`] added to every selector of a quid metric, a recording rule or `up`.
fn scoped(expr: &str) -> String {
    let b = expr.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = String::with_capacity(expr.len() + 64);
    let mut i = 0;
    let mut in_string = false;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            in_string = !in_string;
        }
        let starts = !in_string && word(c) && (i == 0 || !word(b[i - 1]));
        if !starts {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        let end = (i..b.len()).find(|&j| !word(b[j])).unwrap_or(b.len());
        let name = &expr[i..end];
        out.push_str(name);
        let metric = name.starts_with("quid_") || name.starts_with("quid:") || name == "up";
        if metric && b.get(end) == Some(&b'{') {
            out.push('{');
            out.push_str(SCOPE);
            out.push(',');
            i = end + 1;
        } else {
            if metric && b.get(end) != Some(&b'(') {
                out.push('{');
                out.push_str(SCOPE);
                out.push('}');
            }
            i = end;
        }
    }
    out
}

/// Places panels left to right without holes: consecutive stat panels share rows of up to
/// four (4 high), graphs go two a row (8 high), a graph alone in its row takes the width.
fn layout(kinds: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut y = 0;
    let mut i = 0;
    while i < kinds.len() {
        let stat = kinds[i] == "stat";
        let run = kinds[i..]
            .iter()
            .take_while(|k| (**k == "stat") == stat)
            .count();
        let (per_row, h) = if stat { (4, 4) } else { (2, 8) };
        let rows = run.div_ceil(per_row);
        let mut left = run;
        for r in 0..rows {
            let n = left.div_ceil(rows - r);
            let w = 24 / n;
            for k in 0..n {
                out.push(json!({"x": k * w, "y": y, "w": w, "h": h}));
            }
            left -= n;
            y += h;
        }
        i += run;
    }
    out
}

fn dashboard(
    uid: &str,
    title: &str,
    description: &str,
    extra_vars: Vec<Value>,
    panels: Vec<Panel>,
) -> Value {
    let mut vars = vec![
        json!({
            "name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0
        }),
        json!({
            "name": "job", "label": "Job", "type": "query", "datasource": datasource(),
            "query": "label_values(quid_build_info, job)", "refresh": 2,
            "current": {"text": "quid", "value": "quid"}, "hide": 0
        }),
        json!({
            "name": "instance", "label": "Router", "type": "query", "datasource": datasource(),
            "query": "label_values(quid_build_info{job=~\"$job\"}, instance)", "refresh": 2,
            "multi": true, "includeAll": true, "allValue": ".*",
            "current": {"text": "All", "value": "$__all"}, "hide": 0
        }),
    ];
    vars.extend(extra_vars);
    let places = layout(&panels.iter().map(|p| p.kind).collect::<Vec<_>>());
    let panels: Vec<Value> = panels
        .into_iter()
        .zip(places)
        .enumerate()
        .map(|(i, (p, place))| {
            let targets: Vec<Value> = p
                .queries
                .iter()
                // refIds A, B, ...: no panel has anywhere near 26 queries.
                .zip('A'..='Z')
                .map(|((expr, legend), ref_id)| {
                    json!({"refId": ref_id.to_string(), "expr": scoped(expr),
                           "legendFormat": legend, "datasource": datasource()})
                })
                .collect();
            let mut steps = vec![json!({"color": p.base, "value": null})];
            steps.extend(
                p.thresholds
                    .iter()
                    .map(|(v, c)| json!({"color": c, "value": v})),
            );
            let mut defaults = json!({
                "unit": p.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "links": p.links,
            });
            if let Some(text) = p.no_value {
                defaults["noValue"] = json!(text);
            }
            let mut v = json!({
                "id": i + 1, "type": p.kind, "title": p.title, "description": p.description,
                "datasource": datasource(), "gridPos": place,
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "targets": targets
            });
            if p.kind == "stat" {
                v["options"] = json!({"colorMode": "background", "graphMode": "none",
                                      "reduceOptions": {"calcs": ["lastNotNull"]}});
            }
            v
        })
        .collect();
    json!({
        "uid": uid, "title": title, "description": description, "tags": ["quid"],
        "schemaVersion": 39, "version": 1, "editable": true, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "links": [{"type": "dashboards", "tags": ["quid"], "asDropdown": false,
                   "title": "quid dashboards", "includeVars": true, "keepTime": true}],
        "templating": {"list": vars},
        "panels": panels
    })
}

/// Opens the subscriber dashboard on the clicked series' subscriber, same router and time.
const SUBSCRIBER_LINK: &str = "/d/quid-subscriber/quid-subscriber?var-subscriber=${__field.labels.subscriber}&${datasource:queryparam}&${job:queryparam}&${instance:queryparam}&${__url_time_range}";

fn noc() -> Value {
    dashboard(
        "quid-noc",
        "quid / NOC overview",
        "Traffic by direction and class, top subscribers, unattributed traffic and daemon health per router.",
        vec![],
        vec![
            stat(
                "Daemons up",
                "quid daemons Prometheus scrapes successfully; red when none answers (QuidDown).",
                "none",
                vec![("sum(up)", "up")],
            )
            .colours("red", &[(1.0, "green")]),
            stat(
                "XDP attachments",
                "Interfaces with quid's XDP program attached, per router; red at 0: traffic there goes uncounted (QuidProgramDetached).",
                "none",
                vec![("sum by (instance) (quid_xdp_attached)", "{{instance}}")],
            )
            .colours("red", &[(1.0, "green")]),
            stat(
                "Seconds since the last interval",
                "Age of the newest completed interval (read and committed); beyond a few intervals the loop is stalled and every figure is stale (QuidIntervalStale).",
                "s",
                vec![(
                    "max by (instance) (time() - quid_last_interval_timestamp_seconds)",
                    "{{instance}}",
                )],
            )
            .colours("green", &[(60.0, "orange"), (300.0, "red")]),
            stat(
                "Last table reload applied",
                "1 when the last subscriber table edit was applied on every router; 0 (red) when one was refused and the previous table still counts.",
                "bool",
                vec![("min(quid_table_last_reload_success)", "ok")],
            )
            .colours("red", &[(1.0, "green")]),
            stat(
                "Active subscribers",
                "Subscribers in the installed tables (removed ones whose books are kept are not counted).",
                "short",
                vec![("sum(quid_subscribers{state=\"active\"})", "active")],
            )
            .colours("blue", &[]),
            stat(
                "Subscribers in deficit",
                "Listed subscribers with a negative balance (the top N only under metrics.subscribers = \"top:N\").",
                "short",
                vec![(
                    "count(quid_subscriber_balance_credits{subscriber!=\"other\"} < 0) or vector(0)",
                    "in deficit",
                )],
            )
            .colours("green", &[(1.0, "orange")]),
            stat(
                "Store commit failures (1h)",
                "Interval commits that failed in the last hour (disk full, store unwritable); the kernel keeps counting meanwhile.",
                "short",
                vec![(
                    "sum(increase(quid_store_commit_failures_total[1h]))",
                    "failures",
                )],
            )
            .colours("green", &[(1.0, "red")]),
            stat(
                "Kernel map fill (max)",
                "The fullest kernel map on any router; QuidMapNearCapacity fires above 90%.",
                "percentunit",
                vec![("max(quid_map_entries / quid_map_capacity)", "fill")],
            )
            .colours("green", &[(0.75, "orange"), (0.9, "red")]),
            ts(
                "Traffic by direction and class",
                "IP-layer traffic of all subscribers in bits per second, by direction and by class (internet or grid).",
                "bps",
                vec![(
                    "sum by (direction, class) (quid:traffic_bits:rate1m)",
                    "{{direction}} {{class}}",
                )],
            ),
            ts(
                "Top 10 subscribers",
                "The ten listed subscribers with the most traffic (both directions); click a series for its subscriber dashboard.",
                "bps",
                vec![(
                    "topk(10, sum by (subscriber) (rate(quid_subscriber_bytes_total{subscriber!=\"other\"}[$__rate_interval])) * 8)",
                    "{{subscriber}}",
                )],
            )
            .link("Subscriber dashboard", SUBSCRIBER_LINK),
            ts(
                "Throughput by interface",
                "Every frame on each attached interface (uplinks and access), in bits per second, whether it belongs to a subscriber or not.",
                "bps",
                vec![(
                    "sum by (instance, interface) (rate(quid_interface_bytes_total[$__rate_interval])) * 8",
                    "{{instance}} {{interface}}",
                )],
            ),
            ts(
                "Unattributed frames by interface and bucket",
                "Frames that belong to no subscriber: unknown addresses, non-IP (PPP control included), malformed and PPPoE discovery frames, per interface.",
                "pps",
                vec![(
                    "sum by (instance, interface, bucket) (rate(quid_interface_packets_total{bucket!=\"attributed\"}[$__rate_interval]))",
                    "{{instance}} {{interface}} {{bucket}}",
                )],
            ),
            ts(
                "Unattributed share of frames",
                "Share of frames that belong to no subscriber over 5 minutes; QuidUnattributedTrafficHigh fires above 5%.",
                "percentunit",
                vec![("quid:unattributed_packets:ratio_rate5m", "{{instance}}")],
            ),
            ts(
                "Counter read and commit time (p99)",
                "99th percentile of the time each interval takes to read every counter and to commit the usage records.",
                "s",
                vec![
                    (
                        "histogram_quantile(0.99, sum by (instance, le) (rate(quid_read_duration_seconds_bucket[$__rate_interval])))",
                        "read {{instance}}",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (instance, le) (rate(quid_commit_duration_seconds_bucket[$__rate_interval])))",
                        "commit {{instance}}",
                    ),
                ],
            ),
            ts(
                "Kernel map fill",
                "Entries in use against capacity for each kernel map (hash, trie, direct pools, counters).",
                "percentunit",
                vec![(
                    "quid_map_entries / quid_map_capacity",
                    "{{instance}} {{map}}",
                )],
            ),
            ts(
                "Report outcomes",
                "Node contribution reports per second by outcome.",
                "reqps",
                vec![(
                    "sum by (outcome) (rate(quid_reports_total[$__rate_interval]))",
                    "{{outcome}}",
                )],
            ),
            ts(
                "Report rejections by reason",
                "Refused node reports per interval by reason (bad_signature, stale_sequence, exceeds_capacity, ...).",
                "short",
                vec![(
                    "sum by (reason) (increase(quid_report_rejections_total[$__rate_interval]))",
                    "{{reason}}",
                )],
            ),
            ts(
                "HTTP connections refused or timed out",
                "Connections the HTTP listeners closed at once (full, per address, failed TLS) and requests that timed out.",
                "short",
                vec![
                    (
                        "sum by (listener, outcome) (increase(quid_http_connections_total{outcome!=\"accepted\"}[$__rate_interval]))",
                        "{{listener}} {{outcome}}",
                    ),
                    (
                        "sum by (listener) (increase(quid_http_requests_timed_out_total[$__rate_interval]))",
                        "{{listener}} timed out",
                    ),
                ],
            ),
            ts(
                "Store file size",
                "Size of the store file (pages in use and free).",
                "bytes",
                vec![("quid_store_bytes", "{{instance}}")],
            ),
            ts(
                "Usage rows by tier",
                "Usage rows per resolution tier (interval, hourly, daily); steady once every tier is within its retention.",
                "short",
                vec![("quid_store_rows", "{{instance}} {{tier}}")],
            ),
            ts(
                "Usage roll-up lag",
                "How far the usage roll-up is behind its retention (0: on time); QuidStoreDiskFilling fires beyond an hour.",
                "s",
                vec![("quid_rollup_lag_seconds", "{{instance}}")],
            ),
            ts(
                "Live address bindings by source",
                "Sessions whose addresses RADIUS accounting or DHCP leases bind to subscribers now, per router and source (docs/integrating.md).",
                "short",
                vec![(
                    "sum by (instance, source) (quid_bindings_active)",
                    "{{instance}} {{source}}",
                )],
            ),
            ts(
                "Binding events by outcome",
                "Bind and release events per interval by source and outcome; refusals (unknown_subscriber, conflicts_with_table, ...) change nothing and are logged.",
                "short",
                vec![(
                    "sum by (source, outcome) (increase(quid_binding_events_total[$__rate_interval]))",
                    "{{source}} {{outcome}}",
                )],
            ),
            ts(
                "RADIUS accounting requests by outcome",
                "Accounting requests from the NASes per second by outcome; bad authenticators and unknown clients change nothing (QuidRadiusForgedRequests).",
                "reqps",
                vec![(
                    "sum by (instance, outcome) (rate(quid_radius_requests_total[$__rate_interval]))",
                    "{{instance}} {{outcome}}",
                )],
            ),
            ts(
                "Accounting to billing by outcome",
                "Requests quid sends to the billing server's RADIUS accounting per second: sent, retransmitted, accepted, given up (QuidBillingAccountingFailing).",
                "reqps",
                vec![(
                    "sum by (instance, outcome) (rate(quid_radius_accounting_out_total[$__rate_interval]))",
                    "{{instance}} {{outcome}}",
                )],
            ),
            ts(
                "DHCP leases without a subscriber",
                "Active Kea leases that no row of the DHCP mapping file names (their traffic is unattributed), and lease lines skipped as unreadable per interval.",
                "short",
                vec![
                    ("quid_dhcp_leases_unmapped", "unmapped {{instance}}"),
                    (
                        "increase(quid_dhcp_lease_lines_skipped_total[$__rate_interval])",
                        "skipped lines {{instance}}",
                    ),
                ],
            ),
            ts(
                "Storage audits by outcome",
                "Storage audits of the nodes per interval by outcome (passed or failed; an unanswered challenge fails at its deadline); a node whose score falls below 0.96 earns no storage credit. A node's series start with its first audit: before any, the panel shows 0.",
                "short",
                vec![(
                    "sum by (outcome) (increase(quid_audits_total[$__rate_interval])) or vector(0)",
                    "{{outcome}}",
                )],
            ),
            stat(
                "Nodes disqualified by audits",
                "Nodes whose storage audit score fell below 0.96 (QuidNodeAuditDisqualified): they earn no storage credit until it recovers.",
                "short",
                vec![(
                    "sum(quid_audit_disqualified) or vector(0)",
                    "disqualified",
                )],
            )
            .colours("green", &[(1.0, "orange")]),
        ],
    )
}

/// Several routers shipping to one shared store (docs/many-routers.md): each router's shipping
/// and its traffic beside the fleet's.
fn many_routers() -> Value {
    dashboard(
        "quid-many-routers",
        "quid / Many routers",
        "Routers shipping their books to the shared store: reachability, outbox, lag and rows shipped per router, and each router's traffic beside the fleet's. Empty for a router without [store] url.",
        vec![json!({
            "name": "router", "label": "Router id", "type": "query", "datasource": datasource(),
            "query": "label_values(quid_cluster_database_up{job=~\"$job\",instance=~\"$instance\"}, router)",
            "refresh": 2, "multi": true, "includeAll": true, "allValue": ".*",
            "current": {"text": "All", "value": "$__all"}, "hide": 0
        })],
        vec![
            stat(
                "Routers reaching the shared store",
                "Routers whose shipper reached the database at its last attempt; fewer than the routers shipping means some count into their outbox only (QuidClusterDatabaseUnreachable).",
                "short",
                vec![(
                    "sum(quid_cluster_database_up{router=~\"$router\"})",
                    "reachable",
                )],
            )
            .colours("red", &[(1.0, "green")]),
            stat(
                "Largest shipping lag",
                "Seconds of sealed usage the shared store does not have yet, on the router furthest behind; fleet figures for it are that late (QuidClusterShippingLag at ten minutes).",
                "s",
                vec![(
                    "max(quid_cluster_shipping_lag_seconds{router=~\"$router\"})",
                    "lag",
                )],
            )
            .colours("green", &[(60.0, "orange"), (600.0, "red")]),
            ts(
                "Shipping lag by router",
                "Seconds of each router's sealed usage not yet in the shared store: a router rising while others stay flat has lost its link or its shipments are refused (see its log).",
                "s",
                vec![(
                    "max by (router) (quid_cluster_shipping_lag_seconds{router=~\"$router\"})",
                    "{{router}}",
                )],
            ),
            ts(
                "Outbox by router",
                "Sealed batches waiting in each router's local store (one per interval while the database is away; they drain oldest first when it is back).",
                "short",
                vec![(
                    "sum by (router) (quid_cluster_outbox_batches{router=~\"$router\"})",
                    "{{router}}",
                )],
            ),
            ts(
                "Usage rows shipped by router",
                "Rows (one per subscriber and hour per shipment) each router ships per second; a catch-up after an outage shows as a burst.",
                "short",
                vec![(
                    "sum by (router) (rate(quid_cluster_shipped_total{kind=\"usage_rows\",router=~\"$router\"}[$__rate_interval]))",
                    "{{router}}",
                )],
            ),
            ts(
                "Traffic per router and for the fleet",
                "Bits per second over every attached interface, per router (instance) and summed over the fleet.",
                "bps",
                vec![
                    (
                        "sum by (instance) (rate(quid_interface_bytes_total[$__rate_interval])) * 8",
                        "{{instance}}",
                    ),
                    (
                        "sum(rate(quid_interface_bytes_total[$__rate_interval])) * 8",
                        "fleet",
                    ),
                ],
            ),
        ],
    )
}

fn subscriber() -> Value {
    dashboard(
        "quid-subscriber",
        "quid / Subscriber",
        "One subscriber's traffic by direction and class, and its running totals. Only subscribers with series of their own are offered (all, or the top N of metrics.subscribers).",
        vec![json!({
            "name": "subscriber", "label": "Subscriber", "type": "query", "datasource": datasource(),
            "query": "label_values(quid_subscriber_bytes_total{job=~\"$job\",instance=~\"$instance\"}, subscriber)",
            "refresh": 2, "current": {}, "hide": 0
        })],
        vec![
            stat(
                "Bytes since the series started",
                "The subscriber's series by direction: its lifetime bytes when it first got a series (a subscriber that left the top N resumes where it left).",
                "bytes",
                vec![(
                    "sum by (direction) (quid_subscriber_bytes_total{subscriber=\"$subscriber\"})",
                    "{{direction}}",
                )],
            )
            .colours("blue", &[]),
            stat(
                "Balance",
                "Balance in credits after the pending (not yet settled) usage debit; red below zero.",
                "none",
                vec![(
                    "sum(quid_subscriber_balance_credits{subscriber=\"$subscriber\"} + quid_subscriber_pending_debit_credits{subscriber=\"$subscriber\"})",
                    "balance",
                )],
            )
            .colours("red", &[(0.0, "green")]),
            ts(
                "Traffic",
                "The subscriber's IP-layer traffic in bits per second by direction and class.",
                "bps",
                vec![(
                    "sum by (direction, class) (rate(quid_subscriber_bytes_total{subscriber=\"$subscriber\"}[$__rate_interval])) * 8",
                    "{{direction}} {{class}}",
                )],
            ),
            ts(
                "Packets",
                "The subscriber's packets per second by direction.",
                "pps",
                vec![(
                    "sum by (direction) (rate(quid_subscriber_packets_total{subscriber=\"$subscriber\"}[$__rate_interval]))",
                    "{{direction}}",
                )],
            ),
            ts(
                "Contributed CPU cores",
                "CPU cores the subscriber's nodes supplied, from settled reports (averaged over an hour: reports settle in lumps).",
                "short",
                vec![(
                    "sum(rate(quid_contribution_cpu_seconds_total{subscriber=\"$subscriber\"}[1h]))",
                    "cores",
                )],
            ),
            ts(
                "Contributed storage",
                "Storage the subscriber's nodes supplied, from settled reports (averaged over an hour).",
                "bytes",
                vec![(
                    "sum(rate(quid_contribution_storage_byte_seconds_total{subscriber=\"$subscriber\"}[1h]))",
                    "storage",
                )],
            ),
            ts(
                "Contributed power",
                "Power the subscriber's nodes supplied, from settled reports (averaged over an hour).",
                "watt",
                vec![(
                    "sum(rate(quid_contribution_energy_joules_total{subscriber=\"$subscriber\"}[1h]))",
                    "power",
                )],
            ),
            ts(
                "Balance over time",
                "Balance in credits, the pending usage debit that settles at the period's end, and the balance after it.",
                "none",
                vec![
                    (
                        "sum(quid_subscriber_balance_credits{subscriber=\"$subscriber\"})",
                        "balance",
                    ),
                    (
                        "sum(quid_subscriber_pending_debit_credits{subscriber=\"$subscriber\"})",
                        "pending debit (settles at the period's end)",
                    ),
                    (
                        "sum(quid_subscriber_balance_credits{subscriber=\"$subscriber\"} + quid_subscriber_pending_debit_credits{subscriber=\"$subscriber\"})",
                        "balance after pending",
                    ),
                ],
            ),
        ],
    )
}

fn capacity() -> Value {
    dashboard(
        "quid-capacity",
        "quid / Capacity planning",
        "Bandwidth demand over time and by plan against contributed supply, its 95th percentile, and a linear forecast of when demand outgrows supply.",
        vec![],
        vec![
            ts(
                "Demand by direction",
                "Traffic of all subscribers in bits per second by direction.",
                "bps",
                vec![(
                    "sum by (direction) (quid:traffic_bits:rate1m)",
                    "{{direction}}",
                )],
            ),
            ts(
                "Demand by plan",
                "Traffic per plan and direction; a subscriber's traffic counts to the plan it had when it was metered.",
                "bps",
                vec![(
                    "sum by (plan, direction) (quid:plan_bits:rate1m)",
                    "{{plan}} {{direction}}",
                )],
            ),
            ts(
                "Download, 95th percentile over the last day",
                "95th percentile of the download rate over the preceding day.",
                "bps",
                vec![(
                    "sum(quantile_over_time(0.95, quid:download_bits:rate1m[1d]))",
                    "p95",
                )],
            ),
            ts(
                "Download forecast for 30 days later",
                "At each point, the download rate a linear fit of the preceding week predicts for 30 days later; shown only once a week of history exists (a fit over minutes extrapolates noise).",
                "bps",
                vec![(
                    "sum(predict_linear(quid:download_bits:rate1m[7d], 30 * 86400) and quid:download_bits:rate1m offset 7d)",
                    "forecast",
                )],
            )
            .no_value("needs a week of history"),
            ts(
                "Subscribers with traffic by plan",
                "Subscribers per plan whose traffic moved in the last interval.",
                "short",
                vec![("sum by (plan) (quid_plan_subscribers)", "{{plan}}")],
            ),
            ts(
                "Contributed CPU cores by plan",
                "CPU cores supplied per plan from settled reports, averaged over an hour; every plan is drawn, at zero until its subscribers contribute.",
                "short",
                vec![(
                    "sum by (plan) (rate(quid_plan_contribution_cpu_seconds_total[1h]))",
                    "{{plan}}",
                )],
            ),
            ts(
                "Contributed storage",
                "Storage supplied by all subscribers' nodes, averaged over an hour.",
                "bytes",
                vec![("sum(quid:contribution_storage_bytes:rate1h)", "storage")],
            ),
            ts(
                "Contributed power",
                "Power supplied by all subscribers' nodes, averaged over an hour.",
                "watt",
                vec![("sum(quid:contribution_watts:rate1h)", "power")],
            ),
            ts(
                "Download per contributed core",
                "Download demand divided by the contributed CPU cores, counting at least one core (with nothing contributed it is the whole demand); the forecast appears once a week of history exists.",
                "bps",
                vec![
                    ("quid:download_bits_per_core:ratio", "{{instance}} now"),
                    (
                        "predict_linear(quid:download_bits_per_core:ratio[7d], 30 * 86400) and quid:download_bits_per_core:ratio offset 7d",
                        "{{instance}} 30 days later",
                    ),
                ],
            ),
        ],
    )
}

/// Where the alert runbook is published (the README's "Alert runbook" section).
const RUNBOOKS: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/README.md");

fn rules() -> String {
    let mut out = String::from(
        "# Generated by `cargo xtask dashboards`; edit xtask/src/dashboards.rs instead.\ngroups:\n  - name: quid-recording\n    rules:\n",
    );
    for (name, expr) in RECORDING {
        out += &format!("      - record: {name}\n        expr: {}\n", yaml_str(expr));
    }
    out += "  - name: quid-alerts\n    rules:\n";
    for (name, expr, for_, severity, summary) in ALERTS {
        out += &format!(
            "      - alert: {name}\n        expr: {}\n        for: {for_}\n        labels:\n          severity: {severity}\n        annotations:\n          summary: {}\n          runbook_url: {}\n",
            yaml_str(expr),
            yaml_str(summary),
            yaml_str(&format!("{RUNBOOKS}#{}", name.to_lowercase()))
        );
    }
    out
}

/// A YAML double-quoted string (JSON's escaping is valid there).
fn yaml_str(s: &str) -> String {
    Value::from(s).to_string()
}

const PROVISIONING: &str =
    "# Grafana provisioning: copy to /etc/grafana/provisioning/dashboards/quid.yaml
apiVersion: 1
providers:
  - name: quid
    folder: quid
    type: file
    disableDeletion: true
    options:
      path: /var/lib/grafana/dashboards/quid
";

/// Every generated file: (path under dashboards/, contents).
pub fn files() -> Vec<(&'static str, String)> {
    // `{:#}` is serde_json's pretty printer (two-space indent), and cannot fail.
    let pretty = |v: Value| format!("{v:#}\n");
    vec![
        ("noc-overview.json", pretty(noc())),
        ("subscriber.json", pretty(subscriber())),
        ("many-routers.json", pretty(many_routers())),
        ("capacity-planning.json", pretty(capacity())),
        ("provisioning/quid.yaml", PROVISIONING.to_string()),
        ("rules/quid.rules.yml", rules()),
    ]
}

/// Writes the files, or with `check` fails if any would change.
pub fn generate(root: &Path, check: bool) -> anyhow::Result<()> {
    let dir = root.join("dashboards");
    let mut stale = Vec::new();
    for (name, text) in files() {
        let path = dir.join(name);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(name);
            }
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text)?;
        }
    }
    if !stale.is_empty() {
        anyhow::bail!(
            "dashboards/ is out of date ({}): run `cargo xtask dashboards` and commit the result",
            stale.join(", ")
        );
    }
    Ok(())
}
