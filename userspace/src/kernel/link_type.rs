//! How an interface frames its packets (its ARPHRD_* link type, `/sys/class/net/IF/type`):
//! which of quid's programs can read it, or why none can.

use serde::{Deserialize, Serialize};

/// What comes first in the packets an interface hands to XDP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// An Ethernet header (Ethernet, veth, bridges, bonds, VLANs, loopback).
    #[default]
    Ethernet,
    /// The IP header itself: tun, ppp and WireGuard devices have no link-layer header.
    Ip,
}

impl Framing {
    /// The name in logs and `quid check`.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Ethernet => "ethernet",
            Framing::Ip => "ip",
        }
    }
}

/// An interface whose link type quid has no program for.
#[derive(Debug, thiserror::Error)]
#[error(
    "interface `{name}` has link type {link_type} ({}), which quid cannot read: quid's programs \
     read Ethernet frames (link types 1 and 772) and bare IP packets (tun, ppp, WireGuard: \
     65534, 512, 519). Attach quid to the Ethernet interface that carries this traffic instead",
    arphrd_name(*.link_type)
)]
pub struct UnsupportedLink {
    pub name: String,
    pub link_type: u32,
}

const ARPHRD_ETHER: u32 = 1;
const ARPHRD_PPP: u32 = 512;
const ARPHRD_RAWIP: u32 = 519;
const ARPHRD_LOOPBACK: u32 = 772;
const ARPHRD_NONE: u32 = 65534;

/// The kernel's name of a link type, for messages.
fn arphrd_name(link_type: u32) -> &'static str {
    match link_type {
        ARPHRD_ETHER => "ARPHRD_ETHER",
        ARPHRD_PPP => "ARPHRD_PPP",
        ARPHRD_RAWIP => "ARPHRD_RAWIP",
        ARPHRD_LOOPBACK => "ARPHRD_LOOPBACK",
        ARPHRD_NONE => "ARPHRD_NONE",
        768 => "ARPHRD_TUNNEL, an IPIP tunnel",
        769 => "ARPHRD_TUNNEL6, an IPv6 tunnel",
        776 => "ARPHRD_SIT",
        778 => "ARPHRD_IPGRE, a GRE tunnel",
        823 => "ARPHRD_IP6GRE",
        32 => "ARPHRD_INFINIBAND",
        _ => "see include/uapi/linux/if_arp.h",
    }
}

/// The framing of link type `link_type` on interface `name`.
pub fn of_link_type(name: &str, link_type: u32) -> Result<Framing, UnsupportedLink> {
    match link_type {
        ARPHRD_ETHER | ARPHRD_LOOPBACK => Ok(Framing::Ethernet),
        ARPHRD_NONE | ARPHRD_PPP | ARPHRD_RAWIP => Ok(Framing::Ip),
        _ => Err(UnsupportedLink {
            name: name.to_owned(),
            link_type,
        }),
    }
}

/// The framing of interface `name`, from sysfs; Ethernet where sysfs cannot say (a container
/// without it), as every interface was before quid read link types.
pub fn of_interface(name: &str) -> Result<Framing, UnsupportedLink> {
    match std::fs::read_to_string(format!("/sys/class/net/{name}/type"))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    {
        Some(link_type) => of_link_type(name, link_type),
        None => Ok(Framing::Ethernet),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_and_bare_ip_links_are_read_and_tunnels_refused_by_name() {
        assert_eq!(of_link_type("eth0", 1).unwrap(), Framing::Ethernet);
        assert_eq!(of_link_type("lo", 772).unwrap(), Framing::Ethernet);
        assert_eq!(of_link_type("tun0", 65534).unwrap(), Framing::Ip);
        assert_eq!(of_link_type("ppp0", 512).unwrap(), Framing::Ip);
        assert_eq!(of_link_type("wwan0", 519).unwrap(), Framing::Ip);
        let e = of_link_type("gre1", 778).unwrap_err().to_string();
        assert!(
            e.contains("`gre1`") && e.contains("778") && e.contains("GRE"),
            "{e}"
        );
        assert!(e.contains("Attach quid to the Ethernet interface"), "{e}");
    }

    #[test]
    fn the_loopback_interface_reads_as_ethernet_from_sysfs() {
        assert_eq!(of_interface("lo").unwrap(), Framing::Ethernet);
        assert_eq!(
            of_interface("no-such-interface-here").unwrap(),
            Framing::Ethernet
        );
    }
}
