//! The exporter, the dashboards and the rules against a real Prometheus: a daemon counts
//! bounded traffic in namespaces, Prometheus scrapes it, and every dashboard query and
//! recording rule must return data. Needs root and Debian's `prometheus` package (promtool).

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use std::{
    collections::BTreeSet,
    io::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    Daemon, Injector, Netns,
    prometheus::{encode, get, repo, start_prometheus},
    veth, write_config_sections,
};
use quid::kernel::test_frames::Ethernet;
use serde_json::Value;

fn dashboards() -> Vec<(String, Value)> {
    [
        "noc-overview.json",
        "subscriber.json",
        "capacity-planning.json",
        "many-routers.json",
    ]
    .iter()
    .map(|f| {
        let text = std::fs::read_to_string(repo().join("dashboards").join(f)).unwrap();
        (f.to_string(), serde_json::from_str(&text).unwrap())
    })
    .collect()
}

/// Every (dashboard, panel title, expression).
fn expressions() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                out.push((
                    file.clone(),
                    p["title"].as_str().unwrap().to_owned(),
                    t["expr"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

fn recording_rules() -> Vec<String> {
    std::fs::read_to_string(repo().join("dashboards/rules/quid.rules.yml"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: ").map(str::to_owned))
        .collect()
}

/// Metric names (`quid_...`, `quid:...`) an expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("quid") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
        {
            end += 1;
        }
        // A name starts at a word boundary and goes on with '_' or ':' (not `job="quid"`).
        let before_ok = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b'"');
        let metric = matches!(bytes.get(start + 4), Some(b'_') | Some(b':'));
        if before_ok && metric {
            names.insert(expr[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    names
}

#[test]
fn dashboards_parse_with_unique_ids_the_datasource_variable_and_only_exported_metrics() {
    let rules = recording_rules();
    for (file, d) in dashboards() {
        let vars = d["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter()
                .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
            "{file}"
        );
        let mut ids = BTreeSet::new();
        for p in d["panels"].as_array().unwrap() {
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: duplicate panel id {}",
                p["id"]
            );
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}: {}",
                p["title"]
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{file}: {}",
                    p["title"]
                );
            }
        }
    }
    for (file, title, expr) in expressions() {
        for name in metric_names(&expr) {
            // A histogram's series are its family's name with a suffix.
            let family = name.strip_suffix("_bucket").unwrap_or(&name);
            let known = quid::metrics::exposition::FAMILIES.contains(&family)
                || quid::metrics::exposition::REPORT_FAMILIES.contains(&name.as_str())
                || quid::metrics::exposition::LEDGER_FAMILIES.contains(&name.as_str())
                || quid::metrics::exposition::HTTP_FAMILIES.contains(&name.as_str())
                || quid::metrics::cluster::FAMILIES.contains(&name.as_str())
                || quid::metrics::bindings::FAMILIES.contains(&name.as_str())
                || quid::metrics::radius::FAMILIES.contains(&name.as_str())
                || quid::metrics::audits::FAMILIES.contains(&name.as_str())
                || quid::metrics::accounting_out::FAMILIES.contains(&name.as_str())
                || quid::metrics::dhcp::FAMILIES.contains(&name.as_str())
                || rules.contains(&name);
            assert!(
                known,
                "{file}: panel `{title}` queries {name}, which neither the exporter nor a recording rule provides"
            );
        }
    }
    assert!(metric_names("rate(quid_a_total[1m]) / quid:b").contains("quid:b"));
}

#[test]
fn promtool_accepts_the_rules() {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo().join("dashboards/rules/quid.rules.yml"))
        .output()
        .expect("promtool (Debian package prometheus) is installed by scripts/bootstrap.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The result of an instant query (panics unless Prometheus answers with success).
fn query(r: &Netns, q: &str) -> Vec<Value> {
    query_path(r, q, &format!("/api/v1/query?query={}", encode(q)))
}

/// The result of an instant query evaluated at `at` (Unix seconds), so that several queries
/// see the same samples.
fn query_at(r: &Netns, q: &str, at: f64) -> Vec<Value> {
    query_path(
        r,
        q,
        &format!("/api/v1/query?query={}&time={at:.3}", encode(q)),
    )
}

fn query_path(r: &Netns, q: &str, path: &str) -> Vec<Value> {
    let (code, body) = get(r, 9090, path);
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert!(
        code == 200 && v["status"] == "success",
        "`{q}` -> {code} {body}"
    );
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// A panel query as Grafana sends it for the `quid` job, every router and `subscriber`.
fn as_grafana_sends(expr: &str, subscriber: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$subscriber", subscriber)
        .replace("$job", "quid")
        .replace("$instance", ".*")
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_real_prometheus_gets_finite_data_for_every_panel_and_recording_rule() {
    every_panel_in_a_real_prometheus(true);
}

/// Nobody contributed anything: the per-core and per-plan contribution panels must still
/// draw finite series (at zero), not nothing, +Inf or NaN.
#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_real_prometheus_gets_finite_data_for_every_panel_without_contributions() {
    every_panel_in_a_real_prometheus(false);
}

/// Counts bounded traffic (and, with `contributions`, a settled node report) in a daemon that
/// a real Prometheus scrapes, then evaluates every panel query and recording rule: each
/// returns data and no +Inf or NaN, except the forecasts, which must wait for a week of
/// history.
fn every_panel_in_a_real_prometheus(contributions: bool) {
    let (r, s) = common::router_and_sender();
    veth(&r, "core", &s, "core-p");
    let dir = tempfile::tempdir().unwrap();
    let node = common::write_nodes(dir.path(), 21);
    // The report below covers time before this daemon started: an earlier run metered it.
    common::metered_since(
        &dir.path().join("state"),
        &["alice"],
        &["pi"],
        common::now() - 3600,
    );
    // Every integration on, so that their panels have series: a RADIUS listener no NAS
    // talks to, accounting to a billing port nobody answers, an empty Kea lease file, audits.
    common::write_secret(&dir.path().join("nas.secret"), "nas-secret");
    common::write_secret(&dir.path().join("billing.secret"), "billing-secret");
    for (file, text) in [
        ("dhcp-map.csv", "key,value,subscriber\n"),
        ("kea-leases4.csv", ""),
    ] {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let config = write_config_sections(
        dir.path(),
        &[("acc", "access", "auto"), ("core", "core", "auto")],
        "id,name,plan,prefixes\nalice,Alice,home,100.64.9.1 2001:db8:9::/56\nbob,Bob,biz,100.64.9.2\n",
        &format!(
            "{}
[tariff]
cpu_core_hour = 3600000
download_internet_gb = 1000000000

[radius]
listen = \"127.0.0.1:1813\"
[[radius.client]]
address = \"127.0.0.0/8\"
secret_file = \"nas.secret\"

[accounting_out]
server = \"127.0.0.1:1814\"
secret_file = \"billing.secret\"
nas_identifier = \"edge-test\"
interval_secs = 1
timeout_secs = 1
attempts = 2

[dhcp]
lease_file4 = \"{}\"
map = \"dhcp-map.csv\"
poll_ms = 200

[audits]
interval_secs = 2
deadline_secs = 1
",
            common::LISTENERS,
            dir.path().join("kea-leases4.csv").display()
        ),
    );
    let daemon = Daemon::start(&r, &config);
    // A node report (settled at the next interval: contributions and a credit) and a forged
    // one (a rejection), so the report panels have something to show; without `contributions`
    // the report supplies nothing.
    let now = quid::clock::Clock::system().now_i64().unwrap();
    let mut report = quid::settlement::report::Report {
        node: "pi".into(),
        seq: 1,
        period_start: quid::settlement::report::rfc3339(now - 600),
        period_end: quid::settlement::report::rfc3339(now - 300),
        cpu_core_micros: if contributions { 300_000_000 } else { 0 },
        storage_byte_seconds: if contributions { 1_000_000_000 } else { 0 },
        energy_microjoules: if contributions { 1_500_000_000 } else { 0 },
        energy_source: None,
        grid_bytes_sent: 0,
        grid_bytes_received: 0,
        signature: String::new(),
    };
    report.sign(&node).unwrap();
    let good = serde_json::to_vec(&report).unwrap();
    report.cpu_core_micros = 600_000_000;
    let forged = serde_json::to_vec(&report).unwrap();
    let answers =
        r.run(move || [good, forged].map(|b| common::http_here(9465, "POST", "/v1/reports", &b).0));
    assert_eq!(answers, [200, 401]);

    let _prom = start_prometheus(&r, dir.path());

    // Bounded traffic for about 12 s: both directions, both families, and some frames from
    // no subscriber.
    let (acc, core) = (Injector::new(&s, "acc-p"), Injector::new(&s, "core-p"));
    let e = Ethernet::default();
    let net = Ipv4Addr::new(203, 0, 113, 1);
    let up = [
        e.ipv4_udp(Ipv4Addr::new(100, 64, 9, 1), net, 400),
        e.ipv4_udp(Ipv4Addr::new(100, 64, 9, 2), net, 100),
        e.ipv6_udp(
            "2001:db8:9::5".parse::<Ipv6Addr>().unwrap(),
            "2001:db8:ffff::1".parse().unwrap(),
            800,
        ),
        e.ipv4_udp(Ipv4Addr::new(198, 51, 100, 77), net, 10),
    ];
    let down = e.ipv4_udp(net, Ipv4Addr::new(100, 64, 9, 1), 1200);
    let started = Instant::now();
    for _ in 0..240 {
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
        for f in &up {
            acc.send(f, 5);
        }
        core.send(&down, 10);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));

    // The real exposition passes promtool.
    let (code, exposition) = get(&r, 9464, "/metrics");
    assert_eq!(code, 200);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for family in quid::metrics::exposition::FAMILIES
        .iter()
        .chain(&quid::metrics::exposition::REPORT_FAMILIES)
        .chain(&quid::metrics::exposition::LEDGER_FAMILIES)
        .chain(&quid::metrics::exposition::HTTP_FAMILIES)
        .chain(&quid::metrics::process::FAMILIES)
    {
        assert!(
            exposition.contains(&format!("# TYPE {family} ")),
            "{family} missing from\n{exposition}"
        );
    }

    let mut failures = Vec::new();
    // The many-routers dashboard needs a shared store: tests/cluster.rs checks it.
    let queries = expressions()
        .into_iter()
        .filter(|(f, ..)| f != "many-routers.json")
        .map(|(f, t, e)| (format!("{f}: {t}"), e))
        .chain(
            recording_rules()
                .into_iter()
                .map(|r| (format!("recording rule {r}"), r.clone())),
        );
    for (what, expr) in queries {
        let q = as_grafana_sends(&expr, "alice");
        let (code, body) = get(&r, 9090, &format!("/api/v1/query?query={}", encode(&q)));
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
        // The forecasts wait for a week of history; this Prometheus has seconds of it.
        let forecast = q.contains("predict_linear");
        if code != 200 || v["status"] != "success" || result.is_empty() != forecast {
            failures.push(format!("{what}: `{q}` -> {code} {body}"));
        }
        for series in &result {
            let value = series["value"][1].as_str().unwrap_or("");
            if !value.parse::<f64>().is_ok_and(f64::is_finite) {
                failures.push(format!("{what}: `{q}` -> {value} for {}", series["metric"]));
            }
        }
    }
    daemon.stop();
    assert!(
        failures.is_empty(),
        "queries without data, or with +Inf or NaN:\n{}",
        failures.join("\n")
    );
}

/// The rules of Grafana's dashboard-linter that apply (no linter can be installed here), and
/// the layout: every panel has a title, a description, a unit, explicit thresholds and the
/// datasource variable; the `job` and `instance` variables exist and every selector in every
/// query uses them; rates over raw counters use `$__rate_interval` or an hour and more; panels
/// neither overlap nor leave holes.
#[test]
fn dashboards_follow_the_dashboard_linter_rules() {
    let mut failures = Vec::new();
    for (file, d) in dashboards() {
        let vars = d["templating"]["list"].as_array().unwrap();
        for (name, kind) in [
            ("datasource", "datasource"),
            ("job", "query"),
            ("instance", "query"),
        ] {
            if !vars.iter().any(|v| v["name"] == name && v["type"] == kind) {
                failures.push(format!("{file}: no {kind} variable `{name}`"));
            }
        }
        if d["links"].as_array().is_none_or(Vec::is_empty) {
            failures.push(format!("{file}: no links to the other dashboards"));
        }
        let mut cells = BTreeSet::new();
        let mut bottom = 0;
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap_or("");
            let at = format!("{file}: `{title}`");
            let defaults = &p["fieldConfig"]["defaults"];
            if title.is_empty() || p["description"].as_str().is_none_or(str::is_empty) {
                failures.push(format!("{at}: no title or description"));
            }
            if defaults["unit"].as_str().is_none_or(str::is_empty) {
                failures.push(format!("{at}: no unit"));
            }
            if defaults["thresholds"]["steps"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                // Grafana's default is red from 80: wrong for nearly every panel here.
                failures.push(format!("{at}: no explicit thresholds"));
            }
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                for name in metric_names(expr)
                    .into_iter()
                    .chain(expr.contains("up{").then(|| "up".to_string()))
                {
                    let scoped = format!("{name}{{job=~\"$job\",instance=~\"$instance\"");
                    if expr.matches(name.as_str()).count() != expr.matches(&scoped).count() {
                        failures.push(format!(
                            "{at}: `{name}` without the job/instance matchers in `{expr}`"
                        ));
                    }
                }
                for window in expr.split('[').skip(1) {
                    let w = window.split(']').next().unwrap_or("");
                    let raw_rate = !w.starts_with('$') && !w.ends_with('h') && !w.ends_with('d');
                    if raw_rate && (expr.contains("rate(") || expr.contains("increase(")) {
                        failures.push(format!(
                            "{at}: window [{w}] instead of $__rate_interval in `{expr}`"
                        ));
                    }
                }
            }
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap());
            if x + w > 24 {
                failures.push(format!("{at}: wider than the dashboard"));
            }
            bottom = bottom.max(y + h);
            for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
                if !cells.insert(cell) {
                    failures.push(format!("{at}: overlaps another panel at {cell:?}"));
                }
            }
        }
        let holes = 24 * bottom - cells.len() as u64;
        if holes > 0 {
            failures.push(format!("{file}: {holes} empty grid cells between panels"));
        }
    }
    let noc = &dashboards()[0].1;
    let panel = |title: &str| {
        noc["panels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["title"] == title)
            .unwrap()
            .clone()
    };
    let steps =
        |title: &str| panel(title)["fieldConfig"]["defaults"]["thresholds"]["steps"].clone();
    for title in ["Daemons up", "XDP attachments"] {
        assert_eq!(steps(title)[0]["color"], "red", "{title} must be red at 0");
        assert_eq!(steps(title)[1]["value"], 1.0, "{title}");
    }
    assert!(
        !steps("Active subscribers")
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["color"] == "red"),
        "Active subscribers is never red"
    );
    let link = panel("Top 10 subscribers")["fieldConfig"]["defaults"]["links"][0]["url"].clone();
    assert!(
        link.as_str().unwrap().starts_with(
            "/d/quid-subscriber/quid-subscriber?var-subscriber=${__field.labels.subscriber}"
        ),
        "{link}"
    );
    assert!(
        failures.is_empty(),
        "dashboard lint:\n{}",
        failures.join("\n")
    );
}

