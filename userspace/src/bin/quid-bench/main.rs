//! `quid-bench xdp`: per-packet cost of quid's XDP accounting against the floor (`pass`), the
//! ideal (`one_hash`: one exact-match hash lookup plus a per-CPU counter) and the common
//! design (`trie`: one LPM-trie lookup plus a counter), measured in the kernel with
//! BPF_PROG_TEST_RUN. Run by `cargo xtask bench`; writes `bench/xdp.json` and `bench/xdp.md`.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Instant,
};

mod books;
mod metrics;
mod planner;

use anyhow::{Context as _, bail};
use aya::{
    maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key},
    programs::{TestRun, TestRunOptions},
};
use clap::{Parser, Subcommand};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use quid::{
    config::KernelLog,
    kernel::loader::Datapath,
    kernel::sizes::Sizes,
    kernel::subscriber_maps as registry,
    kernel::test_frames::Ethernet,
    subscribers::table::{Subscriber, Table},
};
use quid_common::{BenchSpread, v6_mask};
use serde::Serialize;

/// The benchmark object: quid's accounting code plus the baseline programs.
static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/quid-bench"));

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per-packet cost of the XDP programs.
    Xdp {
        /// Directory for xdp.json and xdp.md.
        #[arg(long, default_value = "bench")]
        out: PathBuf,
        /// Table sizes to measure.
        #[arg(long, value_delimiter = ',', default_values_t = [1_000u32, 100_000, 1_000_000])]
        sizes: Vec<u32>,
        /// BPF_PROG_TEST_RUN repetitions per trial.
        #[arg(long, default_value_t = 200_000)]
        repeat: u32,
        /// Trials per measurement; the median is reported.
        #[arg(long, default_value_t = 5)]
        trials: usize,
    },
    /// Accepted node reports per second, end to end (HTTP, verification, durable commit).
    Reports {
        /// Directory for reports.json.
        #[arg(long, default_value = "bench")]
        out: PathBuf,
        /// Reports per scenario.
        #[arg(long, default_value_t = 20_000)]
        reports: u64,
    },
    /// The Prometheus exposition for many subscribers: rendered per interval, and scraped.
    Metrics {
        /// Directory for metrics.json.
        #[arg(long, default_value = "bench")]
        out: PathBuf,
    },
    /// `quid ledger verify` on a ledger of daily settlement debits: seconds per entry, and
    /// projected to a month at 1,000,000 subscribers (rows merged into books.json).
    Ledger {
        /// Directory for books.json.
        #[arg(long, default_value = "bench")]
        out: PathBuf,
        /// Subscribers, each with one debit per day.
        #[arg(long, default_value_t = 1_000_000)]
        subscribers: u64,
        /// Days of debits to write and verify (the month is projected from them).
        #[arg(long, default_value_t = 3)]
        days: u64,
        /// Where to build the store (a directory with room for about 200 bytes per entry).
        #[arg(long, default_value = "/var/tmp")]
        scratch: PathBuf,
    },
    /// The books: interval commits, a simulated year, one subscriber's month (rows merged
    /// into books.json).
    Books {
        /// Directory for books.json.
        #[arg(long, default_value = "bench")]
        out: PathBuf,
        /// Active subscribers of the commit and the query benchmarks.
        #[arg(long, default_value_t = 1_000_000)]
        subscribers: u32,
        /// Subscribers of the simulated year.
        #[arg(long, default_value_t = 1_000)]
        sim_subscribers: u32,
        /// Days simulated.
        #[arg(long, default_value_t = 365)]
        sim_days: u64,
        /// Seconds between the simulated intervals.
        #[arg(long, default_value_t = 1_800)]
        sim_interval: u64,
        /// Hours of hourly rows per subscriber in the query benchmark's store.
        #[arg(long, default_value_t = 720)]
        query_hours: u64,
        /// Where to build the stores (the query store needs about 32 bytes per row).
        #[arg(long, default_value = "/var/tmp")]
        scratch: PathBuf,
    },
    /// A month's hourly export (CSV, Parquet) and tariff simulation (bench/planner.json).
    Planner {
        /// Directory for planner.json.
        #[arg(long, default_value = "bench")]
        out: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        subscribers: u32,
        /// Hours of hourly rows per subscriber (720: a 30-day month).
        #[arg(long, default_value_t = 720)]
        hours: u64,
        /// Where to build the store (about 32 bytes per row).
        #[arg(long, default_value = "/var/tmp")]
        scratch: PathBuf,
    },
    /// Loading, changing and reading a large subscriber table, and writing an interval.
    Registry {
        /// Directory for registry.json.
        #[arg(long, default_value = "bench")]
        out: PathBuf,
        /// Subscribers (each with an IPv4 /32 and an IPv6 /56).
        #[arg(long, default_value_t = 1_000_000)]
        subscribers: u32,
    },
}

