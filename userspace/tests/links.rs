//! Links quid reads besides plain Ethernet, through the real daemon in namespaces the test
//! creates: PPPoE session and discovery frames over a veth pair, and a tun device (no Ethernet
//! header at all) at `quid check`, `quid run` and when it is created again. Needs root.

// Integration-test crates are test code throughout: `cfg(test)` lets clippy.toml's
// allow-unwrap/expect-in-tests apply to their helpers too.
#![cfg(test)]

mod common;

use std::{
    fs::File,
    io::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd as _,
    path::Path,
    process::Command,
};

use common::{Daemon, Injector, Netns, quid_run_refused, veth, write_config};
use quid::{
    kernel::{
        link_type::Framing,
        test_frames::{self as frames, ETH_P_8021AD, ETH_P_8021Q, Ethernet, PADI, PADT, PPP_LCP},
    },
    metering::snapshot::{Count, InterfaceTotals, Snapshot},
};

const TABLE: &str = "id,name,plan,prefixes
alice,Alice,home,100.64.1.10 2001:db8:a::/56
bizco,Biz Co,biz,198.51.100.8/29 2001:db8:b::/48
";

const ALICE4: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 10);
const ALICE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0x1, 0, 0, 0, 7);
const BIZ4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const NET4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const NET6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);

fn count(packets: u64, bytes: u64) -> Count {
    Count { packets, bytes }
}

fn upload(s: &Snapshot, id: &str) -> Count {
    s.subscribers.iter().find(|t| t.id == id).unwrap().upload
}

fn download(s: &Snapshot, id: &str) -> Count {
    s.subscribers.iter().find(|t| t.id == id).unwrap().download
}

fn interface<'a>(s: &'a Snapshot, name: &str) -> &'a InterfaceTotals {
    s.interfaces
        .iter()
        .find(|i| i.attachment.name == name)
        .unwrap()
}

fn frames_on(i: &InterfaceTotals) -> u64 {
    i.attributed.packets
        + i.non_ip.packets
        + i.unknown.packets
        + i.malformed.packets
        + i.pppoe_discovery.packets
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn pppoe_frames_through_a_veth_count_the_inner_ip_bytes_to_the_subscriber() {
    let (r, s) = common::router_and_sender();
    veth(&r, "core", &s, "core-p");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &[("acc", "access", "auto"), ("core", "core", "generic")],
        TABLE,
    );
    let daemon = Daemon::start(&r, &config);
    let (acc, core) = (Injector::new(&s, "acc-p"), Injector::new(&s, "core-p"));
    let e = Ethernet::default();
    let vlan = Ethernet::default().tag(ETH_P_8021Q, 100);
    let qinq = Ethernet::default()
        .tag(ETH_P_8021AD, 300)
        .tag(ETH_P_8021Q, 100);

    // Sessions: alice over IPv4 untagged and IPv6 in a VLAN, bizco in QinQ.
    acc.send(&e.pppoe_ipv4_udp(ALICE4, NET4, 100), 10); // IP 128 each
    acc.send(&vlan.pppoe_ipv6_udp(ALICE6, NET6, 200), 5); // IP 248 each
    acc.send(&qinq.pppoe_ipv4_udp(BIZ4, NET4, 0), 3); // IP 28 each
    // Discovery, the session's LCP echoes, and session headers that lie.
    let padi = e.pppoe_discovery(PADI);
    let padt = vlan.pppoe_discovery(PADT);
    acc.send(&padi, 2);
    acc.send(&padt, 1);
    let lcp = e.pppoe(1, PPP_LCP, &[9, 1, 0, 8, 1, 2, 3, 4]);
    acc.send(&lcp, 4);
    let mut bad_version = e.pppoe_ipv4_udp(ALICE4, NET4, 0);
    bad_version[14] = 0x21;
    let mut long_length = e.pppoe_ipv4_udp(ALICE4, NET4, 0);
    long_length[18..20].copy_from_slice(&31u16.to_be_bytes()); // IP 28 + 2 would be 30
    long_length.push(0);
    let cut = e.pppoe_ipv6_udp(ALICE6, NET6, 10);
    let cut = &cut[..cut.len() - 1];
    acc.send(&bad_version, 2);
    acc.send(&long_length, 2);
    acc.send(cut, 1);
    // Download in a session: alice receives.
    core.send(&e.pppoe_ipv4_udp(NET4, ALICE4, 1000), 3); // IP 1028 each
    core.send(&qinq.pppoe_ipv6_udp(NET6, ALICE6, 0), 2); // IP 48 each

    let acc_frames = 10 + 5 + 3 + 3 + 4 + 5;
    let snap = daemon.wait_for("every PPPoE frame counted", |s| {
        frames_on(interface(s, "acc")) >= acc_frames && frames_on(interface(s, "core")) >= 5
    });
    assert_eq!(upload(&snap, "alice"), count(15, 10 * 128 + 5 * 248));
    assert_eq!(upload(&snap, "bizco"), count(3, 3 * 28));
    assert_eq!(download(&snap, "alice"), count(5, 3 * 1028 + 2 * 48));
    assert_eq!(download(&snap, "bizco"), count(0, 0));
    let a = interface(&snap, "acc");
    assert_eq!(a.attributed, count(18, 10 * 128 + 5 * 248 + 3 * 28));
    let discovery_bytes = 2 * padi.len() + padt.len();
    assert_eq!(a.pppoe_discovery, count(3, discovery_bytes as u64));
    assert_eq!(a.non_ip, count(4, 4 * lcp.len() as u64));
    let malformed_bytes = 2 * bad_version.len() + 2 * long_length.len() + cut.len();
    assert_eq!(a.malformed, count(5, malformed_bytes as u64));
    assert_eq!(a.unknown, count(0, 0));
    let c = interface(&snap, "core");
    assert_eq!(c.attributed, count(5, 3 * 1028 + 2 * 48));
    daemon.stop();
}

