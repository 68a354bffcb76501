//! A real Kea DHCPv4 server (Debian's `kea-dhcp4-server`) in the router's namespace hands a
//! lease to a real DHCP client (`dhclient`) in the subscriber's namespace; quid, following
//! Kea's memfile lease file, binds the leased address to the subscriber the mapping file names,
//! traffic from it counts to that subscriber exactly, and once the lease expires (the client
//! gone) the binding is released and the address counts to no one. Needs root.

#![cfg(test)]

mod common;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
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

/// A Kea server (kea-dhcp4 or kea-dhcp6) running in a namespace; stopped on drop.
struct Kea(Child);

/// The lease timers: renewal and rebinding after the lifetime's middle, so the client (stopped
/// long before) never speaks from its leased address, and the lease soon expires.
const TIMERS: &str = "\"renew-timer\": 6, \"rebind-timer\": 7";

impl Kea {
    /// Starts `server` (`kea-dhcp4`, `kea-dhcp6`) on interface `acc` with the memfile lease
    /// file `leases` (cleaned up every `lfc_secs`, 0: never) and the rest of its config
    /// (`subnets`: the subnet4/subnet6 entry).
    fn start(
        ns: &Netns,
        dir: &Path,
        server: &str,
        leases: &Path,
        lfc_secs: u32,
        subnets: &str,
    ) -> Kea {
        let config = dir.join(format!("{server}.json"));
        let section = if server == "kea-dhcp4" {
            "Dhcp4"
        } else {
            "Dhcp6"
        };
        let text = format!(
            r#"{{"{section}": {{
  "interfaces-config": {{"interfaces": ["acc"]}},
  "lease-database": {{"type": "memfile", "persist": true, "name": "{leases}", "lfc-interval": {lfc_secs}}},
  "valid-lifetime": {VALID_SECS}, {TIMERS},
  "expired-leases-processing": {{"reclaim-timer-wait-time": 1, "flush-reclaimed-timer-wait-time": 1, "hold-reclaimed-time": 1}},
  {subnets},
  "loggers": [{{"name": "{server}", "output_options": [{{"output": "{log}"}}], "severity": "INFO"}}]
}}}}"#,
            leases = leases.display(),
            log = dir.join(format!("{server}.log")).display(),
        );
        std::fs::write(&config, text).unwrap();
        let child = common::dies_with_test(&mut Command::new("ip"))
            .args(["netns", "exec", &ns.name, server, "-c"])
            .arg(&config)
            // Its pid and lock files in the test's folder, not /run/kea.
            .env("KEA_PIDFILE_DIR", dir)
            .env("KEA_LOCKFILE_DIR", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Kea (apt-get install kea-dhcp4-server kea-dhcp6-server; scripts/bootstrap.sh does)");
        Kea(child)
    }
}

