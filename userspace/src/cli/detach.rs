//! `quid detach`: removes quid's pins (and so its programs) once no daemon runs with them;
//! with `--stop` it stops a running daemon first (the package's prerm, where no service
//! manager stopped it).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use quid::{config::Config, kernel::loader as datapath};

use super::running_daemon::{alive, running_daemon};

/// How long a stopping daemon may take for its final read and commit.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Removes every pin in the config's pin directory. A daemon running with the config is
/// refused, or with `stop` sent SIGTERM and waited for.
pub fn detach(config: &Config, stop: bool) -> anyhow::Result<()> {
    if let Some(pid) = running_daemon(config) {
        if !stop {
            bail!(
                "quid is running (pid {pid}) with this config: stop it first, or run `quid \
                 detach --stop`"
            );
        }
        stop_daemon(pid)?;
    }
    let n = datapath::remove_pins(&config.daemon.pin_dir)?;
    println!(
        "removed {n} pins from {}; quid's programs are detached",
        config.daemon.pin_dir.display()
    );
    Ok(())
}

/// SIGTERM (the daemon makes its final read), then waits until the process is gone, so no
/// link stays held open once the pins go.
fn stop_daemon(pid: i32) -> anyhow::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .with_context(|| format!("cannot stop quid (pid {pid})"))?;
    let deadline = Instant::now() + STOP_WAIT;
    while alive(pid) {
        if Instant::now() > deadline {
            bail!(
                "quid (pid {pid}) did not stop within {} s of SIGTERM: stop it (kill -KILL \
                 {pid}), then run `quid detach`",
                STOP_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("stopped quid (pid {pid})");
    Ok(())
}