#[test]
fn rules_link_their_runbook_and_the_readme_has_every_entry() {
    let rules = std::fs::read_to_string(repo().join("dashboards/rules/quid.rules.yml")).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        !rules.contains("runbook:"),
        "a relative runbook label is left"
    );
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.contains(&"QuidIntervalStale"));
    for alert in alerts {
        assert!(
            rules.contains(&format!("README.md#{}\"", alert.to_lowercase())),
            "{alert}: no runbook_url"
        );
        assert!(
            readme.contains(&format!("#### {alert}\n")),
            "{alert}: no runbook entry"
        );
    }
    // The shipped config says the default the code has.
    let dist = std::fs::read_to_string(repo().join("dist/quid.toml")).unwrap();
    let quid::config::SubscriberSeries::Top(n) = quid::config::SubscriberSeries::default() else {
        panic!("the default is top:N");
    };
    assert!(
        dist.contains(&format!("subscribers = \"top:{n}\"")),
        "dist/quid.toml"
    );
}

/// Raw samples of every series of `family` over the `range` before `at`, as (labels, values).
fn samples(r: &Netns, family: &str, range: &str, at: f64) -> Vec<(String, Vec<f64>)> {
    query_at(r, &format!("{family}[{range}]"), at)
        .iter()
        .map(|s| {
            let values = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v[1].as_str().unwrap().parse::<f64>().unwrap())
                .collect();
            (s["metric"].to_string(), values)
        })
        .collect()
}

