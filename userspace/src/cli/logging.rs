//! Where quid's log lines go: to a terminal with timestamps and colours, or, under systemd
//! (stderr is the journal), one `<N>`-prefixed line per event with no timestamp, so
//! `journalctl -p warning` finds warnings and no message is split into several entries.

use std::io::Write as _;

/// Whether stderr is the journal: systemd sets `JOURNAL_STREAM` to its `DEVICE:INODE`
/// (compared, because a child started from a unit inherits the variable but not the stream).
pub fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// The syslog priority of a log level (`<3>` error to `<7>` debug).
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// `text` on one line: the journal makes an entry of each line.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Sets up the logger (level from `RUST_LOG`, default info) for the terminal or the journal.
pub fn init(journal: bool) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if journal {
        builder.format(|buf, record| {
            writeln!(
                buf,
                "<{}>{}",
                priority(record.level()),
                one_line(&record.args().to_string())
            )
        });
    }
    builder.init();
}

/// Prints the error a command ends with: `quid: ...`, as one `<3>` line under the journal.
pub fn report_error(journal: bool, e: &anyhow::Error) {
    if journal {
        eprintln!("<3>quid: {}", one_line(&format!("{e:#}")));
    } else {
        eprintln!("quid: {e:#}");
    }
}