#[derive(Serialize, Clone)]
struct Row {
    program: &'static str,
    family: &'static str,
    subscribers: u32,
    keys: &'static str,
    ns_per_packet: f64,
    /// The machine, on every row so that rows from different machines can be merged.
    cpu: String,
    kernel: String,
}

struct Report {
    cpu: String,
    kernel: String,
    repeat: u32,
    trials: usize,
    rows: Vec<Row>,
}

const PROGRAMS: [(&str, &str); 4] = [
    ("pass", "bench_pass"),
    ("one_hash", "bench_one_hash"),
    ("trie", "bench_trie"),
    ("quid", "bench_quid"),
];

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        Command::Xdp {
            out,
            sizes,
            repeat,
            trials,
        } => xdp(out, sizes, repeat, trials),
        Command::Registry { out, subscribers } => registry_bench(out, subscribers),
        Command::Planner {
            out,
            subscribers,
            hours,
            scratch,
        } => planner::run(&out, subscribers, hours, &scratch),
        Command::Metrics { out } => metrics::run(&out),
        Command::Reports { out, reports } => reports_bench(out, reports),
        Command::Ledger {
            out,
            subscribers,
            days,
            scratch,
        } => ledger_bench(&out, subscribers, days, &scratch),
        Command::Books {
            out,
            subscribers,
            sim_subscribers,
            sim_days,
            sim_interval,
            query_hours,
            scratch,
        } => {
            let sizes = books::Sizes {
                subscribers,
                sim_subscribers,
                sim_days,
                sim_interval,
                query_hours,
            };
            merge_books(&out, books::run(&sizes, &scratch)?)
        }
    }
}

#[derive(Serialize)]
struct RegistryRow {
    measure: &'static str,
    subscribers: u32,
    method: &'static str,
    seconds: f64,
    /// The process's peak resident memory after the measurement (VmHWM).
    peak_rss_bytes: u64,
}

fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn registry_bench(out: PathBuf, n: u32) -> anyhow::Result<()> {
    use quid::{kernel::mmap_array::MappedArray, metering::interval::Books, store::Store};
    use quid_common::SubscriberCounters;

    let mut rows = Vec::new();
    let mut row = |measure, method, seconds: f64| {
        log::info!("{measure:>14} {method:>10} {n:>8}: {seconds:8.3} s");
        rows.push(RegistryRow {
            measure,
            subscribers: n,
            method,
            seconds,
            peak_rss_bytes: peak_rss(),
        });
    };
    let sizes = Sizes {
        subscribers: n + n / 50,
        prefixes: n + n / 50,
        pool_v4: n + n / 50,
        pool_v6: n + n / 50,
    };
    let t = table(n)?;
    // 1%: half removed, half added at new addresses; first the lowest addresses removed and
    // the new ones at the top, then (from there) every 200th removed and 0.5% more added.
    let change = n / 100;
    let mut t2 = t.clone();
    t2.subscribers.drain(..(change / 2) as usize);
    t2.subscribers
        .extend(table(n + change / 2)?.subscribers.drain(n as usize..));
    let mut t3 = t2.clone();
    let mut position = 0;
    t3.subscribers.retain(|_| {
        position += 1;
        position % 200 != 0
    });
    t3.subscribers.extend(
        table(n + change)?
            .subscribers
            .drain((n + change / 2) as usize..),
    );
    let started = Instant::now();
    let mut dp = Datapath::load(sizes, KernelLog::Off)?;
    let mut reg = quid::kernel::subscriber_maps::Registry::new(quid_common::MAX_HASH_LENGTHS_U32);
    let (_, baselines) = reg.apply(&mut dp, t)?;
    row("load", "generations", started.elapsed().as_secs_f64());

    for (table, method) in [(t2, "diff_flip"), (t3, "diff_flip_scattered")] {
        // Changes come seconds apart in the daemon (the file is watched every second): the
        // table the last one replaced is freed by then, not competing with this one.
        std::thread::sleep(std::time::Duration::from_secs(1));
        let started = Instant::now();
        let (change, _) = reg.apply(&mut dp, table)?;
        row("apply_1pct", method, started.elapsed().as_secs_f64());
        log::info!(
            "{method}: {} added, {} removed, {} changed",
            change.added.len(),
            change.removed.len(),
            change.changed.len()
        );
    }

    // Every slot counted something on CPU 0, so every read has work to do.
    let cpus = quid::kernel::sizes::possible_cpus()?;
    {
        let m = dp.ebpf.map("SUB_COUNTERS").context("SUB_COUNTERS")?;
        let mut w: MappedArray<SubscriberCounters> =
            MappedArray::new(m, "SUB_COUNTERS", sizes.subscribers as usize * cpus, true)?;
        for slot in 0..n as usize {
            let mut c = SubscriberCounters::default();
            c.pairs[0] = quid_common::Counter {
                packets: 1 + slot as u64,
                bytes: 100 * (1 + slot as u64),
            };
            w.set(slot, c);
        }
    }
    let started = Instant::now();
    // Both reads sum every pair of every slot on every CPU, as the daemon does.
    let mut sum = SubscriberCounters::default();
    {
        let m = dp.ebpf.map("SUB_COUNTERS").context("SUB_COUNTERS")?;
        let a: Array<&MapData, SubscriberCounters> = Array::try_from(m)?;
        for slot in 0..n {
            for cpu in 0..u32::try_from(cpus)? {
                sum.add(&a.get(&(cpu * sizes.subscribers + slot), 0)?);
            }
        }
    }
    row("read_all", "per_key", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let all = dp.counters.slots(n as usize);
    let mut mapped = SubscriberCounters::default();
    for c in &all {
        mapped.add(c);
    }
    row("read_all", "mmap", started.elapsed().as_secs_f64());
    if sum != mapped {
        bail!("the two reads disagree: {sum:?} vs {mapped:?}");
    }
    drop(all);

    let dir = tempfile_dir()?;
    let store = Store::open(&dir)?;
    let (mut books, _) = Books::open(
        store,
        dp.meta.instance,
        false,
        quid::clock::Clock::manual(0),
    )?;
    books.install(reg.table(), reg.slots(), &baselines)?;
    let started = Instant::now();
    let summary = books.interval(|s| dp.counters.slot(s), 10)?;
    row("interval_write", "sqlite", started.elapsed().as_secs_f64());
    log::info!("interval wrote {} usage records", summary.active);
    let _ = std::fs::remove_dir_all(&dir);

    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("registry.json"),
        serde_json::to_string_pretty(&rows)? + "\n",
    )?;
    Ok(())
}

#[derive(Serialize)]
struct ReportsRow {
    scenario: &'static str,
    nodes: u64,
    reports_per_second: f64,
}

