//! Counting: one frame lands in exactly one per-interface bucket, and IP packets from or to
//! a subscriber also in that subscriber's (direction, class) counter.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_get_smp_processor_id, programs::XdpContext};
use aya_log_ebpf::debug;
use quid_common::{
    BUCKET_ATTRIBUTED, BUCKET_MALFORMED, BUCKET_NON_IP, BUCKET_PPPOE_DISCOVERY, BUCKET_UNKNOWN,
    DIR_DOWNLOAD, DIR_UPLOAD, MAX_IFINDEX, ROLE_ACCESS, ROLE_CORE, pair_index,
};

use crate::{
    lookup,
    maps::{ACTIVE_GEN, GRID, IFACE_COUNTERS, LOOKUP_PLAN, SLOT_CAPACITY, SUB_COUNTERS},
    parse::{self, Frame, Link},
};

/// Accounts one frame for an interface with the given `ROLE_*` bits, framed as `link`. Always
/// passes it on.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "ingress_ifindex() widens the kernel's u32 xdp_md field to usize: narrowing it back is exact"
)]
pub fn frame(ctx: &XdpContext, role: u32, link: Link) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    let ifindex = ctx.ingress_ifindex() as u32;
    // One read of the generation: the whole packet uses one table.
    let generation = match ACTIVE_GEN.get(0) {
        Some(g) => *g & 1,
        None => 0,
    };
    let Some(plan) = LOOKUP_PLAN.get(generation) else {
        return xdp_action::XDP_PASS;
    };
    let Some(grid) = GRID.get(0) else {
        return xdp_action::XDP_PASS;
    };
    match parse::frame(ctx, link) {
        Frame::NonIp => bucket(ifindex, BUCKET_NON_IP, frame_len),
        Frame::PppoeDiscovery => bucket(ifindex, BUCKET_PPPOE_DISCOVERY, frame_len),
        Frame::Malformed => {
            debug!(
                ctx,
                "malformed frame of {} bytes on ifindex {}", frame_len, ifindex
            );
            bucket(ifindex, BUCKET_MALFORMED, frame_len)
        }
        Frame::V4 { src, dst, ip_len } => {
            // Upload: the other endpoint is the destination; download: the source.
            let up = role & ROLE_ACCESS != 0 && {
                let slot = lookup::v4(plan, src);
                slot != lookup::NO_SLOT
                    && subscriber(slot, DIR_UPLOAD, lookup::v4_class(grid, dst), ip_len)
            };
            let down = role & ROLE_CORE != 0 && {
                let slot = lookup::v4(plan, dst);
                slot != lookup::NO_SLOT
                    && subscriber(slot, DIR_DOWNLOAD, lookup::v4_class(grid, src), ip_len)
            };
            ip_bucket(ifindex, up || down, ip_len)
        }
        Frame::V6 { src, dst, ip_len } => {
            let up = role & ROLE_ACCESS != 0 && {
                let slot = lookup::v6(plan, &src);
                slot != lookup::NO_SLOT
                    && subscriber(slot, DIR_UPLOAD, lookup::v6_class(grid, &dst), ip_len)
            };
            let down = role & ROLE_CORE != 0 && {
                let slot = lookup::v6(plan, &dst);
                slot != lookup::NO_SLOT
                    && subscriber(slot, DIR_DOWNLOAD, lookup::v6_class(grid, &src), ip_len)
            };
            ip_bucket(ifindex, up || down, ip_len)
        }
    }
    xdp_action::XDP_PASS
}

/// Adds one packet of `ip_len` bytes to a subscriber's (direction, class) counter.
#[inline(always)]
fn subscriber(slot: u32, direction: usize, class: usize, ip_len: u32) -> bool {
    let capacity = SLOT_CAPACITY.load();
    if slot >= capacity {
        // Cannot happen with a table the daemon installed; never spill into another region.
        return true;
    }
    // SAFETY: the helper takes no arguments and is always callable from an XDP program.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if let Some(counters) = SUB_COUNTERS.get_ptr_mut(cpu * capacity + slot) {
        // This CPU's own region: no other CPU writes it, so plain adds are exact.
        // SAFETY: `get_ptr_mut` returned a bounds-checked, aligned pointer to a live map value;
        // only this CPU writes its region and nothing else borrows it during this call, and
        // `pair_index` of a direction and `class & 1` is below DIR_CLASS_PAIRS.
        let pair = unsafe { &mut (*counters).pairs[pair_index(direction, class & 1)] };
        pair.packets += 1;
        pair.bytes += u64::from(ip_len);
    }
    true
}

#[inline(always)]
fn ip_bucket(ifindex: u32, attributed: bool, ip_len: u32) {
    let which = if attributed {
        BUCKET_ATTRIBUTED
    } else {
        BUCKET_UNKNOWN
    };
    bucket(ifindex, which, u64::from(ip_len));
}

#[inline(always)]
fn bucket(ifindex: u32, which: usize, bytes: u64) {
    // ifindex 0 is never a real interface: it collects the (refused at attach) overflow.
    let index = if ifindex < MAX_IFINDEX { ifindex } else { 0 };
    if let Some(counters) = IFACE_COUNTERS.get_ptr_mut(index) {
        // SAFETY: `get_ptr_mut` returned a bounds-checked, aligned pointer to this CPU's own
        // copy of a live per-CPU map value, not borrowed elsewhere during this call; `which`
        // is one of the BUCKET_* constants, below BUCKETS.
        let counter = unsafe { &mut (*counters).buckets[which] };
        counter.packets += 1;
        counter.bytes += bytes;
    }
}
