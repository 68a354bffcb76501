//! The XDP entry points the daemon attaches, one per interface role.
#![no_std]
#![no_main]

use aya_ebpf::{macros::xdp, programs::XdpContext};
use quid_common::{ROLE_ACCESS, ROLE_CORE};

/// Access interface (faces subscribers): the source is the subscriber, direction upload.
#[xdp]
pub fn quid_access(ctx: XdpContext) -> u32 {
    quid_ebpf::account::frame(&ctx, ROLE_ACCESS)
}

/// Core interface (faces upstream): the destination is the subscriber, direction download.
#[xdp]
pub fn quid_core(ctx: XdpContext) -> u32 {
    quid_ebpf::account::frame(&ctx, ROLE_CORE)
}

/// Router on a stick: both roles on one interface.
#[xdp]
pub fn quid_both(ctx: XdpContext) -> u32 {
    quid_ebpf::account::frame(&ctx, ROLE_ACCESS | ROLE_CORE)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
