//! `quid-bench xdp`: per-packet cost of quid's XDP accounting against the floor (`pass`), the
//! ideal (`one_hash`) and the common design (`trie`) under hot, uniform and Zipf keys
//! (BPF_PROG_TEST_RUN), and their throughput through the whole XDP path (live frames); each for
//! plain Ethernet and PPPoE session frames of both families.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Instant,
};

use anyhow::{Context as _, bail};
use aya::{
    maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key},
    programs::{TestRun, TestRunOptions},
};
use quid::{
    config::KernelLog, kernel::loader::Datapath, kernel::sizes::Sizes,
    kernel::subscriber_maps as registry, kernel::test_frames::Ethernet,
};
use quid_common::{BENCH_ZIPF_SAMPLES, BenchSpread, v6_mask};
use serde::Serialize;

use super::{BENCH_OBJECT, live, table, trials::median, v4_of, v6_of, zipf};

/// XDP_DROP and XDP_PASS, the verdicts the benchmark programs must return.
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// The key distributions measured: (name in the rows, program suffix, Zipf exponent).
const KEYS: [(&str, &str, Option<f64>); 4] = [
    ("hot", "", None),
    ("spread", "_spread", None),
    ("zipf1.0", "_zipf", Some(1.0)),
    ("zipf1.2", "_zipf", Some(1.2)),
];

/// The keys of the throughput rows: the realistic case.
const LIVE_KEYS: &str = "zipf1.0";

/// The frame families measured, each plain Ethernet family followed by the same packets in a
/// PPPoE session (measured back to back, so that the two see the same machine).
const FAMILIES: [&str; 4] = ["ipv4", "ipv4_pppoe", "ipv6", "ipv6_pppoe"];

/// Most a PPPoE row may cost against the plain row of the same program, size and keys.
const PPPOE_TARGET: f64 = 1.15;

/// Seed of the Zipf permutation and draws, fixed so that every run measures the same keys.
const ZIPF_SEED: u64 = 0x7175_6964;

/// Options of `quid-bench xdp`.
pub struct Options {
    /// Directory for xdp.json and xdp.md.
    pub out: PathBuf,
    /// Table sizes to measure.
    pub sizes: Vec<u32>,
    /// BPF_PROG_TEST_RUN repetitions per trial.
    pub repeat: u32,
    /// Trials per measurement; the median is reported.
    pub trials: usize,
    /// Live frames per throughput trial.
    pub live_frames: u32,
}

#[derive(Serialize, Clone)]
struct Row {
    program: &'static str,
    family: &'static str,
    subscribers: u32,
    keys: &'static str,
    ns_per_packet: f64,
    /// Million packets per second through the whole XDP path (live frames), only on the
    /// throughput rows; their `ns_per_packet` is the same figure as time per frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    mpps: Option<f64>,
    /// How a throughput row was measured; only on those rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<Method>,
    /// On PPPoE rows: the median, over trials run in alternation with the plain family's,
    /// of this row's time over the plain row's (the target's figure: see `measure_pair`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pppoe_over_plain: Option<f64>,
    /// The machine, on every row so that rows from different machines can be merged.
    cpu: String,
    kernel: String,
}

/// How a throughput row was measured.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Method {
    /// BPF_F_TEST_XDP_LIVE_FRAMES: real xdp_frames through the kernel's XDP path.
    LiveFrames,
    /// The kernel refused live frames: the single-frame BPF_PROG_TEST_RUN loop (program only).
    TestRun,
}

impl Method {
    /// The name in the rows and the table.
    fn name(self) -> &'static str {
        match self {
            Method::LiveFrames => "live_frames",
            Method::TestRun => "test_run",
        }
    }
}

struct Report {
    cpu: String,
    kernel: String,
    /// /proc/loadavg when the measurement started: other work on the machine skews it.
    load: String,
    repeat: u32,
    trials: usize,
    live_frames: u32,
    rows: Vec<Row>,
}

const PROGRAMS: [(&str, &str); 4] = [
    ("pass", "bench_pass"),
    ("one_hash", "bench_one_hash"),
    ("trie", "bench_trie"),
    ("quid", "bench_quid"),
];

