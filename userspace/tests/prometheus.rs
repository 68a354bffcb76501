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
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Daemon, Injector, Netns, veth, write_config_sections};
use quid::kernel::test_frames::Ethernet;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn dashboards() -> Vec<(String, Value)> {
    [
        "noc-overview.json",
        "subscriber.json",
        "capacity-planning.json",
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
            let known = quid::metrics::exposition::FAMILIES.contains(&name.as_str())
                || quid::metrics::exposition::REPORT_FAMILIES.contains(&name.as_str())
                || quid::metrics::exposition::LEDGER_FAMILIES.contains(&name.as_str())
                || quid::metrics::exposition::HTTP_FAMILIES.contains(&name.as_str())
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

/// A GET over loopback inside `ns`; returns (status code, body).
fn get(ns: &Netns, port: u16, path: &str) -> (u16, String) {
    let path = path.to_owned();
    ns.run(move || common::http_here(port, "GET", &path, b""))
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus in the router's namespace, killed on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_real_prometheus_gets_data_for_every_panel_and_recording_rule() {
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
    let config = write_config_sections(
        dir.path(),
        &[("acc", "access", "auto"), ("core", "core", "auto")],
        "id,name,plan,prefixes\nalice,Alice,home,100.64.9.1 2001:db8:9::/56\nbob,Bob,biz,100.64.9.2\n",
        &format!(
            "{}
[tariff]
cpu_core_hour = 3600000
download_internet_gb = 1000000000
",
            common::LISTENERS
        ),
    );
    let daemon = Daemon::start(&r, &config);
    // A node report (settled at the next interval: contributions and a credit) and a forged
    // one (a rejection), so the report panels have something to show.
    let now = quid::clock::Clock::system().now_i64().unwrap();
    let mut report = quid::settlement::report::Report {
        node: "pi".into(),
        seq: 1,
        period_start: quid::settlement::report::rfc3339(now - 600),
        period_end: quid::settlement::report::rfc3339(now - 300),
        cpu_core_micros: 300_000_000,
        storage_byte_seconds: 1_000_000_000,
        energy_microjoules: 1_500_000_000,
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

    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom_cfg = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: quid\n    static_configs:\n      - targets: ['127.0.0.1:9464']\n",
            repo().join("dashboards/rules/quid.rules.yml").display()
        ),
    )
    .unwrap();
    let _prom = Prometheus(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", r.name))
            .arg("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package) is installed by scripts/bootstrap.sh"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&r, 9090, "/-/ready").0 != 200 {
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }

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
    {
        assert!(
            exposition.contains(&format!("# TYPE {family} ")),
            "{family} missing from\n{exposition}"
        );
    }

    let mut failures = Vec::new();
    let queries = expressions()
        .into_iter()
        .map(|(f, t, e)| (format!("{f}: {t}"), e))
        .chain(
            recording_rules()
                .into_iter()
                .map(|r| (format!("recording rule {r}"), r.clone())),
        );
    for (what, expr) in queries {
        let q = expr
            .replace("$__rate_interval", "1m")
            .replace("$subscriber", "alice");
        let (code, body) = get(&r, 9090, &format!("/api/v1/query?query={}", encode(&q)));
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let n = v["data"]["result"].as_array().map_or(0, Vec::len);
        if code != 200 || v["status"] != "success" || n == 0 {
            failures.push(format!("{what}: `{q}` -> {code} {body}"));
        }
    }
    daemon.stop();
    assert!(
        failures.is_empty(),
        "queries without data:\n{}",
        failures.join("\n")
    );
}
