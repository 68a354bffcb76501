//! A real cgroup v2 on this hybrid host (`/sys/fs/cgroup/unified`): a bounded CPU burner runs
//! in it, and the report's core-seconds equal the cgroup's `usage_usec` delta; the cgroup is
//! then removed and created again (its counter starts from 0) and the next report counts the
//! new cgroup's usage only.
#![cfg(test)]

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Instant,
};

use quid_node::{agent::Agent, config::Config, cpu};
use quid_report::{clock::Clock, report::Report};

const NEW_YEAR: i64 = 1_767_225_600;

/// A cgroup the test makes and always removes.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(name: &str) -> Cgroup {
        let path = Path::new("/sys/fs/cgroup/unified").join(name);
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).unwrap();
        Cgroup(path)
    }

    /// Runs a busy loop inside the cgroup for `millis` of wall time, bounded by `timeout`.
    fn burn(&self, millis: u32) {
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec timeout {}.{:03} sh -c 'while :; do :; done'",
            self.0.display(),
            millis / 1000,
            millis % 1000
        );
        let status = Command::new("sh").arg("-c").arg(script).status().unwrap();
        // timeout's own exit status when it stopped the loop.
        assert_eq!(status.code(), Some(124));
    }

    fn usage(&self) -> u64 {
        cpu::read(&self.0).unwrap().value
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn core_seconds_equal_the_usage_usec_delta_across_a_recreated_cgroup() {
    let name = format!("quid-node-test-{}", std::process::id());
    let cgroup = Cgroup::new(&name);
    let router = support::serve(Arc::new(|_: &str, _: &str| {
        (200, r#"{"status":"accepted"}"#.to_owned())
    }));
    let state = tempfile::tempdir().unwrap();
    let text = format!(
        "node = \"farm-pi-1\"\nrouter = \"{}\"\nkey = \"k\"\nstate_dir = \"{}\"\nperiod_secs = 900\n[cpu]\ncgroup = \"{}\"\n",
        router.url,
        state.path().display(),
        cgroup.0.display()
    );
    let config = Config::parse(&text, "test").unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let clock = Clock::manual(NEW_YEAR);
    let mut agent = Agent::open(config, key, clock.clone()).unwrap();
    let before = cgroup.usage();

    let started = Instant::now();
    cgroup.burn(1_500);
    let wall = started.elapsed();
    let delta = cgroup.usage() - before;
    clock.set(NEW_YEAR + 900);
    assert_eq!(agent.close_due().unwrap(), vec![1]);
    agent.deliver().unwrap();

    // The cgroup is replaced while the agent runs: its counter starts again.
    drop(cgroup);
    let cgroup = Cgroup::new(&name);
    agent.sample();
    cgroup.burn(500);
    let second = cgroup.usage();
    clock.set(NEW_YEAR + 1_800);
    assert_eq!(agent.close_due().unwrap(), vec![2]);
    agent.deliver().unwrap();

    let reports: Vec<Report> = router.reports();
    eprintln!(
        "burned {wall:?} wall: usage_usec delta {delta}, report {}; recreated cgroup {second}, report {}",
        reports[0].cpu_core_micros, reports[1].cpu_core_micros
    );
    assert_eq!(reports[0].cpu_core_micros, delta);
    // One busy core for ~1.5 s: at least a second of CPU, at most the wall time.
    assert!(delta >= 1_000_000, "{delta}");
    assert!(
        u128::from(delta) <= wall.as_micros() + 50_000,
        "{delta} {wall:?}"
    );
    assert_eq!(reports[1].cpu_core_micros, second);
    assert!(second >= 300_000, "{second}");
}
