//! Finding the daemon that runs with a config: `quid detach` refuses while it runs, and
//! `quid subscribers reload` signals it.

use quid::{
    config::Config,
    metering::snapshot::{DaemonState, Snapshot},
};

/// The pid of a daemon running with this config's state directory, if one is.
pub fn running_daemon(config: &Config) -> Option<i32> {
    let snap = Snapshot::read(&config.daemon.state_dir).ok()?;
    let pid = i32::try_from(snap.pid).ok()?;
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    (snap.state == DaemonState::Running && alive).then_some(pid)
}
