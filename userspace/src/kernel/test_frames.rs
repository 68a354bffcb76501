//! Building Ethernet frames (plain, VLAN-tagged, PPPoE) byte by byte, for tests that inject them (AF_PACKET or
//! BPF_PROG_TEST_RUN) and for the benchmark. Lengths are exact, so tests can assert exact
//! byte counts. A length beyond its 16-bit header field (the frames built here stay far below)
//! saturates there: the frame is then visibly inconsistent rather than silently wrapped.

use std::net::{Ipv4Addr, Ipv6Addr};

pub use quid_common::{
    ETH_P_PPPOE_DISCOVERY, ETH_P_PPPOE_SESSION, PPP_IPCP, PPP_IPV4, PPP_IPV6, PPP_LCP,
};
use quid_common::{PPPOE_CODE_SESSION, PPPOE_VER_TYPE};

/// EtherType IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// EtherType ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// 802.1Q customer tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// 802.1ad service tag (QinQ outer).
pub const ETH_P_8021AD: u16 = 0x88A8;

const UDP: u8 = 17;

/// Ethernet header with optional VLAN tags; the layer-3 payload is appended by the methods.
#[derive(Debug, Clone)]
pub struct Ethernet {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// (TPID, VLAN id), outermost first.
    pub tags: Vec<(u16, u16)>,
}

impl Default for Ethernet {
    fn default() -> Self {
        // Locally administered unicast addresses.
        Ethernet {
            dst: [0x02, 0, 0, 0, 0, 0x02],
            src: [0x02, 0, 0, 0, 0, 0x01],
            tags: Vec::new(),
        }
    }
}

impl Ethernet {
    /// Adds a VLAN tag inside the ones already there.
    pub fn tag(mut self, tpid: u16, vid: u16) -> Self {
        self.tags.push((tpid, vid));
        self
    }

    /// The frame with `ethertype` and `payload` after the header and tags.
    pub fn frame(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(14 + 4 * self.tags.len() + payload.len());
        f.extend_from_slice(&self.dst);
        f.extend_from_slice(&self.src);
        for &(tpid, vid) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An IPv4 UDP frame with `payload_len` zero bytes: IP length is 28 + `payload_len`.
    pub fn ipv4_udp(&self, src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) -> Vec<u8> {
        self.frame(
            ETH_P_IP,
            &ipv4_packet(src, dst, UDP, &[], &udp(payload_len)),
        )
    }

    /// An IPv6 UDP frame with `payload_len` zero bytes: IP length is 48 + `payload_len`.
    pub fn ipv6_udp(&self, src: Ipv6Addr, dst: Ipv6Addr, payload_len: usize) -> Vec<u8> {
        self.frame(ETH_P_IPV6, &ipv6_packet(src, dst, UDP, &udp(payload_len)))
    }
}

/// PPPoE discovery code: PPPoE Active Discovery Initiation (a client looking for a server).
pub const PADI: u8 = 0x09;
/// PPPoE discovery code: PPPoE Active Discovery Terminate (a session ends).
pub const PADT: u8 = 0xa7;

impl Ethernet {
    /// A PPPoE session frame of session `session` carrying `payload` as PPP protocol
    /// `protocol`; the PPPoE length field is the payload's length plus 2, as RFC 2516 says.
    pub fn pppoe(&self, session: u16, protocol: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(8 + payload.len());
        p.push(PPPOE_VER_TYPE);
        p.push(PPPOE_CODE_SESSION);
        p.extend_from_slice(&session.to_be_bytes());
        p.extend_from_slice(&len16(2 + payload.len()).to_be_bytes());
        p.extend_from_slice(&protocol.to_be_bytes());
        p.extend_from_slice(payload);
        self.frame(ETH_P_PPPOE_SESSION, &p)
    }

    /// A PPPoE session frame with an IPv4 UDP packet of 28 + `payload_len` bytes.
    pub fn pppoe_ipv4_udp(&self, src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) -> Vec<u8> {
        let ip = ipv4_packet(src, dst, UDP, &[], &udp(payload_len));
        self.pppoe(0x0001, PPP_IPV4, &ip)
    }

