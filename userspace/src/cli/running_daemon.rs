//! Finding the daemon that runs with a config: `quid detach` refuses while it runs (or, with
//! `--stop`, stops it), and `quid subscribers reload` signals it.

use quid::{
    config::Config,
    metering::snapshot::{DaemonState, Snapshot},
};

/// The pid of a daemon running with this config's state directory, if one is.
pub fn running_daemon(config: &Config) -> Option<i32> {
    let snap = Snapshot::read(&config.daemon.state_dir).ok()?;
    let pid = i32::try_from(snap.pid).ok()?;
    (snap.state == DaemonState::Running && alive(pid)).then_some(pid)
}

/// Whether process `pid` exists and has not exited: an exited process its parent has not
/// reaped yet (a zombie) holds nothing open any more, so it counts as gone.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which may itself hold `)`.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_is_alive_and_a_reaped_or_zombie_one_is_not() {
        assert!(alive(i32::try_from(std::process::id()).unwrap()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // Exited but not reaped: a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive(pid) {
            assert!(std::time::Instant::now() < deadline, "`true` did not exit");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        child.wait().unwrap();
        assert!(!alive(pid));
    }
}
