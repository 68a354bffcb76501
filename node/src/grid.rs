//! Grid bytes counted on the node: the kernel's byte counters of the network interface the
//! grid workload is confined to (a veth into its network namespace, a VLAN, a WireGuard
//! tunnel), `/sys/class/net/<if>/statistics/{tx,rx}_bytes` less the link header of each of
//! `{tx,rx}_packets` (the router meters IP bytes), with the interface index as identity. Why not a cgroup_skb program: it needs CAP_BPF and a BPF toolchain on every
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

/// What each packet an interface counts carries before its IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// An Ethernet header, 14 bytes: veth, a physical port, a VLAN (`type` 1).
    Ethernet,
    /// Nothing: the packet is counted from its IP header (WireGuard, tun: `type` 65534, PPP
    /// 512; loopback, whose counters exclude the header it carries: `type` 772).
    Ip,
}

impl Link {
    /// The link of an interface whose `/sys/class/net/<if>/type` is `arphrd`.
    pub fn of(arphrd: u64) -> Link {
        match arphrd {
            1 => Link::Ethernet,
            _ => Link::Ip,
        }
    }

    /// The bytes before the IP header of each packet.
    pub fn header_bytes(self) -> u64 {
        match self {
            Link::Ethernet => 14,
            Link::Ip => 0,
        }
    }
}

/// The IP-layer bytes sent and received by `interface`, read under `sys_class_net`
/// (`/sys/class/net`): the kernel's byte counters less each packet's link header, so the
/// figure is the one the router meters (everything after the Ethernet header).
pub fn read(sys_class_net: &Path, interface: &str) -> Result<(Raw, Raw), GridError> {
    let dir = sys_class_net.join(interface);
    let identity = read_u64(&dir.join("ifindex"))?;
    let header = Link::of(read_u64(&dir.join("type"))?).header_bytes();
    let ip_bytes = |direction: &str| -> Result<u64, GridError> {
        let bytes = read_u64(&dir.join(format!("statistics/{direction}_bytes")))?;
        let packets = read_u64(&dir.join(format!("statistics/{direction}_packets")))?;
        // Every counted packet carried its header: both counters only grow, and so does this.
        Ok(bytes.saturating_sub(packets.saturating_mul(header)))
    };
    Ok((
        Raw {
            value: ip_bytes("tx")?,
            identity,
        },
        Raw {
            value: ip_bytes("rx")?,
            identity,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_and_loopback_lose_their_headers_tunnels_nothing() {
        assert_eq!(Link::of(1).header_bytes(), 14);
        assert_eq!(Link::of(772).header_bytes(), 0);
        assert_eq!(Link::of(65534).header_bytes(), 0);
        assert_eq!(Link::of(512), Link::Ip);
    }

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
