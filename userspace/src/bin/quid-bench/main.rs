//! `quid-bench xdp`: per-packet cost of quid's XDP accounting against the floor (`pass`), the
//! ideal (`one_hash`: one exact-match hash lookup plus a per-CPU counter) and the common
//! design (`trie`: one LPM-trie lookup plus a counter), measured in the kernel with
//! BPF_PROG_TEST_RUN, and their live-frames throughput (module `xdp`). Run by `cargo xtask
//! bench`; writes `bench/xdp.json` and `bench/xdp.md`.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Instant,
};

mod audit_path;
mod books;
mod live;
mod metrics;
mod node;
mod node_row;
mod planner;
mod reports;
mod trials;
mod xdp;
mod zipf;

use anyhow::{Context as _, bail};
use aya::maps::{Array, MapData};
use clap::{Parser, Subcommand};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use quid::{
    config::KernelLog,
    kernel::loader::Datapath,
    kernel::sizes::Sizes,
    subscribers::table::{Subscriber, Table},
};
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
        #[arg(long, default_value_t = 50_000)]
        repeat: u32,
        /// Trials per measurement; the median is reported. Many short trials rather than a
        /// few long ones: this VM drifts by up to 2x within seconds, and a median of many
        /// alternating pairs (plain and PPPoE) is what survives it.
        #[arg(long, default_value_t = 21)]
        trials: usize,
        /// Frames per live-frames throughput trial.
        #[arg(long, default_value_t = 2_000_000)]
        live_frames: u32,
    },
    /// What the node agent and the storage audit cost (bench/node.json).
    Node {
        /// Directory for node.json.
        #[arg(long, default_value = "bench")]
        out: PathBuf,
        /// The release `quid-node` binary.
        #[arg(long)]
        node_bin: PathBuf,
        /// Seconds the agent runs (two 60-second periods at least).
        #[arg(long, default_value_t = 150)]
        agent_secs: u64,
    },
    /// Accepted node reports per second, end to end (HTTP, verification, durable commit).
    Reports {
        /// Directory for reports.json.
        #[arg(long, default_value = "bench")]
        out: PathBuf,
        /// Reports of the many-nodes scenario (the single node sends a fifth of them).
        #[arg(long, default_value_t = 100_000)]
        reports: u64,
        /// Connections of the many-nodes scenario, each one request at a time (at most
        /// 1,016: 8 from each of 127 loopback addresses).
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u16).range(1..=1016))]
        connections: u16,
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
    /// A month's hourly export (CSV, Parquet), tariff simulation and report (bench/planner.json).
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
        /// Only these measures (comma-separated; all by default).
        #[arg(long, value_enum, value_delimiter = ',')]
        measures: Vec<planner::Measure>,
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

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        Command::Xdp {
            out,
            sizes,
            repeat,
            trials,
            live_frames,
        } => xdp::run(xdp::Options {
            out,
            sizes,
            repeat,
            trials,
            live_frames,
        }),
        Command::Registry { out, subscribers } => registry_bench(out, subscribers),
        Command::Planner {
            out,
            subscribers,
            hours,
            scratch,
            measures,
        } => planner::run(&out, subscribers, hours, &scratch, &measures),
        Command::Metrics { out } => metrics::run(&out),
        Command::Reports {
            out,
            reports,
            connections,
        } => reports::run(out, reports, usize::from(connections)),
        Command::Node {
            out,
            node_bin,
            agent_secs,
        } => node::run(out, &node_bin, agent_secs),
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

    // Live bindings: one address at a time handed to a subscriber, as a RADIUS Start does.
    // The addresses are those the 1% change freed (inside the pool), each to a subscriber of
    // its own. Timed to the flip, when the daemon answers; the other generation follows after
    // the 20 ms grace, before the next change.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let mut binds = Vec::new();
    for k in 0..200u32 {
        let at = usize::try_from(k * 997)? % reg.table().subscribers.len();
        let mut prefixes = reg.table().subscribers[at].prefixes.clone();
        prefixes.push(IpNet::V4(Ipv4Net::new(v4_of(k), 32)?));
        let started = Instant::now();
        reg.apply_prefixes(&mut dp, vec![(at, prefixes)])?;
        // Counting by the new table from here: the daemon answers now.
        binds.push(started.elapsed().as_secs_f64());
        reg.catch_up(&mut dp)?;
    }
    binds.sort_by(f64::total_cmp);
    row("bind_one", "rows_p50", binds[binds.len() / 2]);
    row("bind_one", "rows_p99", binds[binds.len() * 99 / 100]);
    log::info!("{} rewrites of a whole generation so far", reg.rewrites());

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
    // A reload's books: the 1% change recorded by its rows (as the daemon does), then the
    // same table recorded whole (as it did before, and still does at start).
    let mut t4 = reg.table().clone();
    for s in t4.subscribers.iter_mut().step_by(100) {
        s.plan = "bench-2".into();
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (change, baselines) = reg.apply(&mut dp, t4)?;
    let started = Instant::now();
    books.install_change(reg.table(), &change.rows, reg.slots(), &baselines)?;
    row("books_1pct", "rows", started.elapsed().as_secs_f64());
    let started = Instant::now();
    books.install(reg.table(), reg.slots(), &baselines)?;
    row("books_1pct", "whole", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);

    write_json(&out, "registry.json", &rows)
}

/// Writes `rows` as pretty JSON to `out/file`, creating `out`.
pub(crate) fn write_json(
    out: &std::path::Path,
    file: &str,
    rows: &impl Serialize,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join(file), serde_json::to_string_pretty(rows)? + "\n")?;
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

/// A scratch directory of this process under the system's temporary directory.
pub(crate) fn tempfile_dir() -> anyhow::Result<PathBuf> {
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
pub(crate) fn as_f64(n: u64) -> f64 {
    u32::try_from(n).map_or_else(|_| f64::from(u32::MAX), f64::from)
}