/// Measures every program at every size, key distribution and family; writes xdp.json and
/// xdp.md.
pub fn run(o: Options) -> anyhow::Result<()> {
    if o.sizes.iter().any(|&n| n == 0 || n > 4_000_000) {
        bail!(
            "sizes must be between 1 and 4,000,000 (the 100.64.0.0/10 range holds the IPv4 addresses)"
        );
    }
    pin_to_one_cpu();
    let (cpu, kernel) = (cpu_model(), kernel());
    let load_avg = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    let row = |program, family, subscribers, keys, ns_per_packet, mpps| Row {
        program,
        family,
        subscribers,
        keys,
        ns_per_packet,
        mpps,
        method: None,
        pppoe_over_plain: None,
        cpu: cpu.clone(),
        kernel: kernel.clone(),
    };
    let mut rows = Vec::new();
    let mut live_allowed = true;
    for &n in &o.sizes {
        let started = Instant::now();
        let mut dp = load(n)?;
        log::info!(
            "{n} subscribers loaded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for (keys, suffix, exponent) in KEYS {
            if let Some(s) = exponent {
                fill_zipf(&mut dp, n, s)?;
            }
            // The `_zipf` variants drop what they count (see the eBPF side).
            let verdict = if exponent.is_some() {
                XDP_DROP
            } else {
                XDP_PASS
            };
            let frames = frames();
            // Per family (FAMILIES order), per program: the single-frame figure.
            let mut singles = [[0.0; PROGRAMS.len()]; FAMILIES.len()];
            // Each plain family and its PPPoE twin in alternating trials (see `measure_pair`).
            for pair in frames.chunks_exact(2) {
                let [plain_frame, pppoe_frame] = pair else {
                    continue;
                };
                let (plain, pppoe) = (plain_frame.family, pppoe_frame.family);
                let at = |f: &str| FAMILIES.iter().position(|x| *x == f).unwrap_or(0);
                for (p, (program, entry)) in PROGRAMS.into_iter().enumerate() {
                    let name = format!("{entry}{suffix}");
                    let t = Trials {
                        repeat: o.repeat,
                        trials: o.trials,
                        verdict,
                    };
                    let (a, b, ratio) =
                        measure_pair(&mut dp, &name, n, (plain_frame, pppoe_frame), t)?;
                    log::info!(
                        "{program:>8} {plain}/{pppoe} {n:>8} {keys:>7}: {a:7.1} / {b:7.1} ns/packet ({ratio:.2}x paired)"
                    );
                    rows.push(row(program, plain, n, keys, a, None));
                    rows.push(Row {
                        pppoe_over_plain: Some(ratio),
                        ..row(program, pppoe, n, keys, b, None)
                    });
                    singles[at(plain)][p] = a;
                    singles[at(pppoe)][p] = b;
                }
            }
            for (f, frame) in frames.into_iter().enumerate() {
                let single = singles[f];
                let family = frame.family;
                if keys == LIVE_KEYS {
                    aim(&mut dp, n, &frame)?;
                    for ((program, entry), single) in PROGRAMS.into_iter().zip(single) {
                        let name = format!("{entry}{suffix}");
                        let live = if live_allowed {
                            live::ns_per_frame(
                                &mut dp,
                                &name,
                                &frame.bytes,
                                o.live_frames,
                                o.trials,
                            )?
                        } else {
                            None
                        };
                        // A kernel that refused once refuses every program: ask it once.
                        live_allowed &= live.is_some();
                        let (ns, method) = match live {
                            Some(ns) => (ns, Method::LiveFrames),
                            // Without live frames the single-frame loop just measured is the
                            // best bound left: the program's own cost, without the driver path.
                            None => (single, Method::TestRun),
                        };
                        let mpps = 1e3 / ns;
                        log::info!(
                            "{program:>8} {family} {n:>8} {keys:>7}: {mpps:7.2} Mpps ({ns:.0} ns/frame, {method:?})"
                        );
                        rows.push(Row {
                            method: Some(method),
                            ..row(program, family, n, keys, ns, Some(mpps))
                        });
                    }
                }
            }
        }
        // The quid spread program ran `trials` x `repeat` times per family.
        let families = FAMILIES.len() as f64;
        check_counted(&dp, n, families * f64::from(o.repeat) * o.trials as f64)?;
    }
    let report = Report {
        cpu,
        kernel,
        load: load_avg,
        repeat: o.repeat,
        trials: o.trials,
        live_frames: o.live_frames,
        rows,
    };
    std::fs::create_dir_all(&o.out)?;
    std::fs::write(
        o.out.join("xdp.json"),
        serde_json::to_string_pretty(&report.rows)? + "\n",
    )?;
    let md = markdown(&report);
    std::fs::write(o.out.join("xdp.md"), &md)?;
    print!("{md}");
    Ok(())
}

