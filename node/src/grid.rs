//! Grid bytes counted on the node: the kernel's byte counters of the network interface the
//! grid workload is confined to (a veth into its network namespace, a VLAN, a WireGuard
//! tunnel), `/sys/class/net/<if>/statistics/{tx,rx}_bytes`, with the interface index as
//! identity. Why not a cgroup_skb program: it needs CAP_BPF and a BPF toolchain on every
//! device; an interface the workload cannot leave gives the same figure from a counter every
//! Linux kernel keeps, readable without privileges.

use std::path::Path;

use crate::counter::Raw;

/// Why an interface's counters could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {message} (is the grid interface up? check [grid] interface)")]
pub struct GridError {
    path: String,
    message: String,
}

fn read_u64(path: &Path) -> Result<u64, GridError> {
    let err = |message: String| GridError {
        path: path.display().to_string(),
        message,
    };
    std::fs::read_to_string(path)
        .map_err(|e| err(e.to_string()))?
        .trim()
        .parse()
        .map_err(|_| err("not an integer".to_owned()))
}

/// The bytes sent and received by `interface`, read under `sys_class_net`
/// (`/sys/class/net`).
pub fn read(sys_class_net: &Path, interface: &str) -> Result<(Raw, Raw), GridError> {
    let dir = sys_class_net.join(interface);
    let identity = read_u64(&dir.join("ifindex"))?;
    let sent = read_u64(&dir.join("statistics/tx_bytes"))?;
    let received = read_u64(&dir.join("statistics/rx_bytes"))?;
    Ok((
        Raw {
            value: sent,
            identity,
        },
        Raw {
            value: received,
            identity,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_counters_are_read_and_a_missing_interface_is_named() {
        let net = Path::new("/sys/class/net");
        let (sent, received) = read(net, "lo").unwrap();
        assert_eq!(sent.identity, 1);
        // Loopback receives what it sends.
        assert!(received.value > 0 || sent.value == 0);
        let err = read(net, "no-such-if0").unwrap_err().to_string();
        assert!(err.contains("[grid] interface"), "{err}");
    }
}
