//! The two meters a report is judged by, against the same real traffic: a node's grid meter
//! (the node agent's interface counters, `quid_node::grid`) and the router's XDP count of the
//! subscriber's grid class. The node's grid interface (here in the test's own namespace, IPv6
//! off everywhere, static neighbours, so nothing but the test's pings crosses it) reaches a
//! grid host through a home gateway and the ISP's router, where the daemon counts on both
//! sides; both meters must give the same IP bytes, each way. Needs root (namespaces, BPF).
#![cfg(test)]

mod common;

use std::{path::Path, process::Command};

use common::{Daemon, Netns, sh};

/// The MAC address of `dev`, in namespace `ns` (`None`: this one).
fn mac(ns: Option<&Netns>, dev: &str) -> String {
    let mut args = vec!["ip", "-j"];
    if let Some(ns) = ns {
        args.extend(["-n", &ns.name]);
    }
    args.extend(["link", "show", dev]);
    let doc: serde_json::Value = serde_json::from_str(&sh(&args)).unwrap();
    doc[0]["address"].as_str().unwrap().to_owned()
}

/// A permanent neighbour entry (no ARP crosses the links).
fn neighbour(ns: Option<&Netns>, addr: &str, lladdr: &str, dev: &str) {
    let mut args = vec!["ip"];
    if let Some(ns) = ns {
        args.extend(["-n", &ns.name]);
    }
    args.extend([
        "neigh",
        "replace",
        addr,
        "lladdr",
        lladdr,
        "dev",
        dev,
        "nud",
        "permanent",
    ]);
    sh(&args);
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn the_nodes_grid_meter_and_the_routers_agree_to_the_byte() {
    // The node (this namespace) sits behind the subscriber's home gateway, which routes to
    // the ISP's router, where quid counts on both sides; the grid host is past the router.
    // The node's interface faces the gateway, as on a real LAN (a veth whose peer runs XDP
    // natively reports its sent bytes without the Ethernet header, unlike any real link).
    let gateway = Netns::new("gridcpe");
    let router = Netns::new("gridrtr");
    let grid = Netns::new("gridhost");
    // Its end stays here, the peer is the gateway's LAN port; both go with the gateway
    // namespace, also when the test fails.
    let node_if = format!("qgm{}", std::process::id() % 100_000);
    sh(&[
        "ip",
        "link",
        "add",
        &node_if,
        "type",
        "veth",
        "peer",
        "name",
        "lan",
        "netns",
        &gateway.name,
    ]);
    sh(&[
        "sysctl",
        "-q",
        "-w",
        &format!("net.ipv6.conf.{node_if}.disable_ipv6=1"),
    ]);
    common::veth(&gateway, "wan", &router, "acc");
    common::veth(&router, "core", &grid, "g0");
    sh(&["ip", "addr", "add", "100.64.7.2/24", "dev", &node_if]);
    sh(&["ip", "link", "set", &node_if, "up"]);
    gateway.exec(&["ip", "link", "set", "lan", "up"]);
    gateway.exec(&["ip", "addr", "add", "100.64.7.1/24", "dev", "lan"]);
    gateway.exec(&["ip", "addr", "add", "100.64.8.2/30", "dev", "wan"]);
    gateway.exec(&["ip", "route", "add", "default", "via", "100.64.8.1"]);
    router.exec(&["ip", "addr", "add", "100.64.8.1/30", "dev", "acc"]);
    router.exec(&["ip", "addr", "add", "203.0.113.1/24", "dev", "core"]);
    router.exec(&["ip", "route", "add", "100.64.7.0/24", "via", "100.64.8.2"]);
    grid.exec(&["ip", "addr", "add", "203.0.113.2/24", "dev", "g0"]);
    grid.exec(&["ip", "route", "add", "100.64.0.0/10", "via", "203.0.113.1"]);
    for ns in [&gateway, &router] {
        ns.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    }
    // The grid host, reached through the gateway; the route goes with the interface.
    sh(&[
        "ip",
        "route",
        "add",
        "203.0.113.2/32",
        "via",
        "100.64.7.1",
        "dev",
        &node_if,
    ]);
    for (ns, addr, peer_ns, peer_dev, dev) in [
        (None, "100.64.7.1", Some(&gateway), "lan", node_if.as_str()),
        (Some(&gateway), "100.64.7.2", None, node_if.as_str(), "lan"),
        (Some(&gateway), "100.64.8.1", Some(&router), "acc", "wan"),
        (Some(&router), "100.64.8.2", Some(&gateway), "wan", "acc"),
        (Some(&router), "203.0.113.2", Some(&grid), "g0", "core"),
        (Some(&grid), "203.0.113.1", Some(&router), "core", "g0"),
    ] {
        neighbour(ns, addr, &mac(peer_ns, peer_dev), dev);
    }

    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config_sections(
        dir.path(),
        &[("acc", "access", "auto"), ("core", "core", "auto")],
        "id,name,plan,prefixes\nalice,Alice,home,100.64.7.0/24\n",
        "\n[grid]\nprefixes = [\"203.0.113.0/24\"]\n",
    );
    let daemon = Daemon::start(&router, &config);
    let net = Path::new("/sys/class/net");
    let (sent0, received0) = quid_node::grid::read(net, &node_if).unwrap();
    let ping = Command::new("ping")
        .args([
            "-q", "-n", "-c", "9", "-i", "0.2", "-W", "2", "-s", "472", "-I",
        ])
        .arg(&node_if)
        .arg("203.0.113.2")
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let (sent1, received1) = quid_node::grid::read(net, &node_if).unwrap();
    let node = (sent1.value - sent0.value, received1.value - received0.value);
    // 9 echoes of 472 bytes: 500 IP bytes each way per echo.
    assert_eq!(node, (4500, 4500), "the node's meter");
    let snapshot = daemon.wait_for("alice's grid bytes both ways", |s| {
        s.subscribers.iter().any(|a| {
            a.by_class
                .as_ref()
                .is_some_and(|c| c.grid.upload.bytes >= node.0 && c.grid.download.bytes >= node.1)
        })
    });
    let alice = snapshot
        .subscribers
        .iter()
        .find(|a| a.id == "alice")
        .unwrap();
    let class = alice.by_class.as_ref().unwrap();
    assert_eq!(
        (class.grid.upload.bytes, class.grid.download.bytes),
        node,
        "the router's meter of alice's grid traffic"
    );
    assert_eq!(
        (class.grid.upload.packets, class.grid.download.packets),
        (9, 9)
    );
    assert_eq!(
        (class.internet.upload.bytes, class.internet.download.bytes),
        (0, 0),
        "nothing but the pings crossed"
    );
    daemon.stop();
}