/// One measured frame: its family, its bytes, and where the spreading programs write its
/// source address (`BenchSpread` without `entries`).
struct BenchFrame {
    family: &'static str,
    bytes: Vec<u8>,
    spread: BenchSpread,
}

/// One UDP frame per family (in [`FAMILIES`] order) from subscriber 0, which the spreading
/// programs rewrite; the PPPoE frames carry the same IP packets as the plain ones.
fn frames() -> [BenchFrame; FAMILIES.len()] {
    let e = Ethernet::default();
    let (v4, net4) = (v4_of(0), Ipv4Addr::new(203, 0, 113, 1));
    let (v6, net6) = (
        v6_of(0) | Ipv6Addr::from(1u128),
        Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1),
    );
    // The IP header follows 14 bytes of Ethernet, or 22 with the PPPoE session header and
    // the PPP protocol; the word rewritten is 12 bytes into it in both families.
    let frame = |family, bytes, ip: u32, ipv6| BenchFrame {
        family,
        bytes,
        spread: BenchSpread {
            entries: 0,
            src_offset: ip + 12,
            ipv6,
        },
    };
    [
        frame(FAMILIES[0], e.ipv4_udp(v4, net4, 64), 14, 0),
        frame(FAMILIES[1], e.pppoe_ipv4_udp(v4, net4, 64), 22, 0),
        frame(FAMILIES[2], e.ipv6_udp(v6, net6, 64), 14, 1),
        frame(FAMILIES[3], e.pppoe_ipv6_udp(v6, net6, 64), 22, 1),
    ]
}

/// Tells the spreading programs where `frame`'s source address lies, over `n` entries.
fn aim(dp: &mut Datapath, n: u32, frame: &BenchFrame) -> anyhow::Result<()> {
    let mut spread: Array<&mut MapData, BenchSpread> =
        Array::try_from(dp.ebpf.map_mut("BENCH_SPREAD").context("BENCH_SPREAD")?)?;
    spread.set(
        0,
        BenchSpread {
            entries: n,
            ..frame.spread
        },
        0,
    )?;
    Ok(())
}

/// Fills BENCH_ZIPF with table entries drawn with exponent `s` over `n` subscribers.
fn fill_zipf(dp: &mut Datapath, n: u32, s: f64) -> anyhow::Result<()> {
    let keys = zipf::keys(n, s, BENCH_ZIPF_SAMPLES as usize, ZIPF_SEED)
        .with_context(|| format!("no Zipf distribution over {n} entries with exponent {s}"))?;
    let mut map: Array<&mut MapData, u32> =
        Array::try_from(dp.ebpf.map_mut("BENCH_ZIPF").context("BENCH_ZIPF")?)?;
    for (i, k) in (0u32..).zip(keys) {
        map.set(i, k, 0)?;
    }
    Ok(())
}

/// Loads the benchmark object with every table holding `n` subscribers.
fn load(n: u32) -> anyhow::Result<Datapath> {
    let programs: Vec<String> = PROGRAMS
        .iter()
        .flat_map(|(_, entry)| {
            [
                entry.to_string(),
                format!("{entry}_spread"),
                format!("{entry}_zipf"),
            ]
        })
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
    Ok(dp)
}

/// How each single-frame measurement runs.
#[derive(Clone, Copy)]
struct Trials {
    /// BPF_PROG_TEST_RUN repetitions per trial.
    repeat: u32,
    trials: usize,
    /// The verdict the program must return.
    verdict: u32,
}