/// What `increase()` adds up over raw samples without extrapolating: every step up, and after
/// a step down (a reset) the new value.
fn exact_increase(values: &[f64]) -> f64 {
    values
        .windows(2)
        .map(|w| if w[1] >= w[0] { w[1] - w[0] } else { w[1] })
        .sum()
}

/// Under `top:1`, subscribers take the top place in turn (one comes back after a gap) and move
/// between plans under traffic: no counter series ever goes down, and the increases over the
/// run add up to exactly the bytes sent, in total and per plan.
#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn counters_stay_monotonic_through_top_n_and_plan_changes_in_a_real_prometheus() {
    let (r, s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let table = |plans: [&str; 3]| {
        format!(
            "id,name,plan,prefixes\na,A,{},100.64.5.1\nb,B,{},100.64.5.2\nc,C,{},100.64.5.3\n",
            plans[0], plans[1], plans[2]
        )
    };
    let config = write_config_sections(
        dir.path(),
        &[("acc", "access", "auto")],
        &table(["home", "home", "biz"]),
        "\n[metrics]\nlisten = \"127.0.0.1:9464\"\nsubscribers = \"top:1\"\n",
    );
    let csv = dir.path().join("subscribers.csv");
    let state = dir.path().join("state");
    let daemon = Daemon::start(&r, &config);
    let _prom = start_prometheus(&r, dir.path());
    // Prometheus' first scrape is every series' baseline: traffic before it would not count.
    let deadline = Instant::now() + Duration::from_secs(20);
    while query(&r, "quid_subscriber_bytes_total").is_empty() {
        assert!(Instant::now() < deadline, "no scrape within 20 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let acc = Injector::new(&s, "acc-p");
    let e = Ethernet::default();
    let net = Ipv4Addr::new(203, 0, 113, 9);
    let frame = |last: u8| e.ipv4_udp(Ipv4Addr::new(100, 64, 5, last), net, 972);
    // IP-layer bytes of one frame: everything after the Ethernet header.
    let ip_bytes = (frame(1).len() - 14) as f64;
    let mut sent: std::collections::BTreeMap<&str, f64> = Default::default();
    let mut reloads = 0;
    // (subscriber, frames, plans after the phase): each phase makes its sender the top one.
    let phases = [
        (1, 400, ["biz", "home", "biz"]),
        (2, 800, ["biz", "biz", "home"]),
        (3, 1600, ["biz", "biz", "home"]),
        (1, 2400, ["home", "biz", "home"]),
        (2, 2400, ["home", "biz", "home"]),
    ];
    let mut plans = ["home", "home", "biz"];
    for (who, frames, next) in phases {
        let f = frame(who);
        for _ in 0..frames / 100 {
            acc.send(&f, 100);
            std::thread::sleep(Duration::from_millis(20));
        }
        *sent.entry(plans[usize::from(who) - 1]).or_default() += f64::from(frames) * ip_bytes;
        // Two intervals and scrapes pass before the plans change.
        std::thread::sleep(Duration::from_millis(2500));
        if next != plans {
            std::fs::write(&csv, table(next)).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while quid::subscribers::reload_result::ReloadResult::read(&state)
                .is_none_or(|res| res.seq <= reloads)
            {
                assert!(Instant::now() < deadline, "no reload within 20 s");
                std::thread::sleep(Duration::from_millis(50));
            }
            reloads += 1;
            plans = next;
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let total: f64 = sent.values().sum();
    let mut failures = Vec::new();
    let mut sums = std::collections::BTreeMap::new();
    // One evaluation instant for the raw samples and the PromQL sums below: both see the same
    // samples (the run is well inside the 5-minute window).
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for family in ["quid_subscriber_bytes_total", "quid_plan_bytes_total"] {
        for (labels, values) in samples(&r, family, "5m", at) {
            if values.windows(2).any(|w| w[1] < w[0]) {
                failures.push(format!("{family}{labels} went down: {values:?}"));
            }
            let plan = serde_json::from_str::<Value>(&labels).unwrap()["plan"].clone();
            *sums.entry((family, plan.to_string())).or_insert(0.0) += exact_increase(&values);
        }
    }
    let subscribers: f64 = sums
        .iter()
        .filter(|((f, _), _)| *f == "quid_subscriber_bytes_total")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        subscribers, total,
        "subscriber series and other against the senders"
    );
    for (plan, bytes) in &sent {
        let key = ("quid_plan_bytes_total", format!("\"{plan}\""));
        assert_eq!(sums.get(&key), Some(bytes), "plan {plan}");
    }
    // PromQL itself, over the same samples and without increase()'s extrapolation to the
    // window's edges (series start and stop as subscribers move in and out of the top place):
    // a series' last minus first sample is max minus min while it never goes down. A counter
    // that lost bytes or restarted from zero makes these sums smaller than what was sent.
    let spread =
        |family: &str| format!("max_over_time({family}[5m]) - min_over_time({family}[5m])");
    let promql: f64 = query_at(
        &r,
        &format!("sum({})", spread("quid_subscriber_bytes_total")),
        at,
    )[0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(promql, total, "PromQL last - first against the senders");
    let by_plan: std::collections::BTreeMap<String, f64> = query_at(
        &r,
        &format!("sum by (plan) ({})", spread("quid_plan_bytes_total")),
        at,
    )
    .iter()
    .map(|s| {
        let plan = s["metric"]["plan"].as_str().unwrap_or_default().to_owned();
        (plan, s["value"][1].as_str().unwrap().parse().unwrap())
    })
    .filter(|(_, bytes)| *bytes > 0.0)
    .collect();
    let sent_by_plan: std::collections::BTreeMap<String, f64> = sent
        .iter()
        .map(|(plan, bytes)| ((*plan).to_owned(), *bytes))
        .collect();
    assert_eq!(by_plan, sent_by_plan, "PromQL per plan against the senders");
    daemon.stop();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
