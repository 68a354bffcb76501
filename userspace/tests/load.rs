//! A bounded load test on loopback inside namespaces: many nodes reporting at once, one
//! scraper, traffic through the XDP program, and a flooder (another address) holding idle
//! connections, all at
//! the same time against the real daemon. Every report is acknowledged, every scrape
//! answered, every frame counted; the figures (latency, rates, memory) go to a JSON file.
//!
//! CI runs it short (QUID_LOAD_SECS, default 6 s). `cargo xtask bench` runs it longer with
//! QUID_LOAD_OUT=bench/load.json and QUID_LOAD_TARGETS=1, which also checks the latency and
//! memory targets. Needs root.

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Daemon, Injector, http_here, write_config_sections};
use ed25519_dalek::SigningKey;
use quid::{kernel::test_frames::Ethernet, settlement::report::rfc3339};

const NODES: u32 = 1000;
const CLIENTS: u32 = 16;
const FLOOD_CONNECTIONS: usize = 64;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sub_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i)
}

fn node_key(i: u32) -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    SigningKey::from_bytes(&seed)
}

/// Resident memory of `pid` in kB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The `pct`-th percentile (nearest rank, rounded half up) of `sorted`.
fn percentile(sorted: &[f64], pct: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) * pct + 50) / 100]
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn many_nodes_a_scraper_traffic_and_a_flooder_at_once() {
    let secs = env_u64("QUID_LOAD_SECS", 6);
    let (r, s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let mut table = String::from("id,name,plan,prefixes\n");
    let mut nodes = String::from("node,subscriber,public_key,cpu_cores,storage_bytes,max_watts\n");
    for i in 0..NODES {
        table += &format!("s{i},Sub {i},home,{}\n", sub_addr(i));
        nodes += &format!(
            "n{i},s{i},{},64,1000000000000,1000\n",
            hex::encode(node_key(i).verifying_key().to_bytes())
        );
    }
    std::fs::write(dir.path().join("nodes.csv"), nodes).unwrap();
    // The reports cover the last 30 days, before this daemon started: an earlier run metered
    // them.
    let subs: Vec<String> = (0..NODES).map(|i| format!("s{i}")).collect();
    let ids: Vec<String> = (0..NODES).map(|i| format!("n{i}")).collect();
    common::metered_since(
        &dir.path().join("state"),
        &subs.iter().map(String::as_str).collect::<Vec<_>>(),
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        common::now() - 31 * 86_400,
    );
    let config = write_config_sections(
        dir.path(),
        &[("acc", "access", "native")],
        &table,
        &format!(
            "{}rate_per_node = 1000
burst_per_node = 1000

[http]
max_connections = 256
max_connections_per_ip = 32
",
            common::LISTENERS
        ),
    );
    let daemon = Daemon::start(&r, &config);
    let pid = daemon.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);

    // Traffic: subscribers' frames in bursts, bounded in count and time.
    let frames_sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, sent) = (stop.clone(), frames_sent.clone());
        let inj = Injector::new(&s, "acc-p");
        std::thread::spawn(move || {
            let frames: Vec<Vec<u8>> = (0..NODES)
                .step_by(37)
                .map(|i| {
                    Ethernet::default().ipv4_udp(sub_addr(i), Ipv4Addr::new(203, 0, 113, 1), 64)
                })
                .collect();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 5_000_000 {
                for f in &frames {
                    inj.send(f, 10);
                    n += 10;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            sent.store(n, Ordering::Relaxed);
        })
    };

    // The flooder: idle connections from one address, reopened as they are closed.
    let flood = {
        let stop = stop.clone();
        r.spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                held.retain(|c: &std::net::TcpStream| {
                    let mut b = [0u8; 1];
                    c.set_nonblocking(true).ok();
                    !matches!(std::io::Read::read(&mut &*c, &mut b), Ok(0))
                });
                while held.len() < FLOOD_CONNECTIONS {
                    held.push(common::connect_from(Ipv4Addr::new(127, 0, 0, 2), 9465));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // The scraper: once a second, like Prometheus.
    let scraper = {
        let stop = stop.clone();
        r.spawn(move || {
            let mut latencies = Vec::new();
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (code, body) = http_here(9464, "GET", "/metrics", b"");
                latencies.push(t.elapsed().as_secs_f64());
                if code != 200 || !body.contains("quid_build_info") {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(1000));
            }
            (latencies, failed)
        })
    };

    // Memory, once a second.
    let memory = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push(rss_kb(pid));
                std::thread::sleep(Duration::from_millis(1000));
            }
            samples
        })
    };

    // The nodes: each client owns every CLIENTS-th node and sends its reports in order.
    let base = common::now() - 30 * 86_400;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            r.spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(10))
                    .build();
                let mine: Vec<u32> = (0..NODES).filter(|n| n % CLIENTS == c).collect();
                let keys: Vec<SigningKey> = mine.iter().map(|&n| node_key(n)).collect();
                let (mut ok, mut refused, mut seq) = (0u64, Vec::new(), 0u64);
                let mut latencies = Vec::new();
                'outer: while Instant::now() < deadline {
                    seq += 1;
                    for (k, &n) in mine.iter().enumerate() {
                        if Instant::now() >= deadline {
                            break 'outer;
                        }
                        let start = base + i64::try_from(seq).unwrap() * 60;
                        let mut report = quid::settlement::report::Report {
                            node: format!("n{n}"),
                            seq,
                            period_start: rfc3339(start),
                            period_end: rfc3339(start + 60),
                            cpu_core_micros: 60_000_000,
                            storage_byte_seconds: 1_000_000_000,
                            energy_microjoules: 600_000_000,
                            energy_source: None,
                            grid_bytes_sent: 0,
                            grid_bytes_received: 0,
                            signature: String::new(),
                        };
                        report.sign(&keys[k]).unwrap();
                        let body = serde_json::to_string(&report).unwrap();
                        let t = Instant::now();
                        let answer = agent
                            .post("http://127.0.0.1:9465/v1/reports")
                            .set("Content-Type", "application/json")
                            .send_string(&body);
                        latencies.push(t.elapsed().as_secs_f64());
                        match answer.map(|r| r.into_string().unwrap_or_default()) {
                            Ok(text) if text.contains("\"accepted\"") => ok += 1,
                            Ok(text) => refused.push(text),
                            Err(e) => refused.push(e.to_string()),
                        }
                    }
                }
                (ok, refused, latencies)
            })
        })
        .collect();
    let (mut accepted, mut refused, mut latencies) = (0u64, Vec::new(), Vec::new());
    for c in clients {
        let (ok, bad, lat) = c.join().unwrap();
        accepted += ok;
        refused.extend(bad);
        latencies.extend(lat);
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    flood.join().unwrap();
    let (scrape_latencies, scrape_failed) = scraper.join().unwrap();
    let rss = memory.join().unwrap();
    let sent = frames_sent.load(Ordering::Relaxed);
    // Every frame counted, exactly: wait (bounded) for the last ones, then stop.
    let wait = Instant::now() + Duration::from_secs(15);
    let counted = loop {
        let counted: u64 = quid::metering::snapshot::Snapshot::read(&daemon.state_dir)
            .map(|s| s.subscribers.iter().map(|t| t.upload.packets).sum())
            .unwrap_or(0);
        if counted >= sent || Instant::now() > wait {
            break counted;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let snap = daemon.stop();
    let final_counted: u64 = snap.subscribers.iter().map(|t| t.upload.packets).sum();

    latencies.sort_by(f64::total_cmp);
    let mut scrapes = scrape_latencies.clone();
    scrapes.sort_by(f64::total_cmp);
    let attempts = accepted + refused.len() as u64;
    // Memory: after the first quarter (caches warm) against the end.
    let warm = rss.get(rss.len() / 4).copied().unwrap_or(0);
    let end = rss.last().copied().unwrap_or(0);
    let figures = serde_json::json!({
        "seconds": elapsed,
        "nodes": NODES,
        "clients": CLIENTS,
        "flood_connections": FLOOD_CONNECTIONS,
        "reports_attempted": attempts,
        "reports_accepted": accepted,
        "success_rate": accepted as f64 / attempts.max(1) as f64,
        "reports_per_second": accepted as f64 / elapsed,
        "report_latency_ms": {
            "p50": percentile(&latencies, 50) * 1e3,
            "p99": percentile(&latencies, 99) * 1e3,
            "max": latencies.last().copied().unwrap_or(0.0) * 1e3,
        },
        "scrapes": scrapes.len(),
        "scrapes_failed": scrape_failed,
        "scrape_latency_ms_p99": percentile(&scrapes, 99) * 1e3,
        "frames_sent": sent,
        "frames_counted": final_counted,
        "rss_kb": { "warm": warm, "end": end, "samples": rss },
    });
    let out = std::env::var("QUID_LOAD_OUT")
        .unwrap_or_else(|_| concat!(env!("CARGO_TARGET_TMPDIR"), "/load.json").to_owned());
    std::fs::write(&out, serde_json::to_string_pretty(&figures).unwrap() + "\n").unwrap();
    println!("load test figures in {out}:\n{figures:#}");

    assert!(
        refused.is_empty(),
        "refused reports: {:?}",
        &refused[..refused.len().min(10)]
    );
    assert!(accepted > 0);
    assert_eq!(scrape_failed, 0, "failed scrapes");
    assert!(counted <= sent);
    assert_eq!(final_counted, sent, "frames lost under load");
    if std::env::var("QUID_LOAD_TARGETS").is_ok() {
        let p99 = percentile(&latencies, 99) * 1e3;
        assert!(p99 < 100.0, "report p99 {p99:.1} ms (target < 100 ms)");
        assert!(
            end as f64 <= warm as f64 * 1.2,
            "memory grew from {warm} kB to {end} kB (target: < 20%)"
        );
    }
}
