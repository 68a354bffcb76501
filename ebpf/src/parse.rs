//! Frame parsing: Ethernet, up to two VLAN tags (802.1Q, 802.1ad), PPPoE sessions, IPv4 and
//! IPv6; or, on links without Ethernet (tun, ppp, WireGuard), the IP packet alone.
//!
//! Every read goes through [`at`], which bounds-checks against `data_end` itself, so each
//! access carries the check the verifier needs.

use aya_ebpf::programs::XdpContext;
use quid_common::{
    ETH_P_PPPOE_DISCOVERY, ETH_P_PPPOE_SESSION, PPP_IPV4, PPP_IPV6, PPP_PROTO_LEN,
    PPPOE_CODE_SESSION, PPPOE_HLEN, PPPOE_VER_TYPE,
};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: u16 = 40;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
/// Pre-standard QinQ outer tag, still sent by older switches.
const ETH_P_QINQ_LEGACY: u16 = 0x9100;

/// What a frame turned out to be.
pub enum Frame {
    /// Not IP after at most two VLAN tags, or a PPPoE session frame carrying something other
    /// than IP (LCP, IPCP, authentication: the session's control traffic).
    NonIp,
    /// A PPPoE discovery frame.
    PppoeDiscovery,
    /// Too short or inconsistent to parse.
    Malformed,
    /// IPv4: addresses as loaded from the packet (network order in a native u32).
    V4 { src: u32, dst: u32, ip_len: u32 },
    /// IPv6: addresses as four network-order words.
    V6 {
        src: [u32; 4],
        dst: [u32; 4],
        ip_len: u32,
    },
}

/// How a link frames its packets, which says where the IP header starts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// An Ethernet header (and maybe VLAN tags and PPPoE) comes first.
    Ethernet,
    /// The IP header is the first byte (tun, ppp, WireGuard: no link-layer header).
    Ip,
}

/// A pointer to a `T` at `offset` bytes into the frame, or `None` if it would run past the end.
#[inline(always)]
pub fn at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// A mutable pointer to a `T` at `offset`, bounds-checked like [`at`] (benchmarks only).
#[inline(always)]
pub fn at_mut<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    at::<T>(ctx, offset).map(|p| p as *mut T)
}

#[repr(C)]
struct Ipv4Hdr {
    version_ihl: u8,
    tos: u8,
    total_len: u16,
    id: u16,
    frag: u16,
    ttl: u8,
    proto: u8,
    check: u16,
    src: u32,
    dst: u32,
}

/// A PPPoE session header and the PPP protocol field after it.
#[repr(C)]
struct PppoeHdr {
    ver_type: u8,
    code: u8,
    _session: u16,
    /// Bytes after this header: the PPP protocol field and the packet.
    length: u16,
    protocol: u16,
}

#[repr(C)]
struct Ipv6Hdr {
    version_class_flow: u32,
    payload_len: u16,
    next_header: u8,
    hop_limit: u8,
    src: [u32; 4],
    dst: [u32; 4],
}

/// The EtherType and the offset of the layer-3 header, after at most two VLAN tags.
/// `None` when a tag is cut short.
#[inline(always)]
pub fn l3(ctx: &XdpContext) -> Option<(u16, usize)> {
    // SAFETY: `at` checked that the u16 lies inside [data, data_end), which
    // stays readable for the whole program run; BPF packet loads have no alignment trap.
    let mut proto = u16::from_be(unsafe { *at::<u16>(ctx, 12)? });
    let mut offset = ETH_HLEN;
    // Unrolled by hand: two tags at most (QinQ); a third leaves `proto` a VLAN type -> NonIp.
    if is_vlan(proto) {
        // SAFETY: as above, `at` bounds-checked the read.
        proto = u16::from_be(unsafe { *at::<u16>(ctx, offset + 2)? });
        offset += VLAN_HLEN;
        if is_vlan(proto) {
            // SAFETY: as above, `at` bounds-checked the read.
            proto = u16::from_be(unsafe { *at::<u16>(ctx, offset + 2)? });
            offset += VLAN_HLEN;
        }
    }
    Some((proto, offset))
}

#[inline(always)]
fn is_vlan(proto: u16) -> bool {
    proto == ETH_P_8021Q || proto == ETH_P_8021AD || proto == ETH_P_QINQ_LEGACY
}

/// Classifies a frame of a link framed as `link` and extracts what accounting needs.
#[inline(always)]
pub fn frame(ctx: &XdpContext, link: Link) -> Frame {
    if link == Link::Ip {
        return ip_only(ctx);
    }
    let Some((proto, offset)) = l3(ctx) else {
        return Frame::Malformed;
    };
    let available = ctx.data_end() - ctx.data() - offset;
    match proto {
        // Ethernet pads short frames: the IP packet may end before the frame does.
        ETH_P_IP => ipv4(ctx, offset, available, 0),
        ETH_P_IPV6 => ipv6(ctx, offset, available, 0),
        ETH_P_PPPOE_SESSION => pppoe(ctx, offset, available),
        ETH_P_PPPOE_DISCOVERY => Frame::PppoeDiscovery,
        _ => Frame::NonIp,
    }
}

