//! Benchmark programs for `cargo xtask bench`: the floor (`pass`), the ideal (`one_hash`), the
//! common design (`trie`) and quid's own accounting, each also in a `_spread` variant that
//! first rewrites the frame's source address to a random table entry, and a `_zipf` variant
//! that rewrites it to the next of a list of Zipf-drawn entries. BPF_PROG_TEST_RUN reuses
//! the frame between repetitions, so every run looks up another subscriber.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_get_prandom_u32,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use quid_common::{BENCH_ZIPF_SAMPLES, BenchSpread, Counter, ROLE_ACCESS, v6_mask};
use quid_ebpf::parse::{self, Frame, Link};

/// IPv4 /32 -> slot, the one exact-match lookup of the ideal design.
#[map]
static BENCH_HASH_V4: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);
/// IPv6 /56 (masked address words) -> slot.
#[map]
static BENCH_HASH_V6: HashMap<[u32; 4], u32> = HashMap::with_max_entries(1024, 0);
/// IPv4 prefix -> slot, the single-trie design.
#[map]
static BENCH_TRIE_V4: LpmTrie<u32, u32> = LpmTrie::with_max_entries(1024, 0);
/// IPv6 prefix -> slot.
#[map]
static BENCH_TRIE_V6: LpmTrie<[u32; 4], u32> = LpmTrie::with_max_entries(1024, 0);
/// Per-CPU counters by slot for the baseline designs.
#[map]
static BENCH_COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(1024, 0);
/// How many entries the spreading variants step over.
#[map]
static BENCH_SPREAD: Array<BenchSpread> = Array::with_max_entries(1, 0);
/// Table entries drawn from a Zipf distribution, filled by the benchmark before the runs.
#[map]
static BENCH_ZIPF: Array<u32> = Array::with_max_entries(BENCH_ZIPF_SAMPLES, 0);
/// Each CPU's position in BENCH_ZIPF. Reading the draws in turn rather than at a random index
/// keeps the draw itself a prefetched sequential read, so the cache misses measured are the
/// lookups' own.
#[map]
static BENCH_ZIPF_CURSOR: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// First IPv4 subscriber address of the benchmark table: 100.64.0.0, entry i is 100.64.0.0 + i.
const V4_BASE: u32 = 0x6440_0000;
const V6_56: [u32; 4] = v6_mask(56);

/// Rewrites the source address to table entry `i` where the harness said it lies (see
/// `BenchSpread`): IPv4 100.64.0.0 + i, IPv6 2001:db8:iiii:ii00::/56. No header is parsed
/// here, so the programs measured are the only ones to read the headers.
#[inline(always)]
fn rewrite(ctx: &XdpContext, cfg: &BenchSpread, i: u32) {
    // Masked so the verifier sees a bounded offset; every frame measured puts it below 64.
    let Some(word) = parse::at_mut::<u32>(ctx, (cfg.src_offset & 0x3f) as usize) else {
        return;
    };
    let value = if cfg.ipv6 == 0 { V4_BASE + i } else { i << 8 };
    // SAFETY: `at_mut` checked that the word lies inside the frame, which XDP may rewrite
    // (here BPF_PROG_TEST_RUN's own copy); no reference to it is held.
    unsafe { *word = value.to_be() };
}

/// Rewrites the source address to a uniformly random table entry.
#[inline(always)]
fn spread(ctx: &XdpContext) {
    let Some(cfg) = BENCH_SPREAD.get(0) else {
        return;
    };
    if cfg.entries == 0 {
        return;
    }
    // SAFETY: the helper takes no arguments and is always callable from an XDP program.
    let i = unsafe { bpf_get_prandom_u32() } % cfg.entries;
    rewrite(ctx, cfg, i);
}

/// Rewrites the source address to the next Zipf-drawn table entry of this CPU.
#[inline(always)]
fn zipf(ctx: &XdpContext) {
    let Some(cursor) = BENCH_ZIPF_CURSOR.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `get_ptr_mut` returned a bounds-checked pointer to this CPU's own copy of a live
    // per-CPU map value; XDP programs do not nest on a CPU, so nothing else writes it now.
    let at = unsafe {
        let at = *cursor;
        *cursor = at.wrapping_add(1);
        at
    };
    if let (Some(&i), Some(cfg)) = (
        BENCH_ZIPF.get(at & (BENCH_ZIPF_SAMPLES - 1)),
        BENCH_SPREAD.get(0),
    ) {
        rewrite(ctx, cfg, i);
    }
}

