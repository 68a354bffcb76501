//! The XDP entry points the daemon attaches, one per interface role and link framing: the
//! `_ip` programs are for links without an Ethernet header (tun, ppp, WireGuard).
#![no_std]
#![no_main]

use aya_ebpf::{macros::xdp, programs::XdpContext};
use quid_common::{ROLE_ACCESS, ROLE_CORE};
use quid_ebpf::parse::Link;

/// Access interface (faces subscribers): the source is the subscriber, direction upload.
#[xdp]
pub fn quid_access(ctx: XdpContext) -> u32 {
    quid_ebpf::account::frame(&ctx, ROLE_ACCESS, Link::Ethernet)
}

/// Core interface (faces upstream): the destination is the subscriber, direction download.
#[xdp]
pub fn quid_core(ctx: XdpContext) -> u32 {
    quid_ebpf::account::frame(&ctx, ROLE_CORE, Link::Ethernet)
}

/// Router on a stick: both roles on one interface.
#[xdp]
pub fn quid_both(ctx: XdpContext) -> u32 {
    quid_ebpf::account::frame(&ctx, ROLE_ACCESS | ROLE_CORE, Link::Ethernet)
}

/// Access interface without Ethernet: the IP header comes first.
#[xdp]
pub fn quid_access_ip(ctx: XdpContext) -> u32 {
    quid_ebpf::account::frame(&ctx, ROLE_ACCESS, Link::Ip)
}

/// Core interface without Ethernet.
#[xdp]
pub fn quid_core_ip(ctx: XdpContext) -> u32 {
    quid_ebpf::account::frame(&ctx, ROLE_CORE, Link::Ip)
}

/// Both roles on an interface without Ethernet.
#[xdp]
pub fn quid_both_ip(ctx: XdpContext) -> u32 {
    quid_ebpf::account::frame(&ctx, ROLE_ACCESS | ROLE_CORE, Link::Ip)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