    /// A PPPoE session frame with an IPv6 UDP packet of 48 + `payload_len` bytes.
    pub fn pppoe_ipv6_udp(&self, src: Ipv6Addr, dst: Ipv6Addr, payload_len: usize) -> Vec<u8> {
        let ip = ipv6_packet(src, dst, UDP, &udp(payload_len));
        self.pppoe(0x0001, PPP_IPV6, &ip)
    }

    /// A PPPoE discovery frame with `code` (PADI, PADT, ...) and a Service-Name tag.
    pub fn pppoe_discovery(&self, code: u8) -> Vec<u8> {
        // Tag 0x0101 Service-Name, empty: any service.
        let tags = [0x01, 0x01, 0x00, 0x00];
        let mut p = vec![PPPOE_VER_TYPE, code, 0, 0];
        p.extend_from_slice(&len16(tags.len()).to_be_bytes());
        p.extend_from_slice(&tags);
        self.frame(ETH_P_PPPOE_DISCOVERY, &p)
    }
}

/// A UDP header (checksum 0, "none") and `payload_len` zero bytes.
pub fn udp(payload_len: usize) -> Vec<u8> {
    let len = len16(8 + payload_len);
    let mut u = Vec::with_capacity(8 + payload_len);
    u.extend_from_slice(&40000u16.to_be_bytes());
    u.extend_from_slice(&9u16.to_be_bytes()); // discard
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.resize(8 + payload_len, 0);
    u
}

/// An IPv4 packet: header (with `options`, a multiple of 4 bytes) plus `body`, checksummed.
pub fn ipv4_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    options: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total = len16(header_len + body.len());
    let mut h = Vec::with_capacity(header_len + body.len());
    // The IHL field counts 4-byte words in 4 bits.
    h.push(0x40 | u8::try_from((header_len / 4).min(0x0f)).unwrap_or(0x0f));
    h.push(0);
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0]); // id, don't fragment
    h.push(64);
    h.push(proto);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(options);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(body);
    h
}

/// An IPv6 packet whose first next-header is `next` and whose payload is `body`.
pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, next: u8, body: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(40 + body.len());
    h.extend_from_slice(&0x6000_0000u32.to_be_bytes());
    h.extend_from_slice(&len16(body.len()).to_be_bytes());
    h.push(next);
    h.push(64);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(body);
    h
}

/// The Internet checksum (RFC 1071).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Folded to 16 bits: the low two bytes are the whole sum.
    let [_, _, hi, lo] = sum.to_be_bytes();
    !u16::from_be_bytes([hi, lo])
}

/// `n` for a 16-bit length field, saturated (see the module docs).
fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_exact() {
        let e = Ethernet::default();
        assert_eq!(
            e.ipv4_udp(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 100)
                .len(),
            14 + 128
        );
        let q = Ethernet::default()
            .tag(ETH_P_8021AD, 10)
            .tag(ETH_P_8021Q, 20);
        assert_eq!(
            q.ipv6_udp(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 0)
                .len(),
            22 + 48
        );
    }

    #[test]
    fn pppoe_frames_carry_the_ip_packet_after_eight_bytes() {
        let f = Ethernet::default().tag(ETH_P_8021Q, 7).pppoe_ipv4_udp(
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::LOCALHOST,
            10,
        );
        assert_eq!(f.len(), 18 + 8 + 38);
        assert_eq!(f[16..18], ETH_P_PPPOE_SESSION.to_be_bytes());
        // Version/type, code, session 1, length 2 + 38, protocol IPv4.
        assert_eq!(f[18..26], [0x11, 0, 0, 1, 0, 40, 0, 0x21]);
        assert_eq!(f[26], 0x45);
        let d = Ethernet::default().pppoe_discovery(PADI);
        assert_eq!(d[12..20], [0x88, 0x63, 0x11, 0x09, 0, 0, 0, 4]);
    }

    #[test]
    fn the_ipv4_checksum_verifies() {
        let p = ipv4_packet(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(198, 51, 100, 1),
            UDP,
            &[],
            &[],
        );
        assert_eq!(checksum(&p[..20]), 0);
    }
}