/// The `_zipf` variants drop what they would pass: in live-frames mode an XDP_PASS frame
/// goes up the network stack, whose cost would swamp the accounting measured.
#[inline(always)]
fn drop_passed(action: u32) -> u32 {
    if action == xdp_action::XDP_PASS {
        xdp_action::XDP_DROP
    } else {
        action
    }
}

#[inline(always)]
fn count(slot: Option<&u32>, ip_len: u32) {
    if let Some(&slot) = slot
        && let Some(c) = BENCH_COUNTERS.get_ptr_mut(slot)
    {
        // SAFETY: `get_ptr_mut` returned a bounds-checked pointer to this CPU's own copy of a
        // live per-CPU map value, not borrowed elsewhere during this call.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(ip_len);
        }
    }
}

#[inline(always)]
fn one_hash(ctx: &XdpContext) -> u32 {
    match parse::frame(ctx, Link::Ethernet) {
        // SAFETY: the benchmark fills its tables before the runs and never updates them while
        // the programs run, so no removed entry can be aliased under us.
        Frame::V4 { src, ip_len, .. } => count(unsafe { BENCH_HASH_V4.get(src) }, ip_len),
        Frame::V6 { src, ip_len, .. } => {
            let key = [src[0] & V6_56[0], src[1] & V6_56[1], 0, 0];
            // SAFETY: as for BENCH_HASH_V4 above.
            count(unsafe { BENCH_HASH_V6.get(key) }, ip_len)
        }
        _ => {}
    }
    xdp_action::XDP_PASS
}

#[inline(always)]
fn trie(ctx: &XdpContext) -> u32 {
    match parse::frame(ctx, Link::Ethernet) {
        Frame::V4 { src, ip_len, .. } => count(BENCH_TRIE_V4.get(Key::new(32, src)), ip_len),
        Frame::V6 { src, ip_len, .. } => count(BENCH_TRIE_V6.get(Key::new(128, src)), ip_len),
        _ => {}
    }
    xdp_action::XDP_PASS
}

#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn bench_pass_spread(ctx: XdpContext) -> u32 {
    spread(&ctx);
    xdp_action::XDP_PASS
}

#[xdp]
pub fn bench_one_hash(ctx: XdpContext) -> u32 {
    one_hash(&ctx)
}

#[xdp]
pub fn bench_one_hash_spread(ctx: XdpContext) -> u32 {
    spread(&ctx);
    one_hash(&ctx)
}

#[xdp]
pub fn bench_trie(ctx: XdpContext) -> u32 {
    trie(&ctx)
}

#[xdp]
pub fn bench_trie_spread(ctx: XdpContext) -> u32 {
    spread(&ctx);
    trie(&ctx)
}

#[xdp]
pub fn bench_quid(ctx: XdpContext) -> u32 {
    quid_ebpf::account::frame(&ctx, ROLE_ACCESS, Link::Ethernet)
}

#[xdp]
pub fn bench_quid_spread(ctx: XdpContext) -> u32 {
    spread(&ctx);
    quid_ebpf::account::frame(&ctx, ROLE_ACCESS, Link::Ethernet)
}

#[xdp]
pub fn bench_pass_zipf(ctx: XdpContext) -> u32 {
    zipf(&ctx);
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_one_hash_zipf(ctx: XdpContext) -> u32 {
    zipf(&ctx);
    drop_passed(one_hash(&ctx))
}

#[xdp]
pub fn bench_trie_zipf(ctx: XdpContext) -> u32 {
    zipf(&ctx);
    drop_passed(trie(&ctx))
}

#[xdp]
pub fn bench_quid_zipf(ctx: XdpContext) -> u32 {
    zipf(&ctx);
    drop_passed(quid_ebpf::account::frame(&ctx, ROLE_ACCESS, Link::Ethernet))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
