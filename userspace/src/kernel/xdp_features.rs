//! Whether an interface can carry quid's XDP programs, asked without attaching anything (for
//! `quid check`): it exists, its link type is one quid reads (and which), and whether its
//! driver runs XDP natively, from the kernel's netdev generic netlink family (`xdp-features`,
//! Linux 6.3 and later).

use std::os::fd::{AsRawFd as _, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, socket,
};

use crate::kernel::link_type::{self, Framing, UnsupportedLink};

/// What `quid check` found out about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// The interface index.
    pub ifindex: u32,
    /// Whether the driver runs XDP itself (`native`); `None` when the kernel cannot say.
    pub native: Option<bool>,
    /// What its packets start with, which picks the program.
    pub framing: Framing,
}

/// Why an interface cannot carry quid's programs.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("interface `{0}` does not exist on this host (`ip -br link` lists them)")]
    Missing(String),
    #[error(transparent)]
    Link(#[from] UnsupportedLink),
}

/// Checks that `name` exists with a link type quid reads, and asks whether it runs XDP
/// natively.
pub fn probe(name: &str) -> Result<Capability, CapabilityError> {
    let ifindex = nix::net::if_::if_nametoindex(name)
        .map_err(|_| CapabilityError::Missing(name.to_owned()))?;
    let framing = link_type::of_interface(name)?;
    Ok(Capability {
        ifindex,
        native: native_xdp(ifindex).ok(),
        framing,
    })
}

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
/// `NETDEV_XDP_ACT_BASIC`: the driver runs XDP programs (XDP_PASS, XDP_DROP, XDP_ABORTED).
const NETDEV_XDP_ACT_BASIC: u64 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;

/// Whether the driver of `ifindex` runs XDP natively, from its `xdp-features`.
fn native_xdp(ifindex: u32) -> std::io::Result<bool> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkGeneric,
    )?;
    let family = request(
        &fd,
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        CTRL_ATTR_FAMILY_NAME,
        b"netdev\0",
    )?;
    let family = attribute(&family, CTRL_ATTR_FAMILY_ID)
        .and_then(|v| Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?)))
        .ok_or_else(|| invalid("no netdev family id"))?;
    let dev = request(
        &fd,
        family,
        NETDEV_CMD_DEV_GET,
        NETDEV_A_DEV_IFINDEX,
        &ifindex.to_ne_bytes(),
    )?;
    let features = attribute(&dev, NETDEV_A_DEV_XDP_FEATURES)
        .and_then(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
        .ok_or_else(|| invalid("no xdp-features"))?;
    Ok(features & NETDEV_XDP_ACT_BASIC != 0)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// One generic netlink request with one attribute: the attributes of the answer.
fn request(
    fd: &OwnedFd,
    family: u16,
    cmd: u8,
    attr: u16,
    value: &[u8],
) -> std::io::Result<Vec<u8>> {
    let too_long = || invalid("netlink message too long");
    let attr_len = u16::try_from(4 + value.len()).map_err(|_| too_long())?;
    let padded = (usize::from(attr_len) + 3) & !3;
    let len = u32::try_from(16 + 4 + padded).map_err(|_| too_long())?;
    let mut msg = Vec::with_capacity(16 + 4 + padded);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&family.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    msg.extend_from_slice(&[cmd, 1, 0, 0]); // genlmsghdr: cmd, version, reserved
    msg.extend_from_slice(&attr_len.to_ne_bytes());
    msg.extend_from_slice(&attr.to_ne_bytes());
    msg.extend_from_slice(value);
    msg.resize(16 + 4 + padded, 0);
    send(fd.as_raw_fd(), &msg, MsgFlags::empty())?;
    let mut buf = vec![0u8; 16384];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    let buf = buf.get(..n).ok_or_else(|| invalid("short answer"))?;
    let msg_type = buf
        .get(4..6)
        .and_then(|b| Some(u16::from_ne_bytes(b.try_into().ok()?)))
        .ok_or_else(|| invalid("short answer"))?;
    if msg_type == NLMSG_ERROR {
        let errno = buf
            .get(16..20)
            .and_then(|b| Some(i32::from_ne_bytes(b.try_into().ok()?)))
            .ok_or_else(|| invalid("short error"))?;
        return Err(std::io::Error::from_raw_os_error(errno.saturating_neg()));
    }
    Ok(buf.get(20..).unwrap_or_default().to_vec())
}

/// The value of attribute `kind` in a run of netlink attributes.
fn attribute(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes(attrs[..2].try_into().ok()?));
        let this = u16::from_ne_bytes(attrs[2..4].try_into().ok()?) & 0x3fff;
        let value = attrs.get(4..len)?;
        if this == kind {
            return Some(value);
        }
        attrs = attrs.get(((len + 3) & !3).min(attrs.len())..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_is_named() {
        let err = probe("qt-none0").unwrap_err().to_string();
        assert_eq!(
            err,
            "interface `qt-none0` does not exist on this host (`ip -br link` lists them)"
        );
    }

    #[test]
    fn loopback_can_carry_xdp_generic_only() {
        let lo = probe("lo").unwrap();
        assert_eq!(lo.ifindex, 1);
        // The loopback driver has no native XDP; kernels before 6.3 cannot say.
        assert_ne!(lo.native, Some(true));
    }

    #[test]
    fn attributes_are_found_past_padding() {
        let attrs = [5, 0, 2, 0, b'x', 0, 0, 0, 6, 0, 1, 0, 7, 0, 0, 0];
        assert_eq!(attribute(&attrs, 1), Some(&[7u8, 0][..]));
        assert_eq!(attribute(&attrs, 2), Some(&b"x"[..]));
        assert_eq!(attribute(&attrs, 3), None);
    }
}
