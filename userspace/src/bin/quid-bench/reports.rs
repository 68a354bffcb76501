//! `quid-bench reports`: accepted node reports per second through the daemon's own intake and
//! server (HTTP on loopback, signature checks, the group commit and its fsyncs) into a store
//! in a temporary directory; writes `bench/reports.json`.
//!
//! The load: pre-signed reports over keep-alive HTTP/1.1 connections, one request at a time
//! on each. `single_node`: one connection sends one node's reports in order (a node's
//! reports must arrive in sequence, so this is latency-bound: one commit per report).
//! `many_nodes`: many connections (`--connections`, 512 by default) from loopback addresses
//! 127.0.0.2 on, [`PER_SOURCE`] each (the server's default limit is 16 per address), each
//! owning a share of the nodes and sending each node's reports in order: as many reports in
//! flight as connections, so a commit's batch holds what arrived during the previous one.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::{Context as _, bail};
use ed25519_dalek::SigningKey;
use quid::{
    settlement::admission::Limits,
    settlement::intake::{Budget, Intake, router},
    settlement::nodes::{Node, Nodes},
    settlement::report::{Report, rfc3339},
    store::{Changes, Store},
};
use serde::Serialize;
use tokio::net::{TcpSocket, TcpStream};

/// Connections per loopback source address: half the server's default limit of 16.
const PER_SOURCE: usize = 8;

#[derive(Serialize)]
struct Row {
    scenario: &'static str,
    nodes: u64,
    reports_per_second: f64,
    /// Connections sending at once (each one request at a time).
    connections: usize,
    /// Reports per committed batch, on average.
    mean_batch: f64,
    /// CPU time (user and system, every thread of the benchmark: server, intake, writer and
    /// clients) per accepted report: what bounds the rate on a machine with nothing else to
    /// run, whatever the load was during the measurement.
    cpu_us_per_report: f64,
    /// The machine's 1-minute load average when the scenario started (the benchmark shares
    /// two cores with whatever else runs).
    load_1min: f64,
}

/// Both scenarios: `total` reports from 10,000 nodes over `connections`, a fifth of that
/// from one node over one connection.
pub fn run(out: PathBuf, total: u64, connections: usize) -> anyhow::Result<()> {
    let rows = vec![
        scenario("single_node", 1, total / 5, 1)?,
        scenario("many_nodes", 10_000, total, connections.max(1))?,
    ];
    crate::write_json(&out, "reports.json", &rows)
}

fn scenario(
    name: &'static str,
    nodes_n: u64,
    total: u64,
    connections: usize,
) -> anyhow::Result<Row> {
    let dir = crate::tempfile_dir()?.join(name);
    std::fs::create_dir_all(&dir)?;
    let keys: Vec<SigningKey> = (0..nodes_n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&i.to_le_bytes());
            SigningKey::from_bytes(&seed)
        })
        .collect();
    let nodes: Nodes = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Node {
            id: format!("n{i}"),
            subscriber: format!("s{i}"),
            key: k.verifying_key(),
            cpu_cores: 64,
            storage_bytes: 1 << 40,
            max_watts: 1000,
        })
        .collect();
    // Report k of node n covers its own 60 s slot, within the last 30 days.
    let base = quid::clock::Clock::system().now_i64()? - 30 * 86_400;
    // Each connection gets its nodes' reports, each node's in sequence order.
    let mut shares: Vec<Vec<Vec<u8>>> = vec![Vec::new(); connections];
    for j in 0..total {
        let (n, k) = (j % nodes_n, j / nodes_n);
        let start = base + i64::try_from(k)? * 60;
        let mut r = Report {
            node: format!("n{n}"),
            seq: k + 1,
            period_start: rfc3339(start),
            period_end: rfc3339(start + 60),
            cpu_core_micros: 60_000_000,
            storage_byte_seconds: 1_000_000_000,
            energy_microjoules: 600_000_000,
            energy_source: None,
            grid_bytes_sent: 1000,
            grid_bytes_received: 2000,
            signature: String::new(),
        };
        r.sign(&keys[usize::try_from(n)?])?;
        shares[usize::try_from(n)? % connections].push(serde_json::to_vec(&r)?);
    }
    let store = metered_store(&dir, &nodes, base - 60)?;
    // No rate limit in the way: the benchmark measures the intake itself.
    let unlimited = Budget {
        rate: 1e9,
        burst: 1e9,
    };
    let intake = Arc::new(Mutex::new(Intake::new(
        nodes,
        store,
        Limits {
            max_period_secs: 86_400,
            max_skew_secs: 300,
        },
        unlimited,
        unlimited,
    )?));
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    // The daemon's own server, with its default limits.
    server.spawn(quid::http::serve::serve(
        "reports",
        listener,
        router(intake.clone(), 16 * 1024),
        quid::http::serve::HttpLimits::default(),
        None,
        Arc::default(),
    ));
    let load_1min = load_average();
    // The clients on a runtime of their own: one thread drives every connection.
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let accepted: u64 = clients.block_on(async {
        let tasks: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(c, bodies)| {
                let last = u8::try_from(2 + c / PER_SOURCE).unwrap_or(2);
                tokio::spawn(client(addr, Ipv4Addr::new(127, 0, 0, last), bodies))
            })
            .collect();
        let mut accepted = 0;
        for t in tasks {
            accepted += t.await??;
        }
        anyhow::Ok(accepted)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let cpu_us_per_report = (cpu_seconds() - cpu_before) * 1e6 / crate::as_f64(accepted.max(1));
    let rate = crate::as_f64(accepted) / secs;
    let stats = intake
        .lock()
        .map_err(|_| anyhow::anyhow!("the intake's lock was poisoned"))?
        .batch_stats();
    let mean_batch = crate::as_f64(stats.reports) / crate::as_f64(stats.batches.max(1));
    log::info!(
        "{name:>12}: {accepted} of {total} accepted in {secs:.2} s: {rate:.0} reports/s \
         ({connections} connections, {mean_batch:.1} reports per batch, {cpu_us_per_report:.0} µs CPU \
         per report, load {load_1min:.2})"
    );
    if accepted != total {
        bail!("{name}: only {accepted} of {total} reports were accepted");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Row {
        scenario: name,
        nodes: nodes_n,
        reports_per_second: rate,
        connections,
        mean_batch,
        cpu_us_per_report,
        load_1min,
    })
}

