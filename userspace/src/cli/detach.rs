//! `quid detach`: removes quid's pins (and so its programs) once no daemon runs with them.

use anyhow::bail;
use quid::{config::Config, kernel::loader as datapath};

use super::running_daemon::running_daemon;

/// Removes every pin in the config's pin directory, refusing while a daemon runs.
pub fn detach(config: &Config) -> anyhow::Result<()> {
    if let Some(pid) = running_daemon(config) {
        bail!("quid is running (pid {pid}) with this config: stop it first");
    }
    let n = datapath::remove_pins(&config.daemon.pin_dir)?;
    println!(
        "removed {n} pins from {}; quid's programs are detached",
        config.daemon.pin_dir.display()
    );
    Ok(())
}