impl Drop for Kea {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dhclient running in the foreground in a namespace; killed on drop.
struct Client(Child);

impl Client {
    /// Starts the client (`mode`: `-4`, or `-6` with `-N`, `-P`) and returns once `leased`
    /// holds (bounded): Kea has written its lease.
    fn lease(ns: &Netns, dir: &Path, mode: &[&str], leased: impl Fn() -> bool) -> Client {
        // No script: the client must not touch the host's resolv.conf; the test needs the
        // lease in Kea's file, not the address on the interface.
        let child = common::dies_with_test(&mut Command::new("ip"))
            .args(["netns", "exec", &ns.name, "dhclient", "-d"])
            .args(mode)
            .args(["-sf", "/bin/true", "-lf"])
            .arg(dir.join("dhclient.leases"))
            .arg("-pf")
            .arg(dir.join("dhclient.pid"))
            .arg("acc-p")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dhclient (apt-get install isc-dhcp-client; scripts/bootstrap.sh does)");
        let client = Client(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !leased() {
            assert!(
                Instant::now() < deadline,
                "the client got no lease within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        client
    }

    /// Stops the client without releasing its lease (a subscriber's router unplugged): it
    /// never speaks again, from the leased address or any other.
    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

/// quid's config in `dir`: alice's addresses all from DHCP, Kea's lease file `leases` followed
/// (`key`: lease_file4 or lease_file6), the metrics on [`METRICS_PORT`].
fn config(dir: &Path, key: &str, leases: &Path) -> PathBuf {
    write_config_sections(
        dir,
        &[("acc", "access", "auto")],
        "id,name,plan,prefixes\nalice,Alice,home,dynamic\nbob,Bob,home,198.51.100.9\n",
        &format!(
            "\n[metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"\n\n[dhcp]\n{key} = \"{}\"\n\
             map = \"dhcp-map.csv\"\npoll_ms = 200\n",
            leases.display()
        ),
    )
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
    let daemon = Daemon::start(&r, &config(dir.path(), "lease_file4", &leases));
    let _kea = Kea::start(
        &r,
        dir.path(),
        "kea-dhcp4",
        &leases,
        // Lease file cleanup every second: the file is rewritten under quid throughout.
        1,
        r#""subnet4": [{"id": 1, "subnet": "192.0.2.0/24", "pools": [{"pool": "192.0.2.100 - 192.0.2.110"}]}]"#,
    );
    // Kea takes a moment to open its sockets; the client retries within its bounded run.
    let client = Client::lease(&c, dir.path(), &["-4"], || {
        std::fs::read_to_string(&leases).is_ok_and(|t| t.contains(CLIENT_MAC))
    });
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
    let quiet = daemon.wait_for("a snapshot", |_| true);
    let (unknown_before, seen_before) = (unknown(&quiet), common::frames_seen(&quiet));
    inj.send(&frame, 10);
    let snap = daemon.wait_for("10 more frames", |s| {
        common::frames_seen(s) >= seen_before + 10
    });
    assert_eq!(alice(&snap), (20, 20 * 128), "{:?}", snap.interfaces);
    assert_eq!(unknown(&snap), unknown_before + 10, "{:?}", snap.interfaces);
    // Kea's lease file cleanup moved the file aside and started a new one meanwhile, and the
    // binding held through it: bound once, released once.
    let cleaned = ["2", "completed", "1"]
        .iter()
        .any(|suffix| leases.with_extension(format!("csv.{suffix}")).exists());
    assert!(
        cleaned,
        "Kea never cleaned its lease file up: {:?}\n{}",
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        std::fs::read_to_string(dir.path().join("kea-dhcp4.log")).unwrap_or_default()
    );
    let (_, body) = r.run(|| http_here(METRICS_PORT, "GET", "/metrics", b""));
    for outcome in ["bound", "released"] {
        let series = format!("quid_binding_events_total{{outcome=\"{outcome}\",source=\"dhcp\"}}");
        assert_eq!(metric(&body, &series), 1, "{series}\n{}", daemon.log());
    }
    daemon.stop();
}

/// The DUID and the leases of the newest assigned lines of Kea's DHCPv6 file: (duid, IA_NA
/// address, IA_PD prefix).
fn leased6(leases: &Path) -> (String, Ipv6Addr, ipnet::Ipv6Net) {
    let text = std::fs::read_to_string(leases).unwrap();
    let (mut duid, mut na, mut pd) = (None, None, None);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        // address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,...
        if f.len() < 9 || f[2] == "0" {
            continue;
        }
        duid = Some(f[1].to_string());
        match f[6] {
            "0" => na = f[0].parse().ok(),
            "2" => pd = format!("{}/{}", f[0], f[8]).parse().ok(),
            _ => {}
        }
    }
    match (duid, na, pd) {
        (Some(d), Some(a), Some(p)) => (d, a, p),
        _ => panic!("no address and prefix leased in {text}"),
    }
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_kea_dhcpv6_address_and_delegated_prefix_bind_by_duid_until_they_expire() {
    let r = Netns::new("rtr6");
    let c = Netns::new("cli6");
    r.enable_ipv6();
    c.enable_ipv6();
    veth(&r, "acc", &c, "acc-p");
    r.exec(&["ip", "addr", "add", "2001:db8:1::1/64", "dev", "acc"]);
    // DHCPv6 speaks from link-local addresses: wait (bounded) until both ends have theirs.
    let deadline = Instant::now() + Duration::from_secs(5);
    for (ns, ifname) in [(&r, "acc"), (&c, "acc-p")] {
        while !ns
            .exec(&["ip", "-6", "addr", "show", "dev", ifname, "scope", "link"])
            .lines()
            .any(|l| l.contains("fe80") && !l.contains("tentative"))
        {
            assert!(
                Instant::now() < deadline,
                "no link-local address on {ifname}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("kea-leases6.csv");
    let map = dir.path().join("dhcp-map.csv");
    // Nobody mapped yet: the client's DUID is known once it has asked.
    std::fs::write(&map, "key,value,subscriber\n").unwrap();
    let daemon = Daemon::start(&r, &config(dir.path(), "lease_file6", &leases));
    let _kea = Kea::start(
        &r,
        dir.path(),
        "kea-dhcp6",
        &leases,
        0,
        // The server's DUID not persisted (its default file is in /var/lib/kea).
        r#""preferred-lifetime": 7,
  "server-id": {"type": "EN", "enterprise-id": 2495, "identifier": "71756964", "persist": false},
  "subnet6": [{"id": 1, "subnet": "2001:db8:1::/64", "interface": "acc",
    "pools": [{"pool": "2001:db8:1::100 - 2001:db8:1::1ff"}],
    "pd-pools": [{"prefix": "2001:db8:100::", "prefix-len": 48, "delegated-len": 56}]}]"#,
    );
    let client = Client::lease(&c, dir.path(), &["-6", "-N", "-P"], || {
        std::fs::read_to_string(&leases).is_ok_and(|t| t.lines().skip(1).count() >= 2)
    });
    client.stop();
    let (duid, address, prefix) = leased6(&leases);
    // Leased but unmapped: nothing is bound until the mapping file names the DUID (read again
    // live when it changes).
    std::thread::sleep(Duration::from_millis(1500));
    wait_bindings(&r, &daemon, 0, Duration::from_secs(1));
    std::fs::write(&map, format!("key,value,subscriber\nduid,{duid},alice\n")).unwrap();
    wait_bindings(&r, &daemon, 2, Duration::from_secs(5));

    // The leased address and any address of the delegated prefix count to alice, exactly.
    let inj = Injector::new(&c, "acc-p");
    let dst = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
    let eth = Ethernet::default();
    inj.send(&eth.ipv6_udp(address, dst, 100), 10);
    let in_prefix = Ipv6Addr::from(u128::from(prefix.network()) | 0x1234);
    inj.send(&eth.ipv6_udp(in_prefix, dst, 100), 5);
    let snap = daemon.wait_for("alice's 15 frames", |s| alice(s).0 >= 15);
    assert_eq!(alice(&snap), (15, 15 * 148));

    // Both leases expire with the client gone: both bindings go.
    wait_bindings(&r, &daemon, 0, Duration::from_secs(VALID_SECS + 5));
    daemon.stop();
}
