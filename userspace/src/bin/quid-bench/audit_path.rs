//! `quid-bench node`, the audits over the real path: the router's audit routes served by
//! quid's HTTP server on loopback, with the book on a real store, and nodes that sign every
//! request, take the due challenge and answer it from their fill. Measures the bytes on the
//! wire per audit (both requests and answers, headers included), the router's CPU per audit
//! (the process's CPU time less the client threads' own) and audits per second sustained.
//! The schedule runs on a manual clock advanced one audit interval per round, so every node
//! is due once a round.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    sync::{Arc, Barrier, Mutex},
    time::Instant,
};

use anyhow::{Context as _, bail};
use ed25519_dalek::SigningKey;
use quid::{
    clock::Clock,
    settlement::{
        audit_routes::{self, AuditApi},
        audits::{AuditBook, AuditConfig},
        nodes::{Node, Nodes},
    },
    store::Store,
};
use quid_report::{
    audit::{Answer, CHUNK_BYTES, proof},
    audit_request::{
        AnswerRequest, Due, DueRequest, FillRequest, NODE_HEADER, SIGNATURE_HEADER, sign,
    },
};

use super::node_row::Row;

const NODES: usize = 256;
const ROUNDS: usize = 12;
const CLIENTS: usize = 4;
/// Chunks each node holds: enough that every challenge asks for 16.
const HELD: u32 = 32;

/// A keep-alive HTTP/1.1 client that counts the bytes it sends and receives.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    bytes: u64,
}

impl Conn {
    fn open(port: u16) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            bytes: 0,
        })
    }

    fn post(
        &mut self,
        path: &str,
        node: &str,
        key: &SigningKey,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             {NODE_HEADER}: {node}\r\n{SIGNATURE_HEADER}: {}\r\nContent-Length: {}\r\n\r\n",
            sign(key, body),
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.writer.write_all(&request)?;
        self.bytes += request.len() as u64;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        self.bytes += line.len() as u64;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("status line")?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            self.bytes += line.len() as u64;
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        self.bytes += length as u64;
        Ok((status, body))
    }
}

fn thread_cpu_secs() -> f64 {
    super::reports::rusage_seconds(libc::RUSAGE_THREAD)
}

fn process_cpu_secs() -> f64 {
    super::reports::rusage_seconds(libc::RUSAGE_SELF)
}

struct BenchNode {
    id: String,
    key: SigningKey,
    chunks: Vec<Vec<u8>>,
    at_ms: i64,
}