/// A PPPoE session's life as the wire carries it, crafted and replayed by `tcpreplay` (this
/// kernel has no PPP support, CONFIG_PPP, so pppd cannot run a real session): discovery,
/// LCP, PAP, IPCP and IPv6CP, data both ways in both families, echoes, and the end. Only the
/// data counts to the subscriber, by its IP bytes; the rest lands in its buckets.
#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_pppoe_session_replayed_by_tcpreplay_counts_its_data_to_the_subscriber() {
    const PADO: u8 = 0x07;
    const PADR: u8 = 0x19;
    const PADS: u8 = 0x65;
    const PAP: u16 = 0xc023;
    const IPCP: u16 = 0x8021;
    const IPV6CP: u16 = 0x8057;
    let (r, s) = common::router_and_sender();
    veth(&r, "core", &s, "core-p");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &[("acc", "access", "auto"), ("core", "core", "generic")],
        TABLE,
    );
    let daemon = Daemon::start(&r, &config);
    let e = Ethernet::default();
    let session = 0x0001;
    // LCP Configure-Request id 1 with MRU 1492, and its Ack; Echo-Request/Reply with a magic.
    let lcp_conf = [1, 1, 0, 8, 1, 4, 0x05, 0xd4];
    let lcp_ack = [2, 1, 0, 8, 1, 4, 0x05, 0xd4];
    let echo = [9, 2, 0, 8, 0x12, 0x34, 0x56, 0x78];
    let echo_reply = [10, 2, 0, 8, 0x9a, 0xbc, 0xde, 0xf0];
    // PAP Authenticate-Request for "alice"/"pw"; IPCP asking 0.0.0.0, the server's Nak and Ack.
    let pap = [1, 1, 0, 13, 5, b'a', b'l', b'i', b'c', b'e', 2, b'p', b'w'];
    let ipcp_req = [1, 1, 0, 10, 3, 6, 0, 0, 0, 0];
    let ipcp_nak = [3, 1, 0, 10, 3, 6, 100, 64, 1, 10];
    let ipv6cp = [1, 1, 0, 14, 1, 10, 0, 0, 0, 0, 0, 0, 0, 7];
    let mut up = vec![
        e.pppoe_discovery(PADI),
        e.pppoe_discovery(PADR),
        e.pppoe(session, PPP_LCP, &lcp_conf),
        e.pppoe(session, PPP_LCP, &lcp_ack),
        e.pppoe(session, PAP, &pap),
        e.pppoe(session, IPCP, &ipcp_req),
        e.pppoe(session, IPV6CP, &ipv6cp),
    ];
    up.extend((0..6).map(|_| e.pppoe_ipv4_udp(ALICE4, NET4, 100))); // IP 128 each
    up.extend((0..4).map(|_| e.pppoe_ipv6_udp(ALICE6, NET6, 200))); // IP 248 each
    up.extend((0..2).map(|_| e.pppoe(session, PPP_LCP, &echo)));
    up.push(e.pppoe_discovery(PADT));
    let mut down = vec![
        e.pppoe_discovery(PADO),
        e.pppoe_discovery(PADS),
        e.pppoe(session, PPP_LCP, &lcp_conf),
        e.pppoe(session, PPP_LCP, &lcp_ack),
        e.pppoe(session, IPCP, &ipcp_nak),
        e.pppoe(session, IPCP, &ipcp_req),
    ];
    down.extend((0..3).map(|_| e.pppoe_ipv4_udp(NET4, ALICE4, 1000))); // IP 1028 each
    down.extend((0..2).map(|_| e.pppoe_ipv6_udp(NET6, ALICE6, 0))); // IP 48 each
    down.extend((0..2).map(|_| e.pppoe(session, PPP_LCP, &echo_reply)));
    let (up_pcap, down_pcap) = (dir.path().join("up.pcap"), dir.path().join("down.pcap"));
    common::write_pcap(&up_pcap, &up);
    common::write_pcap(&down_pcap, &down);
    common::tcpreplay(&s, "acc-p", &up_pcap);
    common::tcpreplay(&s, "core-p", &down_pcap);

    let snap = daemon.wait_for("every replayed frame counted", |s| {
        frames_on(interface(s, "acc")) >= up.len() as u64
            && frames_on(interface(s, "core")) >= down.len() as u64
    });
    assert_eq!(upload(&snap, "alice"), count(10, 6 * 128 + 4 * 248));
    assert_eq!(download(&snap, "alice"), count(5, 3 * 1028 + 2 * 48));
    let bytes = |frames: &[Vec<u8>]| frames.iter().map(|f| f.len() as u64).sum::<u64>();
    let (a, c) = (interface(&snap, "acc"), interface(&snap, "core"));
    assert_eq!(a.attributed, count(10, 6 * 128 + 4 * 248));
    let discovery_up = [&up[0], &up[1], &up[up.len() - 1]].map(|f| f.to_vec());
    assert_eq!(a.pppoe_discovery, count(3, bytes(&discovery_up)));
    let control_up: Vec<Vec<u8>> = up[2..7].iter().chain(&up[17..19]).cloned().collect();
    assert_eq!(a.non_ip, count(7, bytes(&control_up)));
    assert_eq!(c.attributed, count(5, 3 * 1028 + 2 * 48));
    assert_eq!(c.pppoe_discovery, count(2, bytes(&down[..2])));
    let control_down: Vec<Vec<u8>> = down[2..6].iter().chain(&down[11..13]).cloned().collect();
    assert_eq!(c.non_ip, count(6, bytes(&control_down)));
    for i in [a, c] {
        assert_eq!((i.malformed, i.unknown), (count(0, 0), count(0, 0)));
    }
    daemon.stop();
}

