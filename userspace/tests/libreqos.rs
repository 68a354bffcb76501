//! The daemon on a LibreQoS `ShapedDevices.csv` (`[subscribers] format = "libreqos"`): the
//! devices of a circuit count to it exactly, an edit of the file moves a device to another
//! circuit live, and a file with bad rows is refused whole while the running table counts on.
//! Needs root.

#![cfg(test)]

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::{Daemon, Injector, pin_dir, write_config_with};
use quid::{
    kernel::test_frames::Ethernet,
    metering::snapshot::{Count, Snapshot},
};

const HEADER: &str = "Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,MAC,IPv4,IPv6,\
                      Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment,sqm";
const DST4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);

/// A ShapedDevices.csv: circuit 100 with two devices (one with two IPv4 addresses and an IPv6
/// prefix), circuit 200 with one; `device2_circuit` says whose the second device is.
fn shaped(device2_circuit: &str, c100_down: &str) -> String {
    let name2 = if device2_circuit == "100" {
        "\"Farm, north\""
    } else {
        "Shop"
    };
    let (dmin, umax) = if device2_circuit == "100" {
        (c100_down, "20")
    } else {
        ("50", "10")
    };
    format!(
        "# exported by the billing integration\n{HEADER}\n\
         100,\"Farm, north\",d1,Barn AP,AP_A,,\"100.64.8.1, 100.64.8.11\",\"2001:db8:8::/56\",1,1,{c100_down},20,,\n\
         200,Shop,d3,Shop CPE,AP_B,,100.64.8.3,,1,1,50,10,,cake\n\
         {device2_circuit},{name2},d2,House CPE,AP_A,,100.64.8.2,,1,1,{dmin},{umax},,\n"
    )
}

fn upload(s: &Snapshot, id: &str) -> (Count, String) {
    let t = s.subscribers.iter().find(|t| t.id == id).unwrap();
    (t.upload, t.plan.clone())
}

fn count(packets: u64, ip_len: u64) -> Count {
    Count {
        packets,
        bytes: packets * ip_len,
    }
}

#[test]
#[ignore = "needs root (network namespaces, BPF): cargo xtask test runs it"]
fn a_libreqos_table_counts_each_circuit_exactly_and_reloads_live() {
    let (r, s) = common::router_and_sender();
    let pins = pin_dir();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with(
        dir.path(),
        &[("acc", "access", "auto")],
        "",
        &format!("pin_dir = \"{}\"\non_stop = \"detach\"\n", pins.0.display()),
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "file = \"subscribers.csv\"",
        "file = \"ShapedDevices.csv\"\nformat = \"libreqos\"",
    );
    std::fs::write(&config, text).unwrap();
    let csv = dir.path().join("ShapedDevices.csv");
    let state = dir.path().join("state");
    std::fs::write(&csv, shaped("100", "100")).unwrap();
    let daemon = Daemon::start(&r, &config);
    let inj = Injector::new(&s, "acc-p");
    let eth = Ethernet::default();
    let from = |a: [u8; 4]| eth.ipv4_udp(Ipv4Addr::from(a), DST4, 100);

    // Both devices of circuit 100, all three of its addresses, count to it; 200's to 200.
    inj.send(&from([100, 64, 8, 1]), 10);
    inj.send(&from([100, 64, 8, 11]), 5);
    inj.send(&from([100, 64, 8, 2]), 7);
    let v6 = Ipv6Addr::new(0x2001, 0xdb8, 8, 0xff, 0, 0, 0, 9);
    inj.send(&eth.ipv6_udp(v6, DST6, 100), 4);
    inj.send(&from([100, 64, 8, 3]), 3);
    let snap = daemon.wait_for("the first frames counted", |s| {
        s.subscribers.iter().map(|t| t.upload.packets).sum::<u64>() >= 29
    });
    // IPv4: 20 + 8 + 100 bytes; IPv6: 40 + 8 + 100.
    let c100 = Count {
        packets: 26,
        bytes: 22 * 128 + 4 * 148,
    };
    assert_eq!(upload(&snap, "100"), (c100, "100M-20M".to_string()));
    assert_eq!(upload(&snap, "200"), (count(3, 128), "50M-10M".to_string()));

    // The billing system moves the second device to circuit 200 and raises 100's rate.
    std::fs::write(&csv, shaped("200", "250")).unwrap();
    let moved = common::wait_reload(&state, 0);
    assert!(moved.ok, "{moved:?}");
    assert_eq!(moved.change.changed.len(), 2, "{moved:?}");
    inj.send(&from([100, 64, 8, 2]), 6);
    inj.send(&from([100, 64, 8, 1]), 2);
    let snap = daemon.wait_for("the moved device counted to 200", |s| {
        upload(s, "200").0.packets >= 9 && upload(s, "100").0.packets >= 28
    });
    let c100 = Count {
        packets: 28,
        bytes: 24 * 128 + 4 * 148,
    };
    assert_eq!(upload(&snap, "100"), (c100, "250M-20M".to_string()));
    assert_eq!(upload(&snap, "200"), (count(9, 128), "50M-10M".to_string()));

    // A file with bad rows is refused whole, each named by line and column; the running
    // table goes on counting.
    let seq = moved.seq;
    let bad = format!(
        "{HEADER}\n\
         100,Farm,d1,Barn AP,AP_A,,100.64.8.1, 100.64.8.11,,1,1,100,20,,\n\
         200,Shop,d3,Shop CPE,AP_B,,100.64.8.5/30,,1,1,50,10,,cake\n\
         300,New,d4,New CPE,AP_B,,100.64.8.2,,1,1,fast,10,,\n"
    );
    std::fs::write(&csv, bad).unwrap();
    let refused = common::wait_reload(&state, seq);
    assert!(!refused.ok);
    let file = csv.display();
    assert_eq!(
        refused.errors,
        [
            format!(
                "{file}:2: row: expected 14 fields as the header has, found 15; a cell holding \
                 a comma (several addresses, a comment) must be quoted"
            ),
            format!(
                "{file}:3: IPv4: `100.64.8.5/30` has host bits set; did you mean 100.64.8.4/30?"
            ),
            format!(
                "{file}:4: Download Max Mbps: `fast` is not a rate in Mbps (a number such as \
                 100 or 2.5)"
            ),
        ]
    );
    inj.send(&from([100, 64, 8, 2]), 1);
    let snap = daemon.wait_for("the running table still counts", |s| {
        upload(s, "200").0.packets >= 10
    });
    assert_eq!(upload(&snap, "200").0, count(10, 128));
    assert_eq!(upload(&snap, "100").0, c100);
    daemon.stop();
}