/// The rows: wire bytes and router CPU per audit, audits per second.
pub fn rows() -> anyhow::Result<Vec<Row>> {
    let dir = crate::tempfile_dir()?.join("audit-path");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(&dir)?.audit_connection()?;
    let config = AuditConfig {
        interval_secs: 60,
        deadline_secs: 30,
        fill_bytes_per_sec: 1 << 30,
        max_skew_secs: 86_400,
    };
    let start = 1_800_000_000;
    let clock = Clock::manual(start);
    let mut nodes: Vec<BenchNode> = (0..NODES)
        .map(|i| BenchNode {
            id: format!("bench-{i}"),
            key: SigningKey::from_bytes(&[u8::try_from(i % 251).unwrap_or(0) + 1; 32]),
            chunks: Vec::new(),
            at_ms: 0,
        })
        .collect();
    // Distinct keys: the seed byte repeats every 251 nodes, so vary one more byte.
    for (i, n) in nodes.iter_mut().enumerate() {
        let mut seed = n.key.to_bytes();
        seed[31] = u8::try_from(i / 251).unwrap_or(0);
        n.key = SigningKey::from_bytes(&seed);
    }
    let registered: Nodes = nodes
        .iter()
        .map(|n| Node {
            id: n.id.clone(),
            subscriber: "bench".into(),
            key: n.key.verifying_key(),
            cpu_cores: 4,
            storage_bytes: 1 << 30,
            max_watts: 10,
        })
        .collect();
    let registered = Arc::new(registered);
    let api = AuditApi {
        book: Arc::new(Mutex::new(AuditBook::open(config, store)?)),
        nodes: Arc::new(move || Some(registered.clone())),
        clock: clock.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    runtime.spawn(quid::http::serve::serve(
        "bench",
        listener,
        audit_routes::router(api),
        quid::http::serve::HttpLimits::default(),
        None,
        Arc::default(),
    ));

    // The fill: each node fetches and keeps its first chunks (not measured).
    let now_ms = |clock: &Clock| clock.now_ms().unwrap_or(0);
    let mut conn = Conn::open(port)?;
    for n in &mut nodes {
        n.at_ms = now_ms(&clock);
        let body = serde_json::to_vec(&FillRequest {
            node: n.id.clone(),
            at_ms: n.at_ms,
            from: 0,
            count: HELD,
        })?;
        let (status, bytes) = conn.post("/v1/audits/fill", &n.id.clone(), &n.key.clone(), &body)?;
        if status != 200 {
            bail!("fill refused: {}", String::from_utf8_lossy(&bytes));
        }
        n.chunks = bytes.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect();
    }

    let groups: Vec<Vec<BenchNode>> = {
        let mut g: Vec<Vec<BenchNode>> = (0..CLIENTS).map(|_| Vec::new()).collect();
        for (i, n) in nodes.into_iter().enumerate() {
            g[i % CLIENTS].push(n);
        }
        g
    };
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let cpu_before = process_cpu_secs();
    let t = Instant::now();
    let handles: Vec<_> = groups
        .into_iter()
        .map(|mut group| {
            let barrier = barrier.clone();
            let clock = clock.clone();
            std::thread::spawn(move || -> anyhow::Result<(u64, u64, f64)> {
                let cpu0 = thread_cpu_secs();
                let mut conn = Conn::open(port)?;
                let (mut audits, mut bytes) = (0u64, 0u64);
                for _ in 0..ROUNDS {
                    barrier.wait();
                    for n in &mut group {
                        let before = conn.bytes;
                        n.at_ms = (n.at_ms + 1).max(clock.now_ms().unwrap_or(0));
                        let body = serde_json::to_vec(&DueRequest {
                            node: n.id.clone(),
                            at_ms: n.at_ms,
                            held: u64::from(HELD),
                        })?;
                        let (status, due) = conn.post("/v1/audits/due", &n.id, &n.key, &body)?;
                        if status != 200 {
                            bail!("due refused: {}", String::from_utf8_lossy(&due));
                        }
                        let due: Due = serde_json::from_slice(&due)?;
                        let c = due.challenge.context("no challenge due")?;
                        let nonce = c.nonce_bytes().context("nonce")?;
                        let answer = Answer {
                            nonce: c.nonce.clone(),
                            proofs: c
                                .chunks
                                .iter()
                                .map(|&i| {
                                    hex::encode(proof(
                                        &nonce,
                                        &n.chunks[usize::try_from(i).unwrap_or(0)],
                                    ))
                                })
                                .collect(),
                        };
                        n.at_ms += 1;
                        let body = serde_json::to_vec(&AnswerRequest {
                            node: n.id.clone(),
                            at_ms: n.at_ms,
                            answer,
                        })?;
                        let (status, verdict) =
                            conn.post("/v1/audits/answer", &n.id, &n.key, &body)?;
                        if status != 200 {
                            bail!(
                                "an honest answer failed: {}",
                                String::from_utf8_lossy(&verdict)
                            );
                        }
                        audits += 1;
                        bytes += conn.bytes - before;
                    }
                    barrier.wait();
                }
                Ok((audits, bytes, thread_cpu_secs() - cpu0))
            })
        })
        .collect();
    for _ in 0..ROUNDS {
        barrier.wait();
        barrier.wait();
        clock.advance(i64::try_from(config.interval_secs).unwrap_or(60));
    }
    let (mut audits, mut bytes, mut client_cpu) = (0u64, 0u64, 0.0);
    for h in handles {
        let (a, b, c) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a bench client panicked"))??;
        audits += a;
        bytes += b;
        client_cpu += c;
    }
    let secs = t.elapsed().as_secs_f64();
    let router_cpu = (process_cpu_secs() - cpu_before - client_cpu).max(0.0);
    drop(runtime);
    Ok(vec![
        Row {
            measure: "audit_http_wire_bytes",
            value: bytes as f64 / audits as f64,
            unit: "bytes",
        },
        Row {
            measure: "audit_http_router_cpu_us",
            value: router_cpu / audits as f64 * 1e6,
            unit: "us",
        },
        Row {
            measure: "audit_http_audits_per_second",
            value: audits as f64 / secs,
            unit: "audits/s",
        },
        Row {
            measure: "audit_http_audits_measured",
            value: audits as f64,
            unit: "audits",
        },
    ])
}