/// Opens the tun device `name` in `ns` for writing packets into it (as received by the kernel).
fn open_tun(ns: &Netns, name: &str) -> File {
    let name = name.to_owned();
    ns.run(move || {
        let tun = File::options()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .unwrap();
        // SAFETY: ifreq is a C struct of integers and unions of integers: all zeroes is valid.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (to, from) in request.ifr_name.iter_mut().zip(name.as_bytes()) {
            *to = libc::c_char::from_ne_bytes([*from]);
        }
        request.ifr_ifru.ifru_flags = i16::try_from(libc::IFF_TUN | libc::IFF_NO_PI).unwrap();
        // SAFETY: TUNSETIFF reads the ifreq (a NUL-terminated name that fits, and flags) and
        // writes the name back inside it; the struct outlives the call.
        let rc = unsafe {
            libc::ioctl(
                tun.as_raw_fd(),
                libc::TUNSETIFF,
                &mut request as *mut libc::ifreq,
            )
        };
        assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        tun
    })
}

/// Creates tun device `name` in `ns`, up.
fn add_tun(ns: &Netns, name: &str) {
    ns.exec(&["ip", "tuntap", "add", "dev", name, "mode", "tun"]);
    ns.exec(&["ip", "link", "set", name, "up"]);
}

/// `quid check --config CONFIG` inside `ns`: (success, stdout and stderr).
fn check_in(ns: &Netns, config: &Path) -> (bool, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name))
        .arg(env!("CARGO_BIN_EXE_quid"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_tun_device_is_read_from_its_ip_header_at_check_run_and_when_created_again() {
    let r = Netns::new("tun");
    add_tun(&r, "tun0");
    let dir = tempfile::tempdir().unwrap();

    // Native XDP on a link without Ethernet is refused by check and run, naming the way out.
    let native = write_config(dir.path(), &[("tun0", "access", "native")], TABLE);
    let (ok, out) = check_in(&r, &native);
    assert!(!ok, "{out}");
    assert!(
        out.contains("`tun0`") && out.contains("no Ethernet header") && out.contains("\"auto\""),
        "{out}"
    );
    let (ok, err) = quid_run_refused(&r, &native, &[]);
    assert!(!ok, "{err}");
    assert!(err.contains("`tun0`") && err.contains("generic"), "{err}");
    assert!(!r.has_xdp("tun0"));

    let config = write_config(dir.path(), &[("tun0", "access", "auto")], TABLE);
    let (ok, out) = check_in(&r, &config);
    assert!(ok, "{out}");
    assert!(
        out.contains("tun0") && out.contains("no Ethernet header"),
        "{out}"
    );

    let daemon = Daemon::start(&r, &config);
    let snap = daemon.wait_for("tun0 attached", |s| !s.interfaces.is_empty());
    let t = interface(&snap, "tun0");
    assert_eq!(
        (t.attachment.framing, t.attachment.mode.as_str()),
        (Framing::Ip, "generic")
    );
    let mut tun = open_tun(&r, "tun0");
    let v4 = frames::ipv4_packet(ALICE4, NET4, 17, &[], &frames::udp(100));
    let v6 = frames::ipv6_packet(ALICE6, NET6, 17, &frames::udp(52));
    for _ in 0..6 {
        tun.write_all(&v4).unwrap();
    }
    for _ in 0..4 {
        tun.write_all(&v6).unwrap();
    }
    let snap = daemon.wait_for("10 packets on tun0", |s| {
        frames_on(interface(s, "tun0")) >= 10
    });
    assert_eq!(upload(&snap, "alice"), count(10, 6 * 128 + 4 * 100));
    let t = interface(&snap, "tun0");
    assert_eq!(t.attributed, count(10, 6 * 128 + 4 * 100));
    assert_eq!(frames_on(t), 10, "{t:?}");

    // Deleted and created again: the IP program goes back on the new device.
    drop(tun);
    r.exec(&["ip", "tuntap", "del", "dev", "tun0", "mode", "tun"]);
    daemon.wait_for_log("tun0 disappeared");
    add_tun(&r, "tun0");
    daemon.wait_for_log("tun0 is back");
    let mut tun = open_tun(&r, "tun0");
    for _ in 0..3 {
        tun.write_all(&v4).unwrap();
    }
    let snap = daemon.wait_for("3 more packets on tun0", |s| {
        upload(s, "alice").packets >= 13
    });
    assert_eq!(upload(&snap, "alice"), count(13, 9 * 128 + 4 * 100));
    let t = interface(&snap, "tun0");
    assert_eq!(t.attachment.framing, Framing::Ip);
    assert_eq!(t.attributed, count(3, 3 * 128));
    assert_eq!(frames_on(t), 3, "{t:?}");
    assert!(daemon.log().contains("generic mode, ip framing"));
    drop(tun);
    daemon.stop();
}
