//! The real `quid` daemon attached to veth interfaces in namespaces the test creates, with
//! real frames sent through them: exact per-subscriber and per-interface counts. Needs root.

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    process::Command,
    time::Duration,
};

use common::{Daemon, Injector, Netns, veth, write_config};
use quid::{
    kernel::test_frames::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, Ethernet},
    metering::snapshot::{Count, Snapshot},
};

const TABLE: &str = "id,name,plan,prefixes
alice,Alice,home,100.64.1.10 2001:db8:a::/56
bizco,Biz Co,biz,198.51.100.8/29 2001:db8:b::/48
inner,Inner,home,198.51.100.12 2001:db8:b:1::/64
multi,Multi,home,100.64.2.1 100.64.2.2 2001:db8:d1::/64 2001:db8:d2::/64
";

/// What the test sent, tallied independently of quid.
#[derive(Default)]
struct Expected {
    /// (subscriber, "up" | "down") -> count.
    subscribers: BTreeMap<(String, &'static str), Count>,
    /// (interface, bucket) -> count.
    buckets: BTreeMap<(String, &'static str), Count>,
    frames: u64,
}

impl Expected {
    fn add(map_count: &mut Count, packets: u64, bytes: u64) {
        map_count.packets += packets;
        map_count.bytes += bytes;
    }

    /// Sends `frame` `n` times; it charges `charges` (subscriber, direction) `ip_len` bytes
    /// each and lands in `bucket` of `iface` with `bucket_bytes`.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        inj: &Injector,
        iface: &str,
        frame: &[u8],
        n: u64,
        charges: &[(&str, &'static str)],
        ip_len: u64,
        bucket: &'static str,
        bucket_bytes: u64,
    ) {
        inj.send(frame, usize::try_from(n).unwrap());
        for &(sub, dir) in charges {
            Self::add(
                self.subscribers.entry((sub.into(), dir)).or_default(),
                n,
                n * ip_len,
            );
        }
        Self::add(
            self.buckets.entry((iface.into(), bucket)).or_default(),
            n,
            n * bucket_bytes,
        );
        self.frames += n;
    }
}

fn got_subscribers(s: &Snapshot) -> BTreeMap<(String, &'static str), Count> {
    let mut m = BTreeMap::new();
    for t in &s.subscribers {
        for (dir, c) in [("up", t.upload), ("down", t.download)] {
            if c.packets > 0 {
                m.insert((t.id.clone(), dir), c);
            }
        }
    }
    m
}

fn got_buckets(s: &Snapshot) -> BTreeMap<(String, &'static str), Count> {
    let mut m = BTreeMap::new();
    for i in &s.interfaces {
        for (b, c) in [
            ("attributed", i.attributed),
            ("non_ip", i.non_ip),
            ("unknown", i.unknown),
            ("malformed", i.malformed),
            ("pppoe_discovery", i.pppoe_discovery),
        ] {
            if c.packets > 0 {
                m.insert((i.attachment.name.clone(), b), c);
            }
        }
    }
    m
}

/// Waits (bounded) until the daemon's snapshot has seen `frames` frames: veth delivers
/// asynchronously, so the last frames may still be in flight when sending returns.
fn wait_for_frames(d: &Daemon, frames: u64) {
    d.wait_for(&format!("{frames} frames"), |s| {
        common::frames_seen(s) >= frames
    });
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn every_subscriber_and_bucket_is_counted_exactly_on_access_core_and_stick_interfaces() {
    let (r, s) = common::router_and_sender();
    veth(&r, "core", &s, "core-p");
    veth(&r, "stick", &s, "stick-p");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &[
            ("acc", "access", "auto"),
            ("core", "core", "generic"),
            ("stick", "both", "native"),
        ],
        TABLE,
    );
    let daemon = Daemon::start(&r, &config);

    let (acc, core, stick) = (
        Injector::new(&s, "acc-p"),
        Injector::new(&s, "core-p"),
        Injector::new(&s, "stick-p"),
    );
    let e = Ethernet::default();
    let net4 = v4("203.0.113.1");
    let net6 = v6("2001:db8:ffff::1");
    let mut x = Expected::default();

    // Access: the source is the subscriber.
    x.send(
        &acc,
        "acc",
        &e.ipv4_udp(v4("100.64.1.10"), net4, 100),
        10,
        &[("alice", "up")],
        128,
        "attributed",
        128,
    );
    x.send(
        &acc,
        "acc",
        &e.ipv6_udp(v6("2001:db8:a:ff::7"), net6, 200),
        5,
        &[("alice", "up")],
        248,
        "attributed",
        248,
    );
    let vlan = Ethernet::default().tag(ETH_P_8021Q, 100);
    x.send(
        &acc,
        "acc",
        &vlan.ipv4_udp(v4("100.64.1.10"), net4, 0),
        3,
        &[("alice", "up")],
        28,
        "attributed",
        28,
    );
    let qinq = Ethernet::default()
        .tag(ETH_P_8021AD, 300)
        .tag(ETH_P_8021Q, 100);
    x.send(
        &acc,
        "acc",
        &qinq.ipv6_udp(v6("2001:db8:a::1"), net6, 0),
        2,
        &[("alice", "up")],
        48,
        "attributed",
        48,
    );
    x.send(
        &acc,
        "acc",
        &e.ipv4_udp(v4("198.51.100.9"), net4, 50),
        4,
        &[("bizco", "up")],
        78,
        "attributed",
        78,
    );
    x.send(
        &acc,
        "acc",
        &e.ipv6_udp(v6("2001:db8:b:2::1"), net6, 0),
        1,
        &[("bizco", "up")],
        48,
        "attributed",
        48,
    );
    // Nested prefixes: the /32 and /64 inside bizco's /29 and /48 belong to `inner`.
    x.send(
        &acc,
        "acc",
        &e.ipv4_udp(v4("198.51.100.12"), net4, 10),
        6,
        &[("inner", "up")],
        38,
        "attributed",
        38,
    );
    x.send(
        &acc,
        "acc",
        &e.ipv6_udp(v6("2001:db8:b:1::5"), net6, 0),
        2,
        &[("inner", "up")],
        48,
        "attributed",
        48,
    );
    // One subscriber, four prefixes of both families.
    for src in ["100.64.2.1", "100.64.2.2"] {
        x.send(
            &acc,
            "acc",
            &e.ipv4_udp(v4(src), net4, 0),
            1,
            &[("multi", "up")],
            28,
            "attributed",
            28,
        );
    }
    for src in ["2001:db8:d1::1", "2001:db8:d2::1"] {
        x.send(
            &acc,
            "acc",
            &e.ipv6_udp(v6(src), net6, 0),
            1,
            &[("multi", "up")],
            48,
            "attributed",
            48,
        );
    }
    // Unknown sources, non-IP and malformed frames each have their own bucket.
    x.send(
        &acc,
        "acc",
        &e.ipv4_udp(v4("203.0.113.9"), net4, 0),
        7,
        &[],
        28,
        "unknown",
        28,
    );
    x.send(
        &acc,
        "acc",
        &e.frame(ETH_P_ARP, &[0u8; 28]),
        3,
        &[],
        0,
        "non_ip",
        42,
    );
    x.send(
        &acc,
        "acc",
        &e.frame(ETH_P_IP, &[0x45u8; 10]),
        2,
        &[],
        0,
        "malformed",
        24,
    );

    // Core: the destination is the subscriber.
    x.send(
        &core,
        "core",
        &e.ipv4_udp(net4, v4("100.64.1.10"), 1000),
        3,
        &[("alice", "down")],
        1028,
        "attributed",
        1028,
    );
    x.send(
        &core,
        "core",
        &e.ipv6_udp(net6, v6("2001:db8:a:1::1"), 1000),
        2,
        &[("alice", "down")],
        1048,
        "attributed",
        1048,
    );
    x.send(
        &core,
        "core",
        &e.ipv4_udp(net4, v4("100.64.2.2"), 0),
        4,
        &[("multi", "down")],
        28,
        "attributed",
        28,
    );
    x.send(
        &core,
        "core",
        &e.ipv4_udp(v4("100.64.1.10"), net4, 0),
        1,
        &[],
        28,
        "unknown",
        28,
    );

    // Router on a stick: subscriber to subscriber charges both; Internet to subscriber one.
    x.send(
        &stick,
        "stick",
        &e.ipv4_udp(v4("100.64.1.10"), v4("198.51.100.10"), 0),
        5,
        &[("alice", "up"), ("bizco", "down")],
        28,
        "attributed",
        28,
    );
    x.send(
        &stick,
        "stick",
        &e.ipv4_udp(net4, v4("198.51.100.12"), 0),
        2,
        &[("inner", "down")],
        28,
        "attributed",
        28,
    );

    wait_for_frames(&daemon, x.frames);
    let snap = daemon.stop();
    assert_eq!(got_subscribers(&snap), x.subscribers);
    assert_eq!(got_buckets(&snap), x.buckets);

    let modes: Vec<(&str, &str)> = snap
        .interfaces
        .iter()
        .map(|i| (i.attachment.name.as_str(), i.attachment.mode.as_str()))
        .collect();
    assert_eq!(
        modes,
        [("acc", "native"), ("core", "generic"), ("stick", "native")]
    );
    for iface in ["acc", "core", "stick"] {
        assert!(
            !r.has_xdp(iface),
            "{iface} still has an XDP program after SIGTERM"
        );
    }
}

/// Static neighbour entries and no DAD: the only packets are the test's own datagrams.
fn routed_topology() -> (Netns, Netns, Netns) {
    let sub = Netns::new("sub");
    let rtr = Netns::new("rtr");
    let up = Netns::new("up");
    for ns in [&sub, &rtr, &up] {
        ns.enable_ipv6();
    }
    veth(&sub, "eth0", &rtr, "acc");
    veth(&up, "eth0", &rtr, "core");
    let mac = |ns: &Netns, i: &str| {
        ns.exec(&["cat", &format!("/sys/class/net/{i}/address")])
            .trim()
            .to_owned()
    };
    let (sub_mac, up_mac, acc_mac, core_mac) = (
        mac(&sub, "eth0"),
        mac(&up, "eth0"),
        mac(&rtr, "acc"),
        mac(&rtr, "core"),
    );
    rtr.exec(&[
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/forwarding",
    ]);
    for (ns, dev, addrs) in [
        (&sub, "eth0", ["100.64.5.2/24", "2001:db8:5::2/64"]),
        (&rtr, "acc", ["100.64.5.1/24", "2001:db8:5::1/64"]),
        (&rtr, "core", ["192.0.2.1/24", "2001:db8:ff::1/64"]),
        (&up, "eth0", ["192.0.2.2/24", "2001:db8:ff::2/64"]),
    ] {
        for a in addrs {
            ns.exec(&["ip", "addr", "add", a, "dev", dev, "nodad"]);
        }
    }
    sub.exec(&["ip", "route", "add", "default", "via", "100.64.5.1"]);
    sub.exec(&[
        "ip",
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:5::1",
    ]);
    up.exec(&["ip", "route", "add", "100.64.0.0/10", "via", "192.0.2.1"]);
    up.exec(&[
        "ip",
        "-6",
        "route",
        "add",
        "2001:db8:5::/64",
        "via",
        "2001:db8:ff::1",
    ]);
    for (ns, addr, mac, dev) in [
        (&sub, "100.64.5.1", &acc_mac, "eth0"),
        (&sub, "2001:db8:5::1", &acc_mac, "eth0"),
        (&rtr, "100.64.5.2", &sub_mac, "acc"),
        (&rtr, "2001:db8:5::2", &sub_mac, "acc"),
        (&rtr, "192.0.2.2", &up_mac, "core"),
        (&rtr, "2001:db8:ff::2", &up_mac, "core"),
        (&up, "192.0.2.1", &core_mac, "eth0"),
        (&up, "2001:db8:ff::1", &core_mac, "eth0"),
    ] {
        ns.exec(&[
            "ip",
            "neigh",
            "replace",
            addr,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }
    (sub, rtr, up)
}

/// Sends `n` datagrams of `size` bytes from a socket in `from` to `to` and returns how many a
/// socket bound in `at` received (bounded by count and a 5 s timeout).
fn udp_flow(from: &Netns, at: &Netns, to: SocketAddr, n: usize, size: usize) -> usize {
    let bind: SocketAddr = match to.ip() {
        IpAddr::V4(_) => "0.0.0.0:9999".parse().unwrap(),
        IpAddr::V6(_) => "[::]:9999".parse().unwrap(),
    };
    let receiver = at.run(move || UdpSocket::bind(bind).unwrap());
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let sender = from.run(move || {
        UdpSocket::bind(if bind.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })
        .unwrap()
    });
    let payload = vec![0x5au8; size];
    let mut received = 0;
    let mut buf = vec![0u8; 65536];
    for _ in 0..n {
        sender.send_to(&payload, to).unwrap();
        // One in flight at a time keeps the bounded loop lossless.
        if receiver.recv(&mut buf).is_ok() {
            received += 1;
        }
    }
    received
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn routed_udp_through_the_kernel_stack_is_counted_both_ways() {
    let (sub, rtr, up) = routed_topology();
    let dir = tempfile::tempdir().unwrap();
    let table = "id,name,plan,prefixes\nfarm,Farm,home,100.64.5.2 2001:db8:5::/64\n";
    let config = write_config(
        dir.path(),
        &[("acc", "access", "auto"), ("core", "core", "auto")],
        table,
    );
    let daemon = Daemon::start(&rtr, &config);

    let up4: SocketAddr = "192.0.2.2:9999".parse().unwrap();
    let up6: SocketAddr = "[2001:db8:ff::2]:9999".parse().unwrap();
    let sub4: SocketAddr = "100.64.5.2:9999".parse().unwrap();
    let sub6: SocketAddr = "[2001:db8:5::2]:9999".parse().unwrap();
    assert_eq!(udp_flow(&sub, &up, up4, 40, 500), 40);
    assert_eq!(udp_flow(&sub, &up, up6, 30, 1000), 30);
    assert_eq!(udp_flow(&up, &sub, sub4, 20, 1400), 20);
    assert_eq!(udp_flow(&up, &sub, sub6, 10, 1200), 10);

    wait_for_frames(&daemon, 100);
    let snap = daemon.stop();
    let farm = &snap.subscribers[0];
    assert_eq!(
        farm.upload,
        Count {
            packets: 70,
            bytes: 40 * 528 + 30 * 1048
        }
    );
    assert_eq!(
        farm.download,
        Count {
            packets: 30,
            bytes: 20 * 1428 + 10 * 1248
        }
    );
    for i in &snap.interfaces {
        // With IPv6 on, the kernel may send an MLD report from a link-local address: that is
        // IP from no subscriber, so `unknown` may hold it, but nothing here is malformed.
        assert_eq!(i.malformed.packets, 0, "{i:?}");
        assert_eq!(
            i.attributed.packets,
            if i.attachment.name == "acc" { 70 } else { 30 },
            "{i:?}"
        );
    }
}

fn quid(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quid"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_bad_table_stops_the_daemon_before_it_touches_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &[("lo", "access", "auto")],
        "id,name,plan,prefixes\na,A,home,100.64.0.1\nb,B,home,100.64.0.300\n",
    );
    let (code, err) = quid(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "subscribers.csv:3: prefixes: `100.64.0.300` is not an IPv4 or IPv6 address or prefix"
        ),
        "{err}"
    );
    assert!(err.contains("refuses to start"), "{err}");
    assert!(
        !dir.path().join("state").exists(),
        "nothing should have been started"
    );
}

#[test]
fn a_bad_config_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &[("lo", "sideways", "auto")],
        "id,name,plan,prefixes\n",
    );
    let (code, err) = quid(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("quid.toml:14: interface[0].role: unknown variant `sideways`"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_table_larger_than_the_kernel_tables_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = String::from("id,name,plan,prefixes\n");
    for i in 0..1025 {
        table += &format!("s{i},S,home,100.64.{}.{}\n", i / 256, i % 256);
    }
    let config = write_config(dir.path(), &[("lo", "access", "auto")], &table);
    let (code, err) = quid(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("the table has 1025 subscribers, the kernel tables hold 1024: raise subscribers.capacity"), "{err}");
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn quid_subscribers_prints_the_totals() {
    let (r, s) = common::router_and_sender();
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config_sections(
        dir.path(),
        &[("acc", "access", "auto")],
        "id,name,plan,prefixes\nalice,Alice Farm,home,100.64.1.10\n",
        "\n[grid]\nprefixes = [\"192.0.2.0/25\"]\n",
    );
    let daemon = Daemon::start(&r, &config);
    // 4 frames to the Internet, 2 to the grid: 400 and 200 IP bytes up.
    let injector = Injector::new(&s, "acc-p");
    injector.send(
        &Ethernet::default().ipv4_udp(v4("100.64.1.10"), v4("203.0.113.1"), 72),
        4,
    );
    injector.send(
        &Ethernet::default().ipv4_udp(v4("100.64.1.10"), v4("192.0.2.7"), 72),
        2,
    );
    wait_for_frames(&daemon, 6);
    // A live read while the daemon runs: it shows the last interval's snapshot.
    std::thread::sleep(Duration::from_millis(1100));
    let out = Command::new(env!("CARGO_BIN_EXE_quid"))
        .args(["subscribers", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("alice"))
        .unwrap_or_else(|| panic!("no row for alice:\n{text}"));
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        fields,
        [
            "alice", "Alice", "Farm", "home", "6", "400", "B", "200", "B", "0", "0", "B", "0", "B"
        ],
        "{text}"
    );
    // The exact figures, both classes together and apart.
    let (ok, json) = common::quid_cli(&config, &["subscribers", "--json"]);
    assert!(ok, "{json}");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let alice = &doc["subscribers"][0];
    assert_eq!(alice["upload"]["bytes"], 600, "{json}");
    assert_eq!(
        alice["by_class"]["internet"]["upload"]["bytes"], 400,
        "{json}"
    );
    assert_eq!(alice["by_class"]["grid"]["upload"]["bytes"], 200, "{json}");
    assert_eq!(alice["by_class"]["grid"]["upload"]["packets"], 2, "{json}");
    daemon.stop();
}
