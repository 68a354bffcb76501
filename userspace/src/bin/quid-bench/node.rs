//! `quid-bench node`: what the node agent and the storage audit cost. The real `quid-node`
//! binary runs against a local router stand-in that acknowledges every report (its CPU and
//! peak RSS over whole periods); reports signed and delivered per second over loopback; and
//! the router's side of an audit (CPU per audit, audits per second on every core, bytes on
//! the wire), alone and over the real path (`audit_path.rs`: HTTP, signatures, the store).
//! Writes `bench/node.json`, rows `{measure, value, unit}`.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::node_row::Row;
use anyhow::{Context as _, bail};
use quid::settlement::report::{EnergySource, Report, rfc3339};
use quid_report::audit::{CHUNK_BYTES, Challenge, FillKey, proof};

/// Runs every measure and writes `out/node.json`.
pub fn run(out: PathBuf, node_bin: &Path, agent_secs: u64) -> anyhow::Result<()> {
    let router = Router::start()?;
    let mut rows = agent(node_bin, &router, agent_secs)?;
    rows.extend(sign_and_deliver(&router)?);
    rows.extend(audits()?);
    rows.extend(super::audit_path::rows()?);
    rows.push(Row {
        measure: "load_1min",
        value: super::reports::load_average(),
        unit: "load",
    });
    for r in &rows {
        println!("{:<34} {:>14.3} {}", r.measure, r.value, r.unit);
    }
    crate::write_json(&out, "node.json", &rows)
}

/// A stand-in for the router's intake on loopback: answers every `POST` with `accepted`, on
/// kept-alive connections, and counts them.
struct Router {
    url: String,
    acked: Arc<AtomicU64>,
}

impl Router {
    fn start() -> anyhow::Result<Router> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let acked = Arc::new(AtomicU64::new(0));
        let count = acked.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let count = count.clone();
                std::thread::spawn(move || {
                    // A connection ends when the client closes it or sends something unreadable.
                    let _ = serve(stream, &count);
                });
            }
        });
        Ok(Router { url, acked })
    }
}

fn serve(stream: TcpStream, count: &AtomicU64) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    stream.set_nodelay(true)?;
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        // Only reports are acknowledged and counted; anything else (the agent's audit
        // requests) is answered as a router without audits does, which the agent leaves be.
        let report = line.split(' ').nth(1) == Some("/v1/reports");
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length.min(1 << 20)];
        reader.read_exact(&mut body)?;
        if !report {
            writer.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        }
        count.fetch_add(1, Ordering::Relaxed);
        let answer = r#"{"status":"accepted"}"#;
        // One write: a head and a body in two small segments would wait out the client's
        // delayed ACK (40 ms a request) and measure that instead of the sender.
        writer.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            )
            .as_bytes(),
        )?;
    }
}

/// The real agent for `secs` seconds: a 60-second period (15 times the reports of the
/// default 15 minutes), meters read every 10 s, a 64 MiB reservation, the CPU of the unified
/// root cgroup and the grid bytes of `lo`.
fn agent(node_bin: &Path, router: &Router, secs: u64) -> anyhow::Result<Vec<Row>> {
    let dir = crate::tempfile_dir()?.join("node");
    // A run before this one's leftovers (same pid) would carry its sequence numbers.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let d = dir.as_path();
    let cgroup = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|c| Path::new(c).join("cpu.stat").exists())
        .context("no cgroup v2 cpu.stat to meter")?;
    let config = d.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "node = \"bench-1\"\nrouter = \"{}\"\nkey = \"{}\"\nstate_dir = \"{}\"\n\
             period_secs = 60\nsample_secs = 10\n\n[cpu]\ncgroup = \"{cgroup}\"\n\n\
             [storage]\ndir = \"{}\"\nreserve_bytes = 67108864\n\n[grid]\ninterface = \"lo\"\n",
            router.url,
            d.join("node.key").display(),
            d.join("state").display(),
            d.join("grid").display(),
        ),
    )?;
    let init = Command::new(node_bin)
        .arg("--config")
        .arg(&config)
        .arg("init")
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (cargo build --release -p quid-node)",
                node_bin.display()
            )
        })?;
    if !init.status.success() {
        bail!("quid-node init: {}", String::from_utf8_lossy(&init.stderr));
    }
    let before = router.acked.load(Ordering::Relaxed);
    let mut child = Command::new(node_bin)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let cpu = proc_cpu_seconds(pid);
    let wall = started.elapsed().as_secs_f64();
    let hwm = proc_status_kib(pid, "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (cpu, hwm) = (cpu?, hwm?);
    let reports = router.acked.load(Ordering::Relaxed) - before;
    if reports == 0 {
        bail!("the agent delivered no report in {secs} s");
    }
    Ok(vec![
        Row {
            measure: "agent_cpu_percent_of_one_core_60s_period",
            value: 100.0 * cpu / wall,
            unit: "%",
        },
        Row {
            measure: "agent_cpu_ms_per_report_60s_period",
            value: 1000.0 * cpu / reports as f64,
            unit: "ms",
        },
        Row {
            measure: "agent_peak_rss",
            value: hwm as f64 / 1024.0,
            unit: "MiB",
        },
        Row {
            measure: "agent_run_seconds",
            value: wall,
            unit: "s",
        },
        Row {
            measure: "agent_reports_acknowledged",
            value: reports as f64,
            unit: "reports",
        },
    ])
}