/// A store in `dir` that has metered every node's subscriber, and seen every node, since
/// `since` (quid refuses reports for time it never metered).
fn metered_store(dir: &Path, nodes: &Nodes, since: i64) -> anyhow::Result<Store> {
    let mut store = Store::open(dir)?;
    store.nodes_seen(nodes.by_id.keys().map(String::as_str), since)?;
    let subscribers: Vec<String> = nodes.by_id.values().map(|n| n.subscriber.clone()).collect();
    store.commit_with(
        &[],
        &[],
        &Changes {
            started: &subscribers,
            at: u64::try_from(since)?,
            ..Changes::default()
        },
    )?;
    Ok(store)
}

/// One keep-alive connection from `source` posting `bodies` in order: how many were accepted.
async fn client(addr: SocketAddr, source: Ipv4Addr, bodies: Vec<Vec<u8>>) -> anyhow::Result<u64> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .with_context(|| format!("binding a client socket to {source}"))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut accepted, mut pending) = (0, Vec::with_capacity(1024));
    for body in bodies {
        let mut request = format!(
            "POST /v1/reports HTTP/1.1\r\nHost: quid\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        write_all(&stream, &request).await?;
        let answer = read_answer(&stream, &mut pending).await?;
        if answer.windows(10).any(|w| w == b"\"accepted\"") {
            accepted += 1;
        }
    }
    Ok(accepted)
}

/// The body of the next answer on `stream`; `pending` keeps bytes read beyond it.
async fn read_answer(stream: &TcpStream, pending: &mut Vec<u8>) -> anyhow::Result<Vec<u8>> {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&pending[..end])?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .context("an answer without Content-Length")?;
            let whole = end + 4 + length;
            if pending.len() >= whole {
                let body = pending[end + 4..whole].to_vec();
                pending.drain(..whole);
                return Ok(body);
            }
        }
        let mut chunk = [0u8; 4096];
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(0) => bail!("the intake closed the connection mid-answer"),
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes all of `bytes` (tokio's `io-util` extension traits are not built for quid).
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> anyhow::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// User and system CPU seconds this process has used.
fn cpu_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_SELF)
}

/// User and system CPU seconds of `who` (`RUSAGE_SELF`, `RUSAGE_THREAD`).
pub(crate) fn rusage_seconds(who: libc::c_int) -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given, which points to
    // one; on failure it writes nothing and the zeroed value reads as no time.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// The 1-minute load average (0 where /proc/loadavg cannot be read).
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}
