//! How an interface frames its packets (its ARPHRD_* link type, as `/sys/class/net/IF/type`
//! shows it): which of quid's programs can read it, or why none can. Asked with an ioctl, which
//! answers for the caller's network namespace (sysfs answers for the one it was mounted in).

use std::os::fd::AsRawFd as _;

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

/// Why quid cannot read an interface's packets.
#[derive(Debug, thiserror::Error)]
pub enum UnsupportedLink {
    #[error(
        "interface `{name}` has link type {link_type} ({}), which quid cannot read: quid's \
         programs read Ethernet frames (link types 1 and 772) and bare IP packets (tun, ppp, \
         WireGuard: 65534, 512, 519). Attach quid to the Ethernet interface that carries this \
         traffic instead",
        arphrd_name(*.link_type)
    )]
    Type { name: String, link_type: u32 },
    #[error("cannot read the link type of interface `{name}`: {source}")]
    Unreadable {
        name: String,
        source: std::io::Error,
    },
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
        _ => Err(UnsupportedLink::Type {
            name: name.to_owned(),
            link_type,
        }),
    }
}

/// The framing of interface `name` in this thread's network namespace.
pub fn of_interface(name: &str) -> Result<Framing, UnsupportedLink> {
    let link_type = link_type(name).map_err(|source| UnsupportedLink::Unreadable {
        name: name.to_owned(),
        source,
    })?;
    of_link_type(name, link_type)
}

/// The ARPHRD_* type of interface `name` (SIOCGIFHWADDR's address family).
fn link_type(name: &str) -> std::io::Result<u32> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not an interface name",
        ));
    }
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is a C struct of integers and unions of integers: all zeroes is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(bytes) {
        *to = libc::c_char::from_ne_bytes([*from]);
    }
    // SAFETY: SIOCGIFHWADDR reads the NUL-terminated name (checked above to fit with its NUL
    // in the zeroed array) and writes only inside the ifreq, which outlives the call.
    let rc = unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCGIFHWADDR,
            &mut request as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a successful SIOCGIFHWADDR filled the union's `ifru_hwaddr` member.
    Ok(u32::from(unsafe { request.ifr_ifru.ifru_hwaddr.sa_family }))
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
    fn the_loopback_interface_reads_as_ethernet_and_a_missing_one_is_named() {
        assert_eq!(of_interface("lo").unwrap(), Framing::Ethernet);
        let e = of_interface("no-such-if").unwrap_err().to_string();
        assert!(e.contains("`no-such-if`"), "{e}");
    }
}