/// The CPU time `pid` has run, in seconds, from `/proc/pid/schedstat` (nanoseconds: an idle
/// agent uses less than the 10 ms a clock tick of `/proc/pid/stat` can show).
fn proc_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    let ns: u64 = text
        .split_whitespace()
        .next()
        .context("empty /proc schedstat")?
        .parse()?;
    Ok(ns as f64 * 1e-9)
}

/// A `kB` line of `/proc/pid/status`.
fn proc_status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

fn sample_report(seq: u64) -> Report {
    Report {
        node: "bench-1".into(),
        seq,
        period_start: rfc3339(1_767_225_600),
        period_end: rfc3339(1_767_226_500),
        cpu_core_micros: 900_000_000,
        storage_byte_seconds: 900 * 1_000_000_000,
        energy_microjoules: 9_000_000_000,
        energy_source: Some(EnergySource::Shelly),
        grid_bytes_sent: 1_000_000,
        grid_bytes_received: 2_000_000,
        signature: String::new(),
    }
}

/// Reports signed per second, and signed and delivered (one HTTP request each, kept alive,
/// acknowledged) per second, on one thread.
fn sign_and_deliver(router: &Router) -> anyhow::Result<Vec<Row>> {
    let key = quid::settlement::report::keygen()?;
    let n = 5_000u64;
    let t = Instant::now();
    for seq in 0..n {
        sample_report(seq).sign(&key)?;
    }
    let signed = n as f64 / t.elapsed().as_secs_f64();
    let agent = ureq::AgentBuilder::new().build();
    // post_once adds the endpoint's path to the router's base URL.
    let url = &router.url;
    let t = Instant::now();
    for seq in 0..n {
        let mut r = sample_report(seq);
        r.sign(&key)?;
        match quid_report::delivery::post_once(&agent, url, &r) {
            quid_report::delivery::Delivery::Acknowledged(_) => {}
            other => bail!("the stand-in router did not acknowledge: {other:?}"),
        }
    }
    let delivered = n as f64 / t.elapsed().as_secs_f64();
    Ok(vec![
        Row {
            measure: "reports_signed_per_second",
            value: signed,
            unit: "reports/s",
        },
        Row {
            measure: "reports_signed_and_delivered_per_second",
            value: delivered,
            unit: "reports/s",
        },
    ])
}

/// The router's side of an audit: judging an honest answer (16 chunks made from the key, 16
/// proofs), alone and on every core; and the challenge and answer as JSON on the wire.
fn audits() -> anyhow::Result<Vec<Row>> {
    let key = FillKey::generate()?;
    let filled = 6_103_515u64; // 100 GB of 16 KiB chunks
    let now = 0;
    let challenge = Challenge::new("farm-pi-1", filled, now + 30_000)?;
    let nonce = challenge.nonce_bytes().context("nonce")?;
    // The node's answer, made here from the key as an honest node reads it from disk.
    let answer = quid_report::audit::Answer {
        nonce: challenge.nonce.clone(),
        proofs: challenge
            .chunks
            .iter()
            .map(|&i| hex::encode(proof(&nonce, &key.chunk(i))))
            .collect(),
    };
    let wire = serde_json::to_vec(&challenge)?.len() + serde_json::to_vec(&answer)?.len();
    let mut per_audit = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let c = Challenge::new("farm-pi-1", filled, now + 30_000)?;
        if !key.judge(&challenge, &answer, now).passed() {
            bail!("an honest answer failed");
        }
        std::hint::black_box(c);
        per_audit.push(t.elapsed().as_secs_f64() * 1e6);
    }
    per_audit.sort_by(f64::total_cmp);
    let median = per_audit[per_audit.len() / 2];
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let run_for = Duration::from_secs(3);
    let t = Instant::now();
    let done: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while t.elapsed() < run_for {
                        n += u64::from(key.judge(&challenge, &answer, now).passed());
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let per_second = done as f64 / t.elapsed().as_secs_f64();
    Ok(vec![
        Row {
            measure: "audit_router_cpu_us",
            value: median,
            unit: "us",
        },
        Row {
            measure: "audits_per_second_all_cores",
            value: per_second,
            unit: "audits/s",
        },
        Row {
            measure: "audit_cores",
            value: threads as f64,
            unit: "cores",
        },
        Row {
            measure: "audit_wire_bytes",
            value: wire as f64,
            unit: "bytes",
        },
        Row {
            measure: "audit_node_read_bytes",
            value: (challenge.chunks.len() * CHUNK_BYTES) as f64,
            unit: "bytes",
        },
    ])
}
