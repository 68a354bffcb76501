//! The standard `process_*` metrics (CPU time, memory, file descriptors, start time), read
//! from `/proc/self` at each scrape: the `prometheus` crate's `process` feature needs `procfs`,
//! which this build does not carry. A file that cannot be read or parsed leaves its series out
//! of that scrape (said once in the log); the rest of the exposition is served as always.

use std::{
    fmt::Write as _,
    path::PathBuf,
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
};

/// The families [`render`] writes when every source can be read.
pub const FAMILIES: [&str; 6] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

/// Why a `/proc` file gave no figure.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no {what} in it; the process_* series that need it are left out")]
    Format {
        path: &'static str,
        what: &'static str,
    },
}

/// The fields of `/proc/self/stat` the metrics use, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// User plus system time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start after boot, in clock ticks.
    pub start_ticks: u64,
    pub virtual_bytes: u64,
    pub resident_pages: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) may hold spaces and parentheses, so
/// the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Result<Stat, ProcError> {
    let bad = || ProcError::Format {
        path: "/proc/self/stat",
        what: "utime, stime, starttime, vsize and rss",
    };
    let (_, rest) = text.rsplit_once(')').ok_or_else(bad)?;
    // After the name, field 3 (state) is index 0: field N is index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, ProcError> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(bad)
    };
    Ok(Stat {
        cpu_ticks: field(14)?.saturating_add(field(15)?),
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// The boot time (unix seconds) from `/proc/stat`'s `btime` line.
pub fn parse_boot_time(text: &str) -> Result<u64, ProcError> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        .ok_or(ProcError::Format {
            path: "/proc/stat",
            what: "btime line",
        })
}

/// The soft limit on open files from `/proc/self/limits` (`None`: unlimited).
pub fn parse_max_fds(text: &str) -> Result<Option<u64>, ProcError> {
    let soft = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files")?.split_whitespace().next())
        .ok_or(ProcError::Format {
            path: "/proc/self/limits",
            what: "`Max open files` line",
        })?;
    if soft == "unlimited" {
        return Ok(None);
    }
    soft.parse().map(Some).map_err(|_| ProcError::Format {
        path: "/proc/self/limits",
        what: "number of open files",
    })
}

/// One source of series, for the log-once flags.
#[derive(Clone, Copy)]
enum Source {
    Stat,
    Fds,
    Limits,
}

/// Whether each [`Source`]'s failure was logged already: a broken source would otherwise
/// log at every scrape.
static LOGGED: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];

/// The highest CPU time served, in ticks: the counter never goes down, whatever is read.
static CPU_TICKS: AtomicU64 = AtomicU64::new(0);

/// `Some(value)`, or `None` after logging the error the first time `source` fails.
fn logged<T>(source: Source, r: Result<T, ProcError>) -> Option<T> {
    r.inspect_err(|e| {
        if !LOGGED[source as usize].swap(true, Relaxed) {
            log::warn!("metrics: {e}");
        }
    })
    .ok()
}

fn read(path: &str) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.into(),
        source,
    })
}

/// Appends one metric with its help and type to `out`.
fn family(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}

/// The `process_*` families in the text exposition format, read now.
pub fn render() -> String {
    let mut out = String::new();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .unwrap_or(100);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096);
    let stat = logged(
        Source::Stat,
        read("/proc/self/stat").and_then(|t| parse_stat(&t)),
    );
    if let Some(s) = stat {
        let cpu = CPU_TICKS.fetch_max(s.cpu_ticks, Relaxed).max(s.cpu_ticks);
        let seconds = cpu as f64 / ticks as f64;
        family(
            &mut out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            seconds,
        );
        family(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            s.resident_pages.saturating_mul(page),
        );
        family(
            &mut out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            s.virtual_bytes,
        );
        let boot = logged(
            Source::Stat,
            read("/proc/stat").and_then(|t| parse_boot_time(&t)),
        );
        if let Some(boot) = boot {
            let start = boot as f64 + s.start_ticks as f64 / ticks as f64;
            family(
                &mut out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                start,
            );
        }
    }
    let fds = std::fs::read_dir("/proc/self/fd").map_err(|source| ProcError::Read {
        path: "/proc/self/fd".into(),
        source,
    });
    if let Some(dir) = logged(Source::Fds, fds) {
        family(
            &mut out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            dir.count(),
        );
    }
    let limits = read("/proc/self/limits").and_then(|t| parse_max_fds(&t));
    if let Some(Some(max)) = logged(Source::Limits, limits) {
        family(
            &mut out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and parentheses, as a process may name itself.
        let text = "4242 (quid (a) b) S 1 4242 4242 0 -1 4194560 1515 0 0 0 250 125 0 0 20 0 \
                    9 0 987654 1234567168 3001 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 \
                    1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(text).unwrap(),
            Stat {
                cpu_ticks: 375,
                start_ticks: 987_654,
                virtual_bytes: 1_234_567_168,
                resident_pages: 3_001,
            }
        );
        for broken in [
            "",
            "4242 quid S 1",
            "4242 (quid) S 1 2 3",
            "1 (q) S x x x x x x x x x x x",
        ] {
            assert!(parse_stat(broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn boot_time_and_the_open_files_limit_are_found() {
        let stat = "cpu  1 2 3\ncpu0 1 2 3\nintr 5\nctxt 9\nbtime 1795000000\nprocesses 77\n";
        assert_eq!(parse_boot_time(stat).unwrap(), 1_795_000_000);
        assert!(parse_boot_time("cpu 1 2 3\n").is_err());
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63432                63432                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits).unwrap(), Some(1024));
        let unlimited = limits.replace("1024    ", "unlimited");
        assert_eq!(parse_max_fds(&unlimited).unwrap(), None);
        assert!(parse_max_fds("Max processes 1 1 processes\n").is_err());
        assert!(parse_max_fds("Max open files lots 1 files\n").is_err());
    }

    #[test]
    fn this_process_has_every_series_and_cpu_time_never_goes_down() {
        let value = |text: &str, name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        };
        let first = render();
        for name in FAMILIES {
            assert!(first.contains(&format!("# TYPE {name} ")), "{first}");
            assert!(value(&first, name) >= 0.0);
        }
        assert!(
            value(&first, "process_resident_memory_bytes") > 100_000.0,
            "{first}"
        );
        assert!(
            value(&first, "process_virtual_memory_bytes")
                >= value(&first, "process_resident_memory_bytes"),
            "{first}"
        );
        // Burn a little CPU: the counter moves forward, never back.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let second = render();
        assert!(
            value(&second, "process_cpu_seconds_total")
                >= value(&first, "process_cpu_seconds_total")
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value(&second, "process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 3_600.0,
            "{start} vs {now}"
        );
    }
}
