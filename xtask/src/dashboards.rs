//! `cargo xtask dashboards`: the Grafana dashboards, their provisioning and the Prometheus
//! rules, generated from one definition of each query so panels and rules never drift apart.
//! The output is committed; the tests fail when regenerating would change it.

use std::path::Path;

use serde_json::{Value, json};

/// Recording rules the dashboards build on: (name, expression).
pub const RECORDING: [(&str, &str); 8] = [
    (
        "quid:contribution_cores:rate1h",
        "sum(rate(quid_contribution_cpu_seconds_total[1h]))",
    ),
    (
        "quid:contribution_storage_bytes:rate1h",
        "sum(rate(quid_contribution_storage_byte_seconds_total[1h]))",
    ),
    (
        "quid:contribution_watts:rate1h",
        "sum(rate(quid_contribution_energy_joules_total[1h]))",
    ),
    (
        "quid:traffic_bits:rate1m",
        "sum by (direction, class) (rate(quid_traffic_bytes_total[1m])) * 8",
    ),
    (
        "quid:plan_bits:rate1m",
        "sum by (plan, direction) (rate(quid_plan_bytes_total[1m])) * 8",
    ),
    (
        "quid:download_bits:rate1m",
        "sum(rate(quid_traffic_bytes_total{direction=\"download\"}[1m])) * 8",
    ),
    (
        // Download demand per contributed CPU core (+Inf while nothing is contributed).
        "quid:download_bits_per_core:ratio",
        "quid:download_bits:rate1m / quid:contribution_cores:rate1h",
    ),
    (
        "quid:unattributed_packets:ratio_rate5m",
        "sum by (instance) (rate(quid_interface_packets_total{bucket!=\"attributed\"}[5m])) / sum by (instance) (rate(quid_interface_packets_total[5m]))",
    ),
];

/// Alerts: (name, expression, for, severity, summary).
pub const ALERTS: [(&str, &str, &str, &str, &str); 13] = [
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
];

/// One panel: title, unit, and its queries (expression, legend).
struct Panel {
    title: &'static str,
    unit: &'static str,
    kind: &'static str,
    queries: Vec<(&'static str, &'static str)>,
}

fn panel(
    kind: &'static str,
    title: &'static str,
    unit: &'static str,
    queries: Vec<(&'static str, &'static str)>,
) -> Panel {
    Panel {
        title,
        unit,
        kind,
        queries,
    }
}

fn ts(
    title: &'static str,
    unit: &'static str,
    queries: Vec<(&'static str, &'static str)>,
) -> Panel {
    panel("timeseries", title, unit, queries)
}

fn stat(
    title: &'static str,
    unit: &'static str,
    queries: Vec<(&'static str, &'static str)>,
) -> Panel {
    panel("stat", title, unit, queries)
}

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

fn dashboard(
    uid: &str,
    title: &str,
    description: &str,
    extra_vars: Vec<Value>,
    panels: Vec<Panel>,
) -> Value {
    let mut vars = vec![json!({
        "name": "datasource", "label": "Data source", "type": "datasource",
        "query": "prometheus", "current": {}, "hide": 0
    })];
    vars.extend(extra_vars);
    let panels: Vec<Value> = panels
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let targets: Vec<Value> = p
                .queries
                .iter()
                // refIds A, B, ...: no panel has anywhere near 26 queries.
                .zip('A'..='Z')
                .map(|((expr, legend), ref_id)| {
                    json!({"refId": ref_id.to_string(), "expr": expr,
                           "legendFormat": legend, "datasource": datasource()})
                })
                .collect();
            let (w, h) = if p.kind == "stat" { (6, 4) } else { (12, 8) };
            json!({
                "id": i + 1, "type": p.kind, "title": p.title, "datasource": datasource(),
                "gridPos": {"x": (i % 2) * 12, "y": (i / 2) * 8, "w": w, "h": h},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "targets": targets
            })
        })
        .collect();
    json!({
        "uid": uid, "title": title, "description": description, "tags": ["quid"],
        "schemaVersion": 39, "version": 1, "editable": true, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": vars},
        "panels": panels
    })
}

