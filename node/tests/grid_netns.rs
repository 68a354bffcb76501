//! The grid meter against real traffic: a veth pair this test creates (one end in a network
//! namespace of its own, IPv6 off, static neighbours, so nothing but the test's pings crosses
//! it) carries a known number of ICMP packets, and the node counts exactly their IP bytes,
//! the figure the router meters, not the interface's Ethernet bytes.
#![cfg(test)]

use std::{path::Path, process::Command};

use quid_node::grid;

/// Runs `ip ARGS`, panicking with its error.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespace (and with it the veth pair) goes when the test ends, also on failure.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn mac(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap()
        .to_owned()
}

#[test]
#[ignore = "needs root (network namespaces): cargo xtask test runs it"]
fn the_grid_meter_counts_exactly_the_ip_bytes_of_the_traffic() {
    let id = std::process::id() % 100_000;
    let ns = Netns(format!("qn-grid-{id}"));
    let (host, peer) = (format!("qg{id}a"), format!("qg{id}b"));
    ip(&["netns", "add", &ns.0]);
    ip(&[
        "link", "add", &host, "type", "veth", "peer", "name", &peer, "netns", &ns.0,
    ]);
    // No IPv6 on either end: no router solicitation, DAD or MLD report crosses the pair.
    for (prefix, name) in [(vec![], &host), (vec!["netns", "exec", &ns.0], &peer)] {
        let key = format!("net.ipv6.conf.{name}.disable_ipv6=1");
        let mut args: Vec<&str> = prefix.clone();
        args.extend(["sysctl", "-q", "-w", &key]);
        let status = if prefix.is_empty() {
            Command::new("sysctl").args(["-q", "-w", &key]).status()
        } else {
            Command::new("ip").args(&args).status()
        };
        assert!(status.unwrap().success(), "sysctl {key}");
    }
    ip(&["addr", "add", "198.51.100.1/30", "dev", &host]);
    ip(&["-n", &ns.0, "addr", "add", "198.51.100.2/30", "dev", &peer]);
    ip(&["link", "set", &host, "up"]);
    ip(&["-n", &ns.0, "link", "set", &peer, "up"]);
    // Static neighbours: no ARP.
    let host_mac = mac(&["link", "show", &host]);
    let peer_mac = mac(&["-n", &ns.0, "link", "show", &peer]);
    ip(&[
        "neigh",
        "replace",
        "198.51.100.2",
        "lladdr",
        &peer_mac,
        "dev",
        &host,
        "nud",
        "permanent",
    ]);
    ip(&[
        "-n",
        &ns.0,
        "neigh",
        "replace",
        "198.51.100.1",
        "lladdr",
        &host_mac,
        "dev",
        &peer,
        "nud",
        "permanent",
    ]);
    let net = Path::new("/sys/class/net");
    let (sent0, received0) = grid::read(net, &host).unwrap();
    let (count, payload) = (7u64, 472u64);
    let ping = Command::new("ping")
        .args([
            "-q", "-n", "-c", "7", "-i", "0.2", "-W", "2", "-s", "472", "-I",
        ])
        .arg(&host)
        .arg("198.51.100.2")
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let (sent1, received1) = grid::read(net, &host).unwrap();
    // ICMP echo: payload, 8 bytes of ICMP header, 20 of IPv4; every request answered.
    let ip_bytes = count * (payload + 8 + 20);
    assert_eq!(sent1.value - sent0.value, ip_bytes, "sent");
    assert_eq!(received1.value - received0.value, ip_bytes, "received");
    // The interface itself counted the Ethernet headers too: that is what the meter removes.
    let raw = std::fs::read_to_string(net.join(&host).join("statistics/tx_packets")).unwrap();
    assert!(raw.trim().parse::<u64>().unwrap() >= count);
}
