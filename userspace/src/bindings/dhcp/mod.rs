//! DHCP leases from Kea (`[dhcp]`): its memfile lease files followed live, each active lease
//! bound to the subscriber the mapping file names for it (by option 82, client identifier or
//! DUID, or hardware address), released when it expires by quid's clock, is released,
//! declined or reclaimed.

pub mod figures;
pub mod follower;
pub mod identity;
pub mod lease;
pub mod lease_file;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use log::{info, warn};
use serde::{Deserialize, Deserializer, de};

use crate::{
    bindings::request::{BindingSender, Refusal},
    clock::Clock,
};

/// `[dhcp]`: the Kea lease files to follow and the mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpConfig {
    /// Kea's DHCPv4 memfile lease file (`/var/lib/kea/kea-leases4.csv`).
    #[serde(default)]
    pub lease_file4: Option<PathBuf>,
    /// Kea's DHCPv6 memfile lease file (`/var/lib/kea/kea-leases6.csv`).
    #[serde(default)]
    pub lease_file6: Option<PathBuf>,
    /// `key,value,subscriber`: which lease is whose (see [`identity`]).
    pub map: PathBuf,
    /// How often the files are read, in milliseconds (100 to 10000).
    #[serde(default = "default_poll_ms", deserialize_with = "poll_ms")]
    pub poll_ms: u64,
}

fn default_poll_ms() -> u64 {
    500
}

fn poll_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if !(100..=10_000).contains(&v) {
        return Err(de::Error::custom(format!(
            "must be between 100 and 10000 milliseconds, got {v}"
        )));
    }
    Ok(v)
}

impl DhcpConfig {
    /// Makes relative paths relative to the config file's folder.
    pub fn resolve(&mut self, base: &Path) {
        for p in [
            self.lease_file4.as_mut(),
            self.lease_file6.as_mut(),
            Some(&mut self.map),
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// What `quid check` and `quid run` refuse: no lease file, a bad mapping file.
    pub fn check(&self) -> anyhow::Result<identity::Identities> {
        if self.lease_file4.is_none() && self.lease_file6.is_none() {
            bail!("[dhcp] names no lease file: set lease_file4, lease_file6 or both");
        }
        identity::Identities::load(&self.map)
            .map_err(|e| anyhow::anyhow!("{e}quid refuses to start on a bad DHCP mapping file"))
    }

    fn files(&self) -> Vec<(lease::Family, PathBuf)> {
        let v4 = self
            .lease_file4
            .iter()
            .map(|p| (lease::Family::V4, p.clone()));
        let v6 = self
            .lease_file6
            .iter()
            .map(|p| (lease::Family::V6, p.clone()));
        v4.chain(v6).collect()
    }
}

/// Starts following the lease files on a thread of its own; it ends when the daemon stops
/// taking binding requests. `held`: the DHCP sessions the daemon took up from its last run
/// (lease key, subscriber, prefix), released at the first step unless still leased so.
pub fn start(
    config: &DhcpConfig,
    sender: BindingSender,
    clock: Clock,
    held: Vec<(String, String, ipnet::IpNet)>,
) -> anyhow::Result<Arc<figures::DhcpFigures>> {
    let map = config.check()?;
    let figures = Arc::new(figures::DhcpFigures::default());
    let mut follower = follower::Follower::new(config.files(), config.map.clone(), map, held)
        .with_figures(Arc::clone(&figures));
    let every = Duration::from_millis(config.poll_ms);
    for (_, path) in config.files() {
        info!("following Kea's lease file {}", path.display());
    }
    std::thread::Builder::new()
        .name("dhcp-leases".into())
        .spawn(move || {
            loop {
                let now = match clock.now() {
                    Ok(now) => now,
                    Err(e) => {
                        warn!("DHCP leases not followed this round: {e}");
                        std::thread::sleep(every);
                        continue;
                    }
                };
                for event in follower.step(now) {
                    let answer = sender.send_blocking(event.clone()).map(drop);
                    if answer == Err(Refusal::Unavailable) {
                        return;
                    }
                    follower.answered(&event, &answer, now);
                }
                std::thread::sleep(every);
            }
        })
        .context("cannot start the DHCP lease follower")?;
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DhcpConfig, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn the_section_needs_a_lease_file_a_readable_mapping_and_a_sane_poll() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("map.csv"), "key,value,subscriber\n").unwrap();
        let mut c = parse("lease_file4 = \"leases4.csv\"\nmap = \"map.csv\"\n").unwrap();
        assert_eq!(c.poll_ms, 500);
        c.resolve(dir.path());
        assert_eq!(
            c.lease_file4.as_deref(),
            Some(dir.path().join("leases4.csv").as_path())
        );
        assert!(c.check().is_ok());
        let mut none = parse("map = \"map.csv\"\n").unwrap();
        none.resolve(dir.path());
        assert_eq!(
            none.check().unwrap_err().to_string(),
            "[dhcp] names no lease file: set lease_file4, lease_file6 or both"
        );
        std::fs::write(dir.path().join("map.csv"), "mac,subscriber\n").unwrap();
        assert!(
            c.check()
                .unwrap_err()
                .to_string()
                .ends_with("quid refuses to start on a bad DHCP mapping file")
        );
        let err = parse("lease_file4 = \"l\"\nmap = \"m\"\npoll_ms = 5\n").unwrap_err();
        assert_eq!(err, "must be between 100 and 10000 milliseconds, got 5");
        assert!(
            parse("lease_file = \"l\"\nmap = \"m\"\n")
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