/// Program `name` on two frames in alternating trials (a b, b a, a b, ...): the median ns per
/// packet of each, and the median of the per-trial ratios b / a. On this VM the same
/// measurement drifts by up to 2x between runs (memory placement, neighbours); a pair of
/// trials back to back sees the same machine, so their ratio is what a comparison can trust.
fn measure_pair(
    dp: &mut Datapath,
    name: &str,
    n: u32,
    (a, b): (&BenchFrame, &BenchFrame),
    t: Trials,
) -> anyhow::Result<(f64, f64, f64)> {
    let mut run = |frame: &BenchFrame| -> anyhow::Result<f64> {
        aim(dp, n, frame)?;
        let prog = dp.program(name)?;
        let r = prog.test_run(TestRunOptions {
            data_in: Some(&frame.bytes),
            repeat: t.repeat,
            ..Default::default()
        })?;
        if r.return_value != t.verdict {
            bail!(
                "{name} returned {} instead of {}",
                r.return_value,
                t.verdict
            );
        }
        Ok(r.duration.as_nanos() as f64)
    };
    let (mut xs, mut ys, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..t.trials {
        // a b, b a, a b, ...: neither frame always runs first.
        let (x, y) = if i % 2 == 0 {
            let x = run(a)?;
            (x, run(b)?)
        } else {
            let y = run(b)?;
            (run(a)?, y)
        };
        xs.push(x);
        ys.push(y);
        ratios.push(y / x.max(f64::MIN_POSITIVE));
    }
    log::debug!("{name}: {xs:?} against {ys:?}");
    Ok((median(xs)?, median(ys)?, median(ratios)?))
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

/// Pins the benchmark to the last CPU: a trial that migrates half way starts again with cold
/// caches, and every figure here is "on one core". A refusal is logged and the run goes on.
fn pin_to_one_cpu() {
    use nix::sched::{CpuSet, sched_setaffinity};
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut set = CpuSet::new();
    match set
        .set(cpus - 1)
        .and_then(|()| sched_setaffinity(nix::unistd::Pid::from_raw(0), &set))
    {
        Ok(()) => log::info!("measuring on CPU {}", cpus - 1),
        Err(e) => log::warn!("cannot pin the benchmark to one CPU ({e}); figures may drift more"),
    }
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

/// The row of a measurement: per packet (`live` false) or throughput (`live` true).
fn find<'a>(
    r: &'a Report,
    program: &str,
    family: &str,
    n: u32,
    keys: &str,
    live: bool,
) -> Option<&'a Row> {
    r.rows.iter().find(|x| {
        x.program == program
            && x.family == family
            && x.subscribers == n
            && x.keys == keys
            && x.mpps.is_some() == live
    })
}

fn markdown(r: &Report) -> String {
    let mut md = format!(
        "# XDP per-packet cost (BPF_PROG_TEST_RUN)\n\nCPU: {}; kernel {}; load average {} at the start; median of {} trials of {} repetitions.\n\n\
         All programs except `pass` run the same frame parser. The kernel keeps the frame between repetitions, and the \
         non-`hot` rows rewrite its source address before every run: `spread` to a uniformly random table entry, \
         `zipf1.0` and `zipf1.2` to the next of {} entries drawn from a Zipf distribution with that exponent over the \
         table (rank r maps to entry permutation[r] of a fixed random permutation, so hot keys are not neighbours in \
         memory). `pass` with the same keys shows what the rewrite costs. The `zipf` programs drop the frames they count \
         (see throughput below).\n\n\
         | family | subscribers | keys | pass | one_hash | trie | quid | quid / one_hash | trie / quid |\n|---|---|---|---|---|---|---|---|---|\n",
        r.cpu, r.kernel, r.load, r.trials, r.repeat, BENCH_ZIPF_SAMPLES
    );
    let mut sizes: Vec<u32> = r.rows.iter().map(|x| x.subscribers).collect();
    sizes.dedup();
    let ns = |p, family, n, keys, live| {
        find(r, p, family, n, keys, live).map_or(f64::NAN, |x| x.ns_per_packet)
    };
    for family in FAMILIES {
        for &n in &sizes {
            for (keys, _, _) in KEYS {
                let get = |p| ns(p, family, n, keys, false);
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
    md += &format!(
        "\n## Throughput\n\nMillion packets per second on one core at {LIVE_KEYS} keys. With `live_frames` the kernel \
         (BPF_F_TEST_XDP_LIVE_FRAMES) builds real xdp_frames from a page pool in batches of 64 and runs the program on \
         each ({} frames per trial, median of {}, the kernel's own timer, which leaves out time rescheduled); every frame \
         starts as the same packet and the program rewrites its source to the next {LIVE_KEYS} key, so the key varies \
         per frame. The programs return XDP_DROP, since an XDP_PASS frame would go up the network stack and measure \
         that instead. Where the kernel refuses live frames the row says `test_run`: 1000 / ns of the same program's \
         single-frame row above, the program's own cost without the driver path around it (an upper bound on throughput).\n\n\
         | family | subscribers | keys | method | pass | one_hash | trie | quid | quid / pass |\n|---|---|---|---|---|---|---|---|---|\n",
        r.live_frames, r.trials
    );
    let mpps = |p, family, n| find(r, p, family, n, LIVE_KEYS, true).and_then(|x| x.mpps);
    for family in FAMILIES {
        for &n in &sizes {
            let get = |p| mpps(p, family, n).unwrap_or(f64::NAN);
            let (pass, one, trie, quid) = (get("pass"), get("one_hash"), get("trie"), get("quid"));
            let methods: Vec<&str> = PROGRAMS
                .iter()
                .filter_map(|(p, _)| find(r, p, family, n, LIVE_KEYS, true)?.method)
                .map(Method::name)
                .collect();
            let method = if methods.windows(2).all(|w| w[0] == w[1]) {
                methods.first().copied().unwrap_or("-")
            } else {
                "mixed"
            };
            md += &format!(
                "| {family} | {n} | {LIVE_KEYS} | {method} | {pass:.2} | {one:.2} | {trie:.2} | {quid:.2} | {:.2}x |\n",
                quid / pass
            );
        }
    }
    md += &pppoe_markdown(r, &sizes);
    md += "\nTargets at 1M spread subscribers: quid / one_hash <= 1.5, trie / quid >= 3.\n";
    if let Some(&n) = sizes.iter().max() {
        for family in ["ipv4", "ipv6"] {
            let quid = ns("quid", family, n, LIVE_KEYS, false);
            let live = find(r, "quid", family, n, LIVE_KEYS, true)
                .is_some_and(|x| x.method == Some(Method::LiveFrames));
            let ratio = mpps("quid", family, n).unwrap_or(f64::NAN)
                / mpps("pass", family, n).unwrap_or(f64::NAN);
            // The 0.7 target is about the whole XDP path, whose per-frame cost both programs
            // share; against the bare `pass` program of the single-frame loop it does not apply.
            let throughput = if live {
                format!("{ratio:.2} ({})", verdict(ratio >= 0.7))
            } else {
                format!(
                    "not measured, the kernel refused live frames (single-frame loop: {ratio:.2})"
                )
            };
            md += &format!(
                "Targets at {n} {LIVE_KEYS} subscribers, {family}: quid <= 67 ns per packet: {quid:.1} ({}); \
                 live-frames quid / pass >= 0.7: {throughput}.\n",
                verdict(quid <= 67.0),
            );
        }
    }
    md
}

/// quid's cost on PPPoE session frames against the same IP packets in plain Ethernet.
fn pppoe_markdown(r: &Report, sizes: &[u32]) -> String {
    let mut md = format!(
        "\n## PPPoE against plain Ethernet\n\nThe `quid` program on the same IP packets inside a \
         PPPoE session (8 more bytes of header to read and check), per packet. Target: at most \
         {PPPOE_TARGET}x the plain row of the same size and keys. The two run in alternating \
         trials, and the ratio is the median of the trials' ratios (the medians of the two rows \
         may give another: this machine drifts between trials).\n\n\
         | family | subscribers | keys | plain | pppoe | pppoe / plain |\n|---|---|---|---|---|---|\n"
    );
    let mut ratios = Vec::new();
    for family in ["ipv4", "ipv6"] {
        let pppoe = format!("{family}_pppoe");
        for &n in sizes {
            for (keys, _, _) in KEYS {
                let ns = |f: &str| {
                    find(r, "quid", f, n, keys, false).map_or(f64::NAN, |x| x.ns_per_packet)
                };
                let (plain, wrapped) = (ns(family), ns(&pppoe));
                let ratio = find(r, "quid", &pppoe, n, keys, false)
                    .and_then(|x| x.pppoe_over_plain)
                    .unwrap_or(f64::NAN);
                ratios.push(ratio);
                md += &format!(
                    "| {family} | {n} | {keys} | {plain:.1} | {wrapped:.1} | {ratio:.2}x |\n"
                );
            }
        }
    }
    let worst = ratios.iter().copied().fold(f64::NAN, f64::max);
    let middle = median(ratios).unwrap_or(f64::NAN);
    md += &format!(
        "\nPPPoE / plain: median {middle:.2}x ({}), worst {worst:.2}x ({}).\n",
        verdict(middle <= PPPOE_TARGET),
        verdict(worst <= PPPOE_TARGET)
    );
    md
}

/// "met" or "missed" for a target (a missing figure, NaN, compares false: missed).
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}