/// Clients on loopback post pre-signed reports to a real intake (its own store in a temporary
/// directory); the rate counts only answers of `accepted`.
fn reports_bench(out: PathBuf, total: u64) -> anyhow::Result<()> {
    use ed25519_dalek::SigningKey;
    use quid::{
        settlement::admission::Limits,
        settlement::intake::{Intake, router},
        settlement::nodes::{Node, Nodes},
        settlement::report::{Report, rfc3339},
        store::Store,
    };
    use std::sync::{Arc, Mutex};
    const CLIENTS: u64 = 8;
    let mut rows = Vec::new();
    for (scenario, nodes_n) in [("single_node", 1u64), ("many_nodes", 10_000)] {
        let dir = tempfile_dir()?.join(scenario);
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
        // Report j of node n covers its own 60 s slot, within the last 30 days.
        let base = quid::clock::Clock::system().now_i64()? - 30 * 86_400;
        let per_node = total.div_ceil(nodes_n);
        let bodies: Vec<Vec<u8>> = (0..total)
            .map(|j| -> anyhow::Result<Vec<u8>> {
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
                    grid_bytes_sent: 1000,
                    grid_bytes_received: 2000,
                    signature: String::new(),
                };
                r.sign(&keys[usize::try_from(n)?])?;
                Ok(serde_json::to_vec(&r)?)
            })
            .collect::<anyhow::Result<_>>()?;
        let limits = Limits {
            max_period_secs: 86_400,
            max_skew_secs: 300,
        };
        // No rate limit in the way: the benchmark measures the intake itself.
        let unlimited = quid::settlement::intake::Budget {
            rate: 1e9,
            burst: 1e9,
        };
        let intake = Intake::new(nodes, Store::open(&dir)?, limits, unlimited, unlimited)?;
        let app = router(Arc::new(Mutex::new(intake)), 16 * 1024);
        // The daemon's own server, with its limits (generous enough for the 8 clients).
        let (_rt, addr) = serve_loopback("reports", app, 2)?;
        let bodies = Arc::new(bodies);
        let started = Instant::now();
        // Each client sends one node's reports in order (seq must rise per node).
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let bodies = bodies.clone();
                std::thread::spawn(move || {
                    let agent = ureq::AgentBuilder::new().build();
                    let url = format!("http://{addr}/v1/reports");
                    let mut ok = 0u64;
                    for (j, b) in bodies.iter().enumerate() {
                        if (j as u64 % nodes_n) % CLIENTS != c {
                            continue;
                        }
                        if let Ok(r) = agent
                            .post(&url)
                            .set("Content-Type", "application/json")
                            .send_bytes(b)
                            && r.into_string().unwrap_or_default().contains("\"accepted\"")
                        {
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let accepted: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        let secs = started.elapsed().as_secs_f64();
        let rate = accepted as f64 / secs;
        log::info!(
            "{scenario:>12}: {accepted} of {total} accepted in {secs:.2} s: {rate:.0} reports/s ({per_node} per node)"
        );
        if accepted != total {
            bail!("{scenario}: only {accepted} of {total} reports were accepted");
        }
        rows.push(ReportsRow {
            scenario,
            nodes: nodes_n,
            reports_per_second: rate,
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("reports.json"),
        serde_json::to_string_pretty(&rows)? + "\n",
    )?;
    Ok(())
}

/// Serves `app` on a loopback port with the daemon's own server and limits, on a runtime of
/// `workers` threads (kept alive by the returned runtime).
fn serve_loopback(
    name: &'static str,
    app: axum::Router,
    workers: usize,
) -> anyhow::Result<(tokio::runtime::Runtime, std::net::SocketAddr)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.spawn(quid::http::serve::serve(
        name,
        listener,
        app,
        quid::http::serve::HttpLimits::default(),
        None,
        std::sync::Arc::default(),
    ));
    Ok((rt, addr))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("quid-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Subscriber `i` of the benchmark table: IPv4 100.64.0.0 + i (/32) and IPv6
/// 2001:db8:iiii:ii00::/56, the addresses the kernel's `_spread` programs step over.
fn v4_of(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x6440_0000 + i)
}

fn v6_of(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(((0x2001_0db8u128) << 96) | (u128::from(i << 8) << 64))
}

fn table(n: u32) -> anyhow::Result<Table> {
    let subscribers = (0..n)
        .map(|i| {
            Ok(Subscriber {
                id: format!("s{i}"),
                name: String::new(),
                plan: "bench".into(),
                prefixes: vec![
                    IpNet::V4(Ipv4Net::new(v4_of(i), 32)?),
                    IpNet::V6(Ipv6Net::new(v6_of(i), 56)?),
                ],
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Table { subscribers })
}

fn xdp(out: PathBuf, sizes: Vec<u32>, repeat: u32, trials: usize) -> anyhow::Result<()> {
    if sizes.iter().any(|&n| n == 0 || n > 4_000_000) {
        bail!(
            "sizes must be between 1 and 4,000,000 (the 100.64.0.0/10 range holds the IPv4 addresses)"
        );
    }
    let (cpu, kernel) = (cpu_model(), kernel());
    let mut rows = Vec::new();
    for &n in &sizes {
        let started = Instant::now();
        let mut dp = load(n)?;
        log::info!(
            "{n} subscribers loaded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for (family, frame) in [
            (
                "ipv4",
                Ethernet::default().ipv4_udp(v4_of(0), Ipv4Addr::new(203, 0, 113, 1), 64),
            ),
            (
                "ipv6",
                Ethernet::default().ipv6_udp(
                    v6_of(0) | Ipv6Addr::from(1u128),
                    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1),
                    64,
                ),
            ),
        ] {
            for (keys, suffix) in [("hot", ""), ("spread", "_spread")] {
                for (program, entry) in PROGRAMS {
                    let name = format!("{entry}{suffix}");
                    let ns = measure(&mut dp, &name, &frame, repeat, trials)?;
                    log::info!("{program:>8} {family} {n:>8} {keys:>6}: {ns:7.1} ns/packet");
                    rows.push(Row {
                        program,
                        family,
                        subscribers: n,
                        keys,
                        ns_per_packet: ns,
                        cpu: cpu.clone(),
                        kernel: kernel.clone(),
                    });
                }
            }
        }
        // The quid spread program ran `trials` x `repeat` times per family.
        check_counted(&dp, n, 2.0 * f64::from(repeat) * trials as f64)?;
    }
    let report = Report {
        cpu,
        kernel,
        repeat,
        trials,
        rows,
    };
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("xdp.json"),
        serde_json::to_string_pretty(&report.rows)? + "\n",
    )?;
    let md = markdown(&report);
    std::fs::write(out.join("xdp.md"), &md)?;
    print!("{md}");
    Ok(())
}

/// Loads the benchmark object with every table holding `n` subscribers.
fn load(n: u32) -> anyhow::Result<Datapath> {
    let programs: Vec<String> = PROGRAMS
        .iter()
        .flat_map(|(_, entry)| [entry.to_string(), format!("{entry}_spread")])
        .collect();
    let programs: Vec<&str> = programs.iter().map(String::as_str).collect();
    // Pools sized to the table, as an operator would size them for a pool of this many.
    let sizes = Sizes {
        subscribers: n,
        prefixes: n,
        pool_v4: n,
        pool_v6: n,
    };
    let maps = [
        "BENCH_HASH_V4",
        "BENCH_HASH_V6",
        "BENCH_TRIE_V4",
        "BENCH_TRIE_V6",
        "BENCH_COUNTERS",
    ]
    .map(|m| (m, n));
    let mut dp = Datapath::load_object(BENCH_OBJECT, sizes, &maps, KernelLog::Off, &programs)
        .context("loading the benchmark object")?;
    registry::install(&mut dp, &table(n)?, quid_common::MAX_HASH_LENGTHS_U32)?;
    let mask = v6_mask(56);
    {
        let mut h4: HashMap<&mut MapData, u32, u32> =
            HashMap::try_from(dp.ebpf.map_mut("BENCH_HASH_V4").context("BENCH_HASH_V4")?)?;
        for i in 0..n {
            h4.insert(u32::from_ne_bytes(v4_of(i).octets()), i, 0)?;
        }
    }
    {
        let mut h6: HashMap<&mut MapData, [u32; 4], u32> =
            HashMap::try_from(dp.ebpf.map_mut("BENCH_HASH_V6").context("BENCH_HASH_V6")?)?;
        for i in 0..n {
            let w = registry::v6_words(&v6_of(i).octets());
            h6.insert([w[0] & mask[0], w[1] & mask[1], 0, 0], i, 0)?;
        }
    }
    {
        let mut t4: LpmTrie<&mut MapData, u32, u32> =
            LpmTrie::try_from(dp.ebpf.map_mut("BENCH_TRIE_V4").context("BENCH_TRIE_V4")?)?;
        for i in 0..n {
            t4.insert(&Key::new(32, u32::from_ne_bytes(v4_of(i).octets())), i, 0)?;
        }
    }
    {
        let mut t6: LpmTrie<&mut MapData, [u32; 4], u32> =
            LpmTrie::try_from(dp.ebpf.map_mut("BENCH_TRIE_V6").context("BENCH_TRIE_V6")?)?;
        for i in 0..n {
            t6.insert(&Key::new(56, registry::v6_words(&v6_of(i).octets())), i, 0)?;
        }
    }
    let mut spread: Array<&mut MapData, BenchSpread> =
        Array::try_from(dp.ebpf.map_mut("BENCH_SPREAD").context("BENCH_SPREAD")?)?;
    spread.set(0, BenchSpread { entries: n }, 0)?;
    Ok(dp)
}

/// Median ns per packet over `trials` runs of `repeat` repetitions.
fn measure(
    dp: &mut Datapath,
    name: &str,
    frame: &[u8],
    repeat: u32,
    trials: usize,
) -> anyhow::Result<f64> {
    let prog = dp.program(name)?;
    let mut samples = Vec::with_capacity(trials);
    for _ in 0..trials {
        let r = prog.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        })?;
        if r.return_value != 2 {
            bail!("{name} returned {} instead of XDP_PASS", r.return_value);
        }
        samples.push(r.duration.as_nanos() as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// The spread runs must have charged as many different subscribers as uniform random
/// addresses would: proof that the kernel kept the rewritten frame between repetitions.
fn check_counted(dp: &Datapath, n: u32, runs: f64) -> anyhow::Result<()> {
    let m = n.min(10_000) as usize;
    let touched = quid::kernel::counters::subscribers(dp, m)?
        .iter()
        .filter(|c| c.pairs.iter().any(|p| p.packets > 0))
        .count();
    // `runs` uniform draws over n slots leave each slot untouched with probability e^(-runs/n).
    let expected = m as f64 * (1.0 - (-runs / f64::from(n)).exp());
    if (touched as f64) < 0.9 * expected {
        bail!(
            "spread runs charged {touched} of the first {m} subscribers, expected about {expected:.0}: the address did not spread"
        );
    }
    log::info!(
        "spread check: {touched} of the first {m} subscribers charged (about {expected:.0} expected)"
    );
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn find(r: &Report, program: &str, family: &str, n: u32, keys: &str) -> Option<f64> {
    r.rows
        .iter()
        .find(|x| {
            x.program == program && x.family == family && x.subscribers == n && x.keys == keys
        })
        .map(|x| x.ns_per_packet)
}

fn markdown(r: &Report) -> String {
    let mut md = format!(
        "# XDP per-packet cost (BPF_PROG_TEST_RUN)\n\nCPU: {}; kernel {}; median of {} trials of {} repetitions.\n\n\
         All programs except `pass` run the same frame parser; `_spread` rows rewrite the source address to a random \
         table entry before every run (the kernel keeps the frame between repetitions), which adds the cost shown by `pass` spread.\n\n\
         | family | subscribers | keys | pass | one_hash | trie | quid | quid / one_hash | trie / quid |\n|---|---|---|---|---|---|---|---|---|\n",
        r.cpu, r.kernel, r.trials, r.repeat
    );
    let mut sizes: Vec<u32> = r.rows.iter().map(|x| x.subscribers).collect();
    sizes.dedup();
    for family in ["ipv4", "ipv6"] {
        for &n in &sizes {
            for keys in ["hot", "spread"] {
                let get = |p| find(r, p, family, n, keys).unwrap_or(f64::NAN);
                let (pass, one, trie, quid) =
                    (get("pass"), get("one_hash"), get("trie"), get("quid"));
                md += &format!(
                    "| {family} | {n} | {keys} | {pass:.1} | {one:.1} | {trie:.1} | {quid:.1} | {:.2}x | {:.2}x |\n",
                    quid / one,
                    trie / quid
                );
            }
        }
    }
    md += "\nTargets at 1M spread subscribers: quid / one_hash <= 1.5, trie / quid >= 3.\n";
    md
}

/// One row of books.json.
#[derive(Serialize, serde::Deserialize)]
struct BooksRow {
    measure: String,
    subscribers: u64,
    value: f64,
    unit: String,
}

/// Merges `rows` into `out/books.json`, replacing rows of the same measure and subscribers
/// (other parts of the books benchmark write their rows into the same file).
fn merge_books(out: &std::path::Path, rows: Vec<BooksRow>) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let path = out.join("books.json");
    let mut all: Vec<BooksRow> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a list of rows", path.display()))?,
        Err(_) => Vec::new(),
    };
    all.retain(|r| {
        !rows
            .iter()
            .any(|n| n.measure == r.measure && n.subscribers == r.subscribers)
    });
    all.extend(rows);
    std::fs::write(&path, serde_json::to_string_pretty(&all)? + "\n")?;
    Ok(())
}

/// Writes `days` daily debits for `subscribers` into a fresh store, signs a checkpoint, then
/// times what `quid ledger verify` does (open with the integrity check, stream the chain
/// against the checkpoints, check every balance).
fn ledger_bench(
    out: &std::path::Path,
    subscribers: u64,
    days: u64,
    scratch: &std::path::Path,
) -> anyhow::Result<()> {
    use quid::{
        ledger::{chain, chain::NewEntry, checkpoint},
        store::Store,
    };
    let dir = scratch.join(format!("quid-ledger-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> anyhow::Result<(u64, f64, f64)> {
        let day0: u64 = 1_796_083_200;
        {
            let mut store = Store::open(&dir)?;
            let ids: Vec<String> = (0..subscribers).map(|i| format!("s{i:07}")).collect();
            for day in 0..days {
                let start = day0 + day * 86_400;
                let at = quid::store::secs(start + 86_400);
                for chunk in ids.chunks(100_000) {
                    let batch: Vec<NewEntry> = chunk
                        .iter()
                        .map(|id| NewEntry::usage_debit(id, at, -2_916, start, start + 86_400))
                        .collect();
                    store.append(&batch)?;
                }
            }
            let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
            store.write_checkpoint(&key, quid::store::secs(day0 + days * 86_400), None)?;
        }
        let started = Instant::now();
        let store = Store::open(&dir)?;
        let opened = started.elapsed().as_secs_f64();
        let stored = store.checkpoints()?;
        checkpoint::verify_chain(&stored, None)?;
        let books = store.verify_ledger(&checkpoint::Heads::of(&stored))??;
        chain::verify_sums(&books.sums, &books.balances)?;
        let total = started.elapsed().as_secs_f64();
        Ok((u64::try_from(books.entries)?, opened, total))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let (entries, opened, total) = result?;
    let per_entry = total / as_f64(entries);
    // A month of daily settlement: one debit per subscriber per day, 30 days.
    let month = per_entry * as_f64(subscribers.saturating_mul(30));
    println!(
        "ledger verify: {entries} entries in {total:.2} s (open and integrity check {opened:.2} \
         s): {:.3} µs per entry; a month at {subscribers} subscribers: {month:.0} s",
        per_entry * 1e6
    );
    merge_books(
        out,
        vec![
            BooksRow {
                measure: "ledger_verify_seconds_per_month".into(),
                subscribers,
                value: month,
                unit: "s".into(),
            },
            BooksRow {
                measure: "ledger_verify_microseconds_per_entry".into(),
                subscribers,
                value: per_entry * 1e6,
                unit: "µs".into(),
            },
        ],
    )
}

/// A count as f64 for a rate (clamped at u32::MAX, beyond any count measured here).
fn as_f64(n: u64) -> f64 {
    u32::try_from(n).map_or_else(|_| f64::from(u32::MAX), f64::from)
}
