//! Frame parsing: Ethernet, up to two VLAN tags (802.1Q, 802.1ad), IPv4 and IPv6.
//!
//! Every read goes through [`at`], which bounds-checks against `data_end` itself, so each
//! access carries the check the verifier needs.

use aya_ebpf::programs::XdpContext;

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
    /// Not IP after at most two VLAN tags.
    NonIp,
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

/// Classifies a frame and extracts what accounting needs.
#[inline(always)]
pub fn frame(ctx: &XdpContext) -> Frame {
    let Some((proto, offset)) = l3(ctx) else {
        return Frame::Malformed;
    };
    let available = ctx.data_end() - ctx.data() - offset;
    match proto {
        ETH_P_IP => ipv4(ctx, offset, available),
        ETH_P_IPV6 => ipv6(ctx, offset, available),
        _ => Frame::NonIp,
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, offset: usize, available: usize) -> Frame {
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
    // total length inside the frame (a frame may be longer: Ethernet pads short packets).
    if hdr.version_ihl >> 4 != 4
        || header_len < IPV4_MIN_HLEN
        || usize::from(total_len) < header_len
        || usize::from(total_len) > available
    {
        return Frame::Malformed;
    }
    Frame::V4 {
        src: hdr.src,
        dst: hdr.dst,
        ip_len: u32::from(total_len),
    }
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, offset: usize, available: usize) -> Frame {
    let Some(hdr) = at::<Ipv6Hdr>(ctx, offset) else {
        return Frame::Malformed;
    };
    // SAFETY: as in `ipv4`, `at` checked that the whole header lies inside the packet.
    let hdr = unsafe { &*hdr };
    let payload_len = u16::from_be(hdr.payload_len);
    let ip_len = usize::from(payload_len) + usize::from(IPV6_HLEN);
    if (u32::from_be(hdr.version_class_flow) >> 28) != 6 || ip_len > available {
        return Frame::Malformed;
    }
    Frame::V6 {
        src: hdr.src,
        dst: hdr.dst,
        ip_len: u32::from(payload_len) + u32::from(IPV6_HLEN),
    }
}