fn noc() -> Value {
    dashboard(
        "quid-noc",
        "quid / NOC overview",
        "Traffic by direction and class, top subscribers, unattributed traffic and daemon health per router.",
        vec![],
        vec![
            ts(
                "Traffic by direction and class",
                "bps",
                vec![(
                    "sum by (direction, class) (quid:traffic_bits:rate1m)",
                    "{{direction}} {{class}}",
                )],
            ),
            ts(
                "Top 10 subscribers",
                "bps",
                vec![(
                    "topk(10, sum by (subscriber) (rate(quid_subscriber_bytes_total{subscriber!=\"other\"}[$__rate_interval])) * 8)",
                    "{{subscriber}}",
                )],
            ),
            ts(
                "Unattributed frames by interface and bucket",
                "pps",
                vec![(
                    "sum by (instance, interface, bucket) (rate(quid_interface_packets_total{bucket!=\"attributed\"}[$__rate_interval]))",
                    "{{instance}} {{interface}} {{bucket}}",
                )],
            ),
            ts(
                "Unattributed share of frames",
                "percentunit",
                vec![("quid:unattributed_packets:ratio_rate5m", "{{instance}}")],
            ),
            stat("Daemons up", "none", vec![("sum(up{job=\"quid\"})", "up")]),
            stat(
                "XDP attachments",
                "none",
                vec![("sum by (instance) (quid_xdp_attached)", "{{instance}}")],
            ),
            ts(
                "Counter read and commit time",
                "s",
                vec![
                    ("quid_read_duration_seconds", "read {{instance}}"),
                    ("quid_commit_duration_seconds", "commit {{instance}}"),
                ],
            ),
            ts(
                "Kernel map fill",
                "percentunit",
                vec![(
                    "quid_map_entries / quid_map_capacity",
                    "{{instance}} {{map}}",
                )],
            ),
            stat(
                "Last table reload applied",
                "bool",
                vec![("min(quid_table_last_reload_success)", "ok")],
            ),
            stat(
                "Active subscribers",
                "none",
                vec![("sum(quid_subscribers{state=\"active\"})", "active")],
            ),
            stat(
                "Subscribers in deficit",
                "none",
                vec![(
                    "count(quid_subscriber_balance_credits{subscriber!=\"other\"} < 0) or vector(0)",
                    "in deficit",
                )],
            ),
            ts(
                "Report outcomes",
                "reqps",
                vec![(
                    "sum by (outcome) (rate(quid_reports_total[$__rate_interval]))",
                    "{{outcome}}",
                )],
            ),
            ts(
                "Report rejections by reason",
                "short",
                vec![(
                    "sum by (reason) (increase(quid_report_rejections_total[$__rate_interval]))",
                    "{{reason}}",
                )],
            ),
            ts(
                "HTTP connections refused or timed out",
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
            stat(
                "Store commit failures (1h)",
                "none",
                vec![(
                    "sum(increase(quid_store_commit_failures_total[1h]))",
                    "failures",
                )],
            ),
            ts(
                "Store file size",
                "bytes",
                vec![("quid_store_bytes", "{{instance}}")],
            ),
            ts(
                "Usage rows by tier",
                "short",
                vec![("quid_store_rows", "{{instance}} {{tier}}")],
            ),
            ts(
                "Usage roll-up lag",
                "s",
                vec![("quid_rollup_lag_seconds", "{{instance}}")],
            ),
        ],
    )
}

fn subscriber() -> Value {
    dashboard(
        "quid-subscriber",
        "quid / Subscriber",
        "One subscriber's traffic by direction and class, and its running totals.",
        vec![json!({
            "name": "subscriber", "label": "Subscriber", "type": "query", "datasource": datasource(),
            "query": "label_values(quid_subscriber_bytes_total, subscriber)",
            "refresh": 2, "current": {}, "hide": 0
        })],
        vec![
            ts(
                "Traffic",
                "bps",
                vec![(
                    "sum by (direction, class) (rate(quid_subscriber_bytes_total{subscriber=\"$subscriber\"}[$__rate_interval])) * 8",
                    "{{direction}} {{class}}",
                )],
            ),
            ts(
                "Packets",
                "pps",
                vec![(
                    "sum by (direction) (rate(quid_subscriber_packets_total{subscriber=\"$subscriber\"}[$__rate_interval]))",
                    "{{direction}}",
                )],
            ),
            stat(
                "Bytes since the books opened",
                "bytes",
                vec![(
                    "sum by (direction) (quid_subscriber_bytes_total{subscriber=\"$subscriber\"})",
                    "{{direction}}",
                )],
            ),
            ts(
                "Contributions by resource",
                "short",
                vec![
                    (
                        "rate(quid_contribution_cpu_seconds_total{subscriber=\"$subscriber\"}[$__rate_interval])",
                        "CPU cores",
                    ),
                    (
                        "rate(quid_contribution_storage_byte_seconds_total{subscriber=\"$subscriber\"}[$__rate_interval])",
                        "storage bytes",
                    ),
                    (
                        "rate(quid_contribution_energy_joules_total{subscriber=\"$subscriber\"}[$__rate_interval])",
                        "watts",
                    ),
                ],
            ),
            ts(
                "Balance",
                "none",
                vec![
                    (
                        "quid_subscriber_balance_credits{subscriber=\"$subscriber\"}",
                        "balance",
                    ),
                    (
                        "quid_subscriber_pending_debit_credits{subscriber=\"$subscriber\"}",
                        "pending debit (settles at the period's end)",
                    ),
                    (
                        "quid_subscriber_balance_credits{subscriber=\"$subscriber\"} + quid_subscriber_pending_debit_credits{subscriber=\"$subscriber\"}",
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
                "bps",
                vec![(
                    "sum by (direction) (quid:traffic_bits:rate1m)",
                    "{{direction}}",
                )],
            ),
            ts(
                "Demand by plan",
                "bps",
                vec![(
                    "sum by (plan, direction) (quid:plan_bits:rate1m)",
                    "{{plan}} {{direction}}",
                )],
            ),
            ts(
                "Download, 95th percentile over the last day",
                "bps",
                vec![(
                    "quantile_over_time(0.95, quid:download_bits:rate1m[1d])",
                    "p95",
                )],
            ),
            ts(
                "Download forecast, 30 days ahead",
                "bps",
                vec![(
                    "predict_linear(quid:download_bits:rate1m[1d], 30 * 86400)",
                    "forecast",
                )],
            ),
            ts(
                "Subscribers by plan",
                "none",
                vec![("sum by (plan) (quid_plan_subscribers)", "{{plan}}")],
            ),
            ts(
                "Contributed CPU cores by plan",
                "none",
                vec![(
                    "sum by (plan) (rate(quid_plan_contribution_cpu_seconds_total[1h]))",
                    "{{plan}}",
                )],
            ),
            ts(
                "Contributed storage",
                "bytes",
                vec![("quid:contribution_storage_bytes:rate1h", "storage")],
            ),
            ts(
                "Contributed power",
                "watt",
                vec![("quid:contribution_watts:rate1h", "power")],
            ),
            ts(
                "Download per contributed core, now and 30 days ahead",
                "bps",
                vec![
                    ("quid:download_bits_per_core:ratio", "now"),
                    (
                        "predict_linear(quid:download_bits_per_core:ratio[1d], 30 * 86400)",
                        "forecast",
                    ),
                ],
            ),
        ],
    )
}

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
            "      - alert: {name}\n        expr: {}\n        for: {for_}\n        labels:\n          severity: {severity}\n        annotations:\n          summary: {}\n          runbook: {}\n",
            yaml_str(expr),
            yaml_str(summary),
            yaml_str(&format!("README.md#{}", name.to_lowercase()))
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
