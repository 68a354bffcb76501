//! A real Kea DHCPv4 server (Debian's `kea-dhcp4-server`) in the router's namespace hands a
//! lease to a real DHCP client (`dhclient`) in the subscriber's namespace; quid, following
//! Kea's memfile lease file, binds the leased address to the subscriber the mapping file names,
//! traffic from it counts to that subscriber exactly, and once the lease expires (the client
//! gone) the binding is released and the address counts to no one. Needs root.

#![cfg(test)]

mod common;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Daemon, Injector, Netns, http_here, metric, veth, write_config_sections};
use quid::{kernel::test_frames::Ethernet, metering::snapshot::Snapshot};

/// The client's hardware address, which the mapping file names.
const CLIENT_MAC: &str = "02:00:00:00:00:0a";
/// Lease lifetime: short, so the test sees it expire.
const VALID_SECS: u64 = 8;
const METRICS_PORT: u16 = 9464;

/// kea-dhcp4 running in a namespace; stopped on drop.
struct Kea(Child);

impl Kea {
    fn start(ns: &Netns, dir: &Path, leases: &Path) -> Kea {
        let config = dir.join("kea-dhcp4.json");
        // Renewal and rebinding after the lifetime's middle: the client is stopped long
        // before, so nothing but the test's frames comes from the leased address.
        let text = format!(
            r#"{{"Dhcp4": {{
  "interfaces-config": {{"interfaces": ["acc"]}},
  "lease-database": {{"type": "memfile", "persist": true, "name": "{leases}", "lfc-interval": 0}},
  "valid-lifetime": {VALID_SECS}, "renew-timer": 6, "rebind-timer": 7,
  "expired-leases-processing": {{"reclaim-timer-wait-time": 1, "flush-reclaimed-timer-wait-time": 1, "hold-reclaimed-time": 1}},
  "subnet4": [{{"id": 1, "subnet": "192.0.2.0/24", "pools": [{{"pool": "192.0.2.100 - 192.0.2.110"}}]}}],
  "loggers": [{{"name": "kea-dhcp4", "output_options": [{{"output": "{log}"}}], "severity": "INFO"}}]
}}}}"#,
            leases = leases.display(),
            log = dir.join("kea.log").display(),
        );
        std::fs::write(&config, text).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "kea-dhcp4", "-c"])
            .arg(&config)
            // Its pid and lock files in the test's folder, not /run/kea.
            .env("KEA_PIDFILE_DIR", dir)
            .env("KEA_LOCKFILE_DIR", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kea-dhcp4 (apt-get install kea-dhcp4-server; scripts/bootstrap.sh does)");
        Kea(child)
    }
}

impl Drop for Kea {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dhclient's pid file; the client is killed on drop (if the test did not stop it).
struct Client(PathBuf);

impl Client {
    /// Asks for a lease once (bounded) and returns once the client has one.
    fn lease(ns: &Netns, dir: &Path) -> Client {
        let pid = dir.join("dhclient.pid");
        let client = Client(pid.clone());
        // No script: the client must not touch the host's resolv.conf; the test needs the
        // lease in Kea's file, not the address on the interface.
        let out = Command::new("timeout")
            .args([
                "30", "ip", "netns", "exec", &ns.name, "dhclient", "-4", "-1", "-sf",
            ])
            .arg("/bin/true")
            .arg("-lf")
            .arg(dir.join("dhclient.leases"))
            .arg("-pf")
            .arg(&pid)
            .arg("acc-p")
            .output()
            .expect("dhclient (apt-get install isc-dhcp-client; scripts/bootstrap.sh does)");
        assert!(
            out.status.success(),
            "dhclient got no lease: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        client
    }

    /// Stops the client without releasing its lease (a subscriber's router unplugged).
    fn stop(&self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The leased address, from the newest assigned line of Kea's file.
fn leased(leases: &Path) -> Ipv4Addr {
    let text = std::fs::read_to_string(leases).unwrap();
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("192.0.2.") && l.contains(CLIENT_MAC))
        .unwrap_or_else(|| panic!("no lease in {text}"));
    line.split(',').next().unwrap().parse().unwrap()
}

/// Waits (bounded) until the router's metrics say `n` DHCP bindings are live.
fn wait_bindings(r: &Netns, d: &Daemon, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (_, body) = r.run(|| http_here(METRICS_PORT, "GET", "/metrics", b""));
        if body.contains("quid_bindings_active")
            && metric(&body, "quid_bindings_active{source=\"dhcp\"}") == n
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not {n} DHCP bindings live:\n{body}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alice(s: &Snapshot) -> (u64, u64) {
    let t = s.subscribers.iter().find(|t| t.id == "alice").unwrap();
    (t.upload.packets, t.upload.bytes)
}

fn unknown(s: &Snapshot) -> u64 {
    s.interfaces.iter().map(|i| i.unknown.packets).sum()
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_kea_lease_binds_its_address_to_the_subscriber_until_it_expires() {
    let r = Netns::new("rtr");
    let c = Netns::new("cli");
    veth(&r, "acc", &c, "acc-p");
    c.exec(&["ip", "link", "set", "acc-p", "address", CLIENT_MAC]);
    r.exec(&["ip", "addr", "add", "192.0.2.1/24", "dev", "acc"]);
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("kea-leases4.csv");
    std::fs::write(
        dir.path().join("dhcp-map.csv"),
        format!("key,value,subscriber\nhwaddr,{CLIENT_MAC},alice\n"),
    )
    .unwrap();
    let config = write_config_sections(
        dir.path(),
        &[("acc", "access", "auto")],
        "id,name,plan,prefixes\nalice,Alice,home,dynamic\nbob,Bob,home,198.51.100.9\n",
        &format!(
            "\n[metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"\n\n[dhcp]\nlease_file4 = \"{}\"\nmap = \"dhcp-map.csv\"\npoll_ms = 200\n",
            leases.display()
        ),
    );
    let daemon = Daemon::start(&r, &config);
    let _kea = Kea::start(&r, dir.path(), &leases);
    // Kea takes a moment to open its sockets; the client retries within its bounded run.
    let client = Client::lease(&c, dir.path());
    client.stop();
    let address = leased(&leases);
    wait_bindings(&r, &daemon, 1, Duration::from_secs(5));

    // Frames from the leased address count to alice, exactly.
    let inj = Injector::new(&c, "acc-p");
    let frame = Ethernet::default().ipv4_udp(address, Ipv4Addr::new(203, 0, 113, 1), 100);
    inj.send(&frame, 20);
    let snap = daemon.wait_for("alice's 20 frames", |s| alice(s).0 >= 20);
    assert_eq!(alice(&snap), (20, 20 * 128));

    // The client never renews: the lease expires, the binding goes, and the address counts
    // to no one.
    wait_bindings(&r, &daemon, 0, Duration::from_secs(VALID_SECS + 5));
    // A snapshot taken after a quiet interval holds every frame sent so far.
    std::thread::sleep(Duration::from_millis(1500));
    let unknown_before = unknown(&daemon.wait_for("a snapshot", |_| true));
    inj.send(&frame, 10);
    let snap = daemon.wait_for("10 unknown frames", |s| unknown(s) >= unknown_before + 10);
    assert_eq!(alice(&snap), (20, 20 * 128));
    assert_eq!(unknown(&snap), unknown_before + 10);
    daemon.stop();
}
