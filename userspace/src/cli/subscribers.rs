//! `quid subscribers`: the running (or last) daemon's per-subscriber totals as a table (bytes
//! with units, Internet and grid apart) or JSON (exact integers), and `quid subscribers
//! reload`, which asks the daemon to reload its table and waits.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use quid::{
    config::Config,
    metering::snapshot::{Count, DaemonState, Directions, Snapshot},
    subscribers::reload_result::ReloadResult,
};

use super::{
    human::{bytes, count},
    running_daemon::running_daemon,
};

/// `quid subscribers`: the current totals as a table (or JSON).
pub fn print_subscribers(state_dir: &Path, json: bool) -> anyhow::Result<()> {
    let snap = Snapshot::read(state_dir)
        .context("no totals yet: is `quid run` running with this state_dir?")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&snap)?);
    } else {
        if snap.state != DaemonState::Running {
            println!("(daemon stopped; these are its final totals)");
        }
        print!("{}", render_table(&snap));
    }
    Ok(())
}

/// The subscriber table's columns.
const COLUMNS: [&str; 9] = [
    "ID",
    "NAME",
    "PLAN",
    "UP_PACKETS",
    "UP_INTERNET",
    "UP_GRID",
    "DOWN_PACKETS",
    "DOWN_INTERNET",
    "DOWN_GRID",
];

/// The table: per subscriber the packets and, Internet and grid apart, the bytes of each
/// direction; then each interface's buckets. Units and separators for reading; the exact
/// figures are in `--json`.
pub fn render_table(snap: &Snapshot) -> String {
    let line = |cells: [&str; 9]| {
        let [id, name, plan, up_p, up_i, up_g, down_p, down_i, down_g] = cells;
        format!(
            "{id:<16} {name:<20} {plan:<12} {up_p:>13} {up_i:>13} {up_g:>10} {down_p:>13} \
             {down_i:>13} {down_g:>10}\n"
        )
    };
    let mut out = line(COLUMNS);
    let mut unsplit = false;
    for s in &snap.subscribers {
        let id = if s.removed {
            format!("{} (removed)", s.id)
        } else {
            s.id.clone()
        };
        // An older daemon's snapshot has no split: its bytes are only in `--json`.
        let split = |d: fn(&Directions) -> Count| {
            s.by_class.map_or_else(
                || ["-".to_owned(), "-".to_owned()],
                |c| [bytes(d(&c.internet).bytes), bytes(d(&c.grid).bytes)],
            )
        };
        unsplit |= s.by_class.is_none();
        let [up_i, up_g] = split(|d| d.upload);
        let [down_i, down_g] = split(|d| d.download);
        out += &line([
            &id,
            &truncate(&s.name, 20),
            &s.plan,
            &count(s.upload.packets),
            &up_i,
            &up_g,
            &count(s.download.packets),
            &down_i,
            &down_g,
        ]);
    }
    if unsplit {
        out += "(- : written by an older quid, without the grid/Internet split; `--json` has the \
                totals)\n";
    }
    out += &format!(
        "\n{:<12} {:<7} {:<8} {:>22} {:>22} {:>22} {:>22} {:>22}\n",
        "INTERFACE",
        "ROLE",
        "MODE",
        "ATTRIBUTED pkts / B",
        "NON_IP pkts / B",
        "UNKNOWN pkts / B",
        "MALFORMED pkts / B",
        "PPPOE_DISC pkts / B"
    );
    for i in &snap.interfaces {
        let c = |c: &Count| format!("{} / {}", count(c.packets), bytes(c.bytes));
        out += &format!(
            "{:<12} {:<7} {:<8} {:>22} {:>22} {:>22} {:>22} {:>22}\n",
            i.attachment.name,
            // Role's Display writes without padding.
            i.attachment.role.to_string(),
            i.attachment.mode,
            c(&i.attributed),
            c(&i.non_ip),
            c(&i.unknown),
            c(&i.malformed),
            c(&i.pppoe_discovery)
        );
    }
    out
}

/// `s` cut to `n` characters, the last one an ellipsis when anything was cut.
fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n.saturating_sub(1)).chain(['…']).collect()
    }
}

/// `quid subscribers reload`: SIGHUP, then wait for the daemon's answer.
pub fn reload(config: &Config) -> anyhow::Result<()> {
    let pid = running_daemon(config).context("no quid is running with this config")?;
    let before = ReloadResult::read(&config.daemon.state_dir).map(|r| r.seq);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .with_context(|| format!("cannot signal quid (pid {pid})"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Some(r) = ReloadResult::read(&config.daemon.state_dir)
            && Some(r.seq) != before
        {
            if r.ok {
                println!(
                    "reloaded: {} added, {} removed, {} changed",
                    r.change.added.len(),
                    r.change.removed.len(),
                    r.change.changed.len()
                );
                return Ok(());
            }
            bail!(
                "reload refused, the running table is unchanged:\n  {}",
                r.errors.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("quid (pid {pid}) did not answer the reload within 60 s")
}

#[cfg(test)]
mod tests {
    use quid::{
        kernel::{attach_settings::Role, loader::Attachment},
        metering::snapshot::{ByClass, InterfaceTotals, SubscriberTotals},
    };

    use super::*;

    fn c(packets: u64, bytes: u64) -> Count {
        Count { packets, bytes }
    }

    #[test]
    fn the_table_shows_units_and_grid_apart_from_internet() {
        let split = ByClass {
            internet: Directions {
                upload: c(1_200, 1_531_540),
                download: c(3_000, 4_160_000),
            },
            grid: Directions {
                upload: c(1, 600),
                download: c(2, 1_500),
            },
        };
        let mut snap = Snapshot {
            state: DaemonState::Running,
            pid: 1,
            taken_at_unix: 1_795_000_000,
            interval_secs: 10,
            generation: 0,
            subscribers: vec![SubscriberTotals {
                id: "alice".into(),
                name: "Alice's farm".into(),
                plan: "home-50".into(),
                removed: false,
                upload: c(1_201, 1_532_140),
                download: c(3_002, 4_161_500),
                by_class: Some(split),
            }],
            interfaces: vec![InterfaceTotals {
                attachment: Attachment {
                    name: "eth1".into(),
                    ifindex: 2,
                    role: Role::Access,
                    mode: "native".into(),
                    framing: Default::default(),
                },
                attributed: c(4_203, 5_693_640),
                non_ip: c(0, 0),
                unknown: c(12, 840),
                malformed: c(0, 0),
                pppoe_discovery: c(2, 48),
            }],
        };
        let text = render_table(&snap);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], COLUMNS, "{text}");
        assert_eq!(
            lines[1],
            [
                "alice", "Alice's", "farm", "home-50", "1,201", "1.53", "MB", "600", "B", "3,002",
                "4.16", "MB", "1.50", "kB"
            ],
            "{text}"
        );
        assert_eq!(
            lines[4],
            [
                "eth1", "access", "native", "4,203", "/", "5.69", "MB", "0", "/", "0", "B", "12",
                "/", "840", "B", "0", "/", "0", "B", "2", "/", "48", "B"
            ],
            "{text}"
        );
        // The columns line up: every subscriber row as wide as the header.
        let widths: Vec<usize> = text.lines().take(2).map(|l| l.chars().count()).collect();
        assert_eq!(widths[0], widths[1], "{text}");

        // A snapshot from an older quid has no split: dashes and a note, never made-up zeros.
        snap.subscribers[0].by_class = None;
        let text = render_table(&snap);
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[4..], ["1,201", "-", "-", "3,002", "-", "-"], "{text}");
        assert!(text.contains("without the grid/Internet split"), "{text}");
    }
}
