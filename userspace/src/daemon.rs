//! `quid run`: load, install the table, attach, read the counters every interval, and detach
//! cleanly on SIGINT/SIGTERM after a final read.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, anyhow};
use log::{error, info, warn};
use quid_common::{
    BUCKET_ATTRIBUTED, BUCKET_MALFORMED, BUCKET_NON_IP, BUCKET_UNKNOWN, DIR_DOWNLOAD, DIR_UPLOAD,
};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    config::{Config, KernelLog},
    counters,
    datapath::Datapath,
    registry,
    snapshot::{Count, InterfaceTotals, Snapshot, SubscriberTotals},
    table::Table,
};

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let table = Table::load(&config.subscribers.file)
        .map_err(|e| anyhow!("{e}quid refuses to start on a bad table"))?;
    let sizes = config.subscribers.sizes();
    registry::check_fits(&table, sizes)?;
    let state_dir = &config.daemon.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;

    let mut dp = Datapath::load(sizes, config.daemon.kernel_log)?;
    let kernel_log = match config.daemon.kernel_log {
        KernelLog::Off => None,
        _ => {
            let logger =
                aya_log::EbpfLogger::init(&mut dp.ebpf).context("kernel log setup failed")?;
            // SAFETY: the logger owns its ring buffer fd, which lives as long as the AsyncFd.
            Some(unsafe { AsyncFd::register(logger) }.map_err(|e| anyhow!("kernel log: {e}"))?)
        }
    };
    let plan = registry::install(&mut dp, &table, config.subscribers.hash_lengths)?;
    let (v4, v6) = table.prefix_counts();
    info!(
        "installed {} subscribers ({v4} IPv4, {v6} IPv6 prefixes); probes: {} IPv4 (pool /{}), {} IPv6 (pool /{}); trie fallback: {}",
        table.subscribers.len(),
        plan.v4_probes,
        plan.v4_pool.prefix_len,
        plan.v6_probes,
        plan.v6_pool.prefix_len,
        if plan.v4_trie_max + plan.v6_trie_max > 0 {
            "in use"
        } else {
            "empty"
        }
    );
    for iface in &config.interfaces {
        let a = dp.attach(&iface.name.get_ref().0, iface.role, iface.xdp_mode)?;
        info!(
            "attached to {} (ifindex {}) as {} in {} mode",
            a.name, a.ifindex, a.role, a.mode
        );
    }

    let result = count_until_signal(&config, &table, &dp, kernel_log).await;
    // Detach first, then read: every packet the programs saw is in the final snapshot.
    dp.detach_all()?;
    let last = snapshot(&dp, &table, &config, "stopped")?;
    last.write(state_dir)?;
    info!(
        "detached from {} interfaces; final totals in {}",
        dp.attachments.len(),
        state_dir.join(crate::snapshot::FILE).display()
    );
    result
}

async fn count_until_signal(
    config: &Config,
    table: &Table,
    dp: &Datapath,
    mut kernel_log: Option<AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>,
) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_secs(config.daemon.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<Snapshot> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => match snapshot(dp, table, config, "running") {
                Ok(snap) => {
                    if let Some(prev) = &previous {
                        log_summary(prev, &snap, config.daemon.interval_secs);
                    }
                    if let Err(e) = snap.write(&config.daemon.state_dir) {
                        error!("cannot write the totals snapshot: {e}");
                    }
                    previous = Some(snap);
                }
                Err(e) => error!("reading the counters failed (will retry next interval): {e}"),
            },
            ready = readable(&mut kernel_log) => match ready {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    warn!("kernel log unavailable: {e}");
                    kernel_log = None;
                }
            },
            _ = sigterm.recv() => { info!("SIGTERM: detaching"); return Ok(()) }
            _ = sigint.recv() => { info!("SIGINT: detaching"); return Ok(()) }
        }
    }
}

async fn readable<T: std::os::fd::AsRawFd>(
    fd: &mut Option<AsyncFd<T>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, T>> {
    match fd {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// Reads every counter into a snapshot.
pub fn snapshot(
    dp: &Datapath,
    table: &Table,
    config: &Config,
    state: &str,
) -> anyhow::Result<Snapshot> {
    let sums = counters::subscribers(dp, table.subscribers.len())?;
    let subscribers = table
        .subscribers
        .iter()
        .zip(sums.iter())
        .map(|(s, c)| SubscriberTotals {
            id: s.id.clone(),
            name: s.name.clone(),
            plan: s.plan.clone(),
            upload: counters::direction(c, DIR_UPLOAD).into(),
            download: counters::direction(c, DIR_DOWNLOAD).into(),
        })
        .collect();
    let interfaces = dp
        .attachments
        .iter()
        .map(|a| {
            let b = counters::interface(dp, a.ifindex)?;
            Ok(InterfaceTotals {
                attachment: a.clone(),
                attributed: b.buckets[BUCKET_ATTRIBUTED].into(),
                non_ip: b.buckets[BUCKET_NON_IP].into(),
                unknown: b.buckets[BUCKET_UNKNOWN].into(),
                malformed: b.buckets[BUCKET_MALFORMED].into(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Snapshot {
        state: state.into(),
        pid: std::process::id(),
        taken_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        interval_secs: config.daemon.interval_secs,
        subscribers,
        interfaces,
    })
}

fn log_summary(prev: &Snapshot, now: &Snapshot, secs: u64) {
    let delta = |a: Count, b: Count| Count {
        packets: b.packets.wrapping_sub(a.packets),
        bytes: b.bytes.wrapping_sub(a.bytes),
    };
    let (mut up, mut down, mut active) = (Count::default(), Count::default(), 0);
    for (p, n) in prev.subscribers.iter().zip(&now.subscribers) {
        let (u, d) = (delta(p.upload, n.upload), delta(p.download, n.download));
        if u.packets + d.packets > 0 {
            active += 1;
        }
        up.packets += u.packets;
        up.bytes += u.bytes;
        down.packets += d.packets;
        down.bytes += d.bytes;
    }
    let (mut non_ip, mut unknown, mut malformed) = (0, 0, 0);
    for (p, n) in prev.interfaces.iter().zip(&now.interfaces) {
        non_ip += n.non_ip.packets - p.non_ip.packets;
        unknown += n.unknown.packets - p.unknown.packets;
        malformed += n.malformed.packets - p.malformed.packets;
    }
    info!(
        "last {secs}s: {active} active subscribers; upload {} pkts {} B, download {} pkts {} B; unattributed packets: {non_ip} non-IP, {unknown} unknown, {malformed} malformed",
        up.packets, up.bytes, down.packets, down.bytes
    );
}

/// `quid subscribers`: the current totals as a table (or JSON).
pub fn print_subscribers(state_dir: &Path, json: bool) -> anyhow::Result<()> {
    let snap = Snapshot::read(state_dir)
        .context("no totals yet: is `quid run` running with this state_dir?")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&snap)?);
    } else {
        if snap.state != "running" {
            println!("(daemon stopped; these are its final totals)");
        }
        print!("{}", snap.render_table());
    }
    Ok(())
}