/// A PPPoE session frame at `offset`: the IP packet inside it, which must fill the PPPoE
/// payload exactly (its length field is what the concentrator forwards; a frame whose length
/// field and IP header disagree is not counted to anyone).
#[inline(always)]
fn pppoe(ctx: &XdpContext, offset: usize, available: usize) -> Frame {
    let Some(hdr) = at::<PppoeHdr>(ctx, offset) else {
        return Frame::Malformed;
    };
    // SAFETY: `at` checked that the whole header lies inside the packet (as in `ipv4`).
    let hdr = unsafe { &*hdr };
    let length = usize::from(u16::from_be(hdr.length));
    if hdr.ver_type != PPPOE_VER_TYPE
        || hdr.code != PPPOE_CODE_SESSION
        || length < PPP_PROTO_LEN
        || PPPOE_HLEN + length > available
    {
        return Frame::Malformed;
    }
    let ip = offset + PPPOE_HLEN + PPP_PROTO_LEN;
    let ip_len = length - PPP_PROTO_LEN;
    match u16::from_be(hdr.protocol) {
        PPP_IPV4 => ipv4(ctx, ip, ip_len, ip_len),
        PPP_IPV6 => ipv6(ctx, ip, ip_len, ip_len),
        // The session's own control protocols (LCP, IPCP, IPV6CP, PAP, CHAP...).
        _ => Frame::NonIp,
    }
}

/// A link without Ethernet: the IP version nibble says which header starts the packet.
#[inline(always)]
fn ip_only(ctx: &XdpContext) -> Frame {
    // Four bytes, not one: a check of `data + 1` against `data_end` compiles to `data <
    // data_end`, which the verifier does not take as a bound. Every IP header is longer.
    let Some(first) = at::<[u8; 4]>(ctx, 0) else {
        return Frame::Malformed;
    };
    let available = ctx.data_end() - ctx.data();
    // SAFETY: `at` bounds-checked the bytes.
    match unsafe { (*first)[0] } >> 4 {
        4 => ipv4(ctx, 0, available, 0),
        6 => ipv6(ctx, 0, available, 0),
        _ => Frame::Malformed,
    }
}

/// The IPv4 packet at `offset`, whose total length must lie in `least ..= available`.
#[inline(always)]
fn ipv4(ctx: &XdpContext, offset: usize, available: usize, least: usize) -> Frame {
    let Some(hdr) = at::<Ipv4Hdr>(ctx, offset) else {
        return Frame::Malformed;
    };
    // SAFETY: `at` checked that the whole header lies inside the packet, readable for the
    // program run and never written by it; fields are only read by value (BPF packet loads
    // have no alignment trap).
    let hdr = unsafe { &*hdr };
    let header_len = usize::from(hdr.version_ihl & 0x0f) * 4;
    let total_len = u16::from_be(hdr.total_len);
    // Version must be 4, the header at least 20 bytes and inside the total length, and the
    // total length inside the frame (a frame may be longer: Ethernet pads short packets) and
    // at least `least` (inside PPPoE, exactly the payload the PPPoE header announced).
    if hdr.version_ihl >> 4 != 4
        || header_len < IPV4_MIN_HLEN
        || usize::from(total_len) < header_len
        || usize::from(total_len) > available
        || usize::from(total_len) < least
    {
        return Frame::Malformed;
    }
    Frame::V4 {
        src: hdr.src,
        dst: hdr.dst,
        ip_len: u32::from(total_len),
    }
}

/// The IPv6 packet at `offset`, whose length (payload + 40) must lie in `least ..= available`.
#[inline(always)]
fn ipv6(ctx: &XdpContext, offset: usize, available: usize, least: usize) -> Frame {
    let Some(hdr) = at::<Ipv6Hdr>(ctx, offset) else {
        return Frame::Malformed;
    };
    // SAFETY: as in `ipv4`, `at` checked that the whole header lies inside the packet.
    let hdr = unsafe { &*hdr };
    let payload_len = u16::from_be(hdr.payload_len);
    let ip_len = usize::from(payload_len) + usize::from(IPV6_HLEN);
    if (u32::from_be(hdr.version_class_flow) >> 28) != 6 || ip_len > available || ip_len < least {
        return Frame::Malformed;
    }
    Frame::V6 {
        src: hdr.src,
        dst: hdr.dst,
        ip_len: u32::from(payload_len) + u32::from(IPV6_HLEN),
    }
}
