//! Map keys, values and constants shared by quid's XDP programs and its daemon.
//!
//! Every type here is `#[repr(C)]` with no implicit padding, because the kernel and user space
//! exchange them as raw bytes. Changing any layout means bumping [`LAYOUT_VERSION`].
#![no_std]

/// Version of the map layouts below; a daemon refuses pinned maps of another version.
pub const LAYOUT_VERSION: u32 = 4;

/// Lookup generations: the daemon rewrites the inactive one, then flips `ACTIVE_GEN`, so every
/// packet sees either the whole old table or the whole new one.
pub const GENERATIONS: usize = GENERATIONS_U32 as usize;
/// [`GENERATIONS`] as the `u32` that map sizes and generation numbers use (widening to
/// `usize` above is lossless, so the two always agree).
pub const GENERATIONS_U32: u32 = 2;

/// The hash keys' `len_gen` field: prefix length in the low byte, generation above it.
#[inline(always)]
pub const fn len_gen(prefix_len: u32, generation: u32) -> u32 {
    prefix_len | (generation << 8)
}

/// How many prefix lengths per family the kernel probes in its exact-match hash.
///
/// Lengths beyond this (the least populated ones) go to the LPM trie fallback.
pub const MAX_HASH_LENGTHS: usize = MAX_HASH_LENGTHS_U32 as usize;
/// [`MAX_HASH_LENGTHS`] as the `u32` that the config and the lookup plan count probes in.
pub const MAX_HASH_LENGTHS_U32: u32 = 8;

/// Interface indexes at or above this cannot be attached (their counters would have no slot).
pub const MAX_IFINDEX: u32 = 4096;

/// Traffic direction index: the subscriber sent the packet (seen on an access interface).
pub const DIR_UPLOAD: usize = 0;
/// Traffic direction index: the subscriber receives the packet (seen on a core interface).
pub const DIR_DOWNLOAD: usize = 1;
/// Traffic class index: the other endpoint is anywhere on the Internet.
pub const CLASS_INTERNET: usize = 0;
/// Traffic class index: the other endpoint is one of the ISP's grid prefixes.
pub const CLASS_GRID: usize = 1;
/// Number of (direction, class) counter pairs kept per subscriber.
pub const DIR_CLASS_PAIRS: usize = 4;

/// Index of a (direction, class) pair inside [`SubscriberCounters::pairs`].
#[inline(always)]
pub const fn pair_index(direction: usize, class: usize) -> usize {
    direction * 2 + class
}

/// Interface role bit: faces subscribers; a packet's source is the subscriber (upload).
pub const ROLE_ACCESS: u32 = 1;
/// Interface role bit: faces upstream; a packet's destination is the subscriber (download).
pub const ROLE_CORE: u32 = 2;

/// Per-interface bucket: IP packets attributed to at least one subscriber (IP-layer bytes).
pub const BUCKET_ATTRIBUTED: usize = 0;
/// Per-interface bucket: frames whose EtherType, after up to two VLAN tags, is not IPv4/IPv6
/// (ARP, LLDP, a third VLAN tag, ...); frame bytes.
pub const BUCKET_NON_IP: usize = 1;
/// Per-interface bucket: well-formed IP packets from or to no subscriber (IP-layer bytes).
pub const BUCKET_UNKNOWN: usize = 2;
/// Per-interface bucket: frames too short or inconsistent to parse (a PPPoE session header
/// with a wrong version, code or length included); frame bytes.
pub const BUCKET_MALFORMED: usize = 3;
/// Per-interface bucket: PPPoE discovery frames (EtherType 0x8863: PADI, PADO, PADR, PADS,
/// PADT), which set sessions up and tear them down; frame bytes.
pub const BUCKET_PPPOE_DISCOVERY: usize = 4;
/// Number of per-interface buckets; every frame lands in exactly one.
pub const BUCKETS: usize = 5;

/// EtherType of PPPoE discovery frames (RFC 2516).
pub const ETH_P_PPPOE_DISCOVERY: u16 = 0x8863;
/// EtherType of PPPoE session frames: a PPPoE header, then a PPP frame.
pub const ETH_P_PPPOE_SESSION: u16 = 0x8864;
/// Length of the PPPoE header (version and type, code, session id, payload length); the
/// payload length counts the PPP protocol field and what follows it.
pub const PPPOE_HLEN: usize = 6;
/// The only version and type RFC 2516 defines (version 1, type 1, one nibble each).
pub const PPPOE_VER_TYPE: u8 = 0x11;
/// The code of every session frame (other codes are discovery's).
pub const PPPOE_CODE_SESSION: u8 = 0;
/// Length of the PPP protocol field (uncompressed, as RFC 2516 recommends).
pub const PPP_PROTO_LEN: usize = 2;
/// PPP protocol: an IPv4 packet follows.
pub const PPP_IPV4: u16 = 0x0021;
/// PPP protocol: an IPv6 packet follows.
pub const PPP_IPV6: u16 = 0x0057;
/// PPP protocol: Link Control Protocol (a control frame, not subscriber traffic).
pub const PPP_LCP: u16 = 0xc021;
/// PPP protocol: IP Control Protocol (a control frame, not subscriber traffic).
pub const PPP_IPCP: u16 = 0x8021;

/// A packet and byte counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

// Counter arithmetic lives here, once: the kernel's counters are free-running `u64`s that
// wrap, so every sum and every difference wraps with them (a delta across a wrap is still
// right). Nothing here allocates: this crate is shared with the `no_std` XDP programs.
impl Counter {
    /// Adds another counter to this one (wrapping, as the kernel's counters do).
    pub fn add(&mut self, other: &Counter) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }

    /// What was counted since `earlier` (wrapping, as the kernel's counters do).
    pub fn wrapping_sub(&self, earlier: &Counter) -> Counter {
        Counter {
            packets: self.packets.wrapping_sub(earlier.packets),
            bytes: self.bytes.wrapping_sub(earlier.bytes),
        }
    }
}

/// Value of map `SUB_COUNTERS` (entry `cpu * SLOT_CAPACITY + slot`, see the eBPF `maps` module).
///
/// Bytes are IP-layer bytes: IPv4 total length, IPv6 payload length + 40.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberCounters {
    /// Indexed by [`pair_index`]`(direction, class)`.
    pub pairs: [Counter; DIR_CLASS_PAIRS],
}

impl SubscriberCounters {
    /// Adds every (direction, class) pair of `other` to this one's.
    pub fn add(&mut self, other: &SubscriberCounters) {
        for (total, c) in self.pairs.iter_mut().zip(other.pairs.iter()) {
            total.add(c);
        }
    }

    /// Every pair's count since `earlier` (wrapping, as the kernel's counters do).
    pub fn wrapping_sub(&self, earlier: &SubscriberCounters) -> SubscriberCounters {
        let mut out = SubscriberCounters::default();
        for (o, (now, then)) in out
            .pairs
            .iter_mut()
            .zip(self.pairs.iter().zip(earlier.pairs.iter()))
        {
            *o = now.wrapping_sub(then);
        }
        out
    }
}

/// Value of map `IFACE_COUNTERS` (per-CPU array indexed by ingress ifindex).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    /// Indexed by the `BUCKET_*` constants.
    pub buckets: [Counter; BUCKETS],
}

impl IfaceCounters {
    /// Adds every bucket of `other` to this one's.
    pub fn add(&mut self, other: &IfaceCounters) {
        for (total, c) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            total.add(c);
        }
    }
}

/// Key of map `SUB_V4`: an IPv4 prefix with its host bits cleared, in one generation.
///
/// `addr` holds the address bytes in network order, read as a native `u32` (as the kernel
/// loads them from the packet), so masking works the same on both sides.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct V4Key {
    /// [`len_gen`]`(prefix length, generation)`.
    pub len_gen: u32,
    pub addr: u32,
}

/// Key of map `SUB_V6`: an IPv6 prefix with its host bits cleared, as four network-order words.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct V6Key {
    /// [`len_gen`]`(prefix length, generation)`.
    pub len_gen: u32,
    pub addr: [u32; 4],
}

/// Data of an IPv4 trie key (`SUB_V4_TRIE`): the generation word, then the address. The trie
/// prefix length is 32 + the prefix's length, so a lookup only matches its own generation.
pub type V4TrieData = [u32; 2];

/// Data of an IPv6 trie key (`SUB_V6_TRIE`): the generation word, then the four address words.
pub type V6TrieData = [u32; 5];

/// Value of maps `SUB_V4`, `SUB_V6`, `SUB_V4_TRIE` and `SUB_V6_TRIE`: who owns a prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixTarget {
    /// Subscriber slot: the index into `SUB_COUNTERS`.
    pub slot: u32,
    /// Length of the matched prefix (the trie lookup needs it to compare with a hash hit).
    pub prefix_len: u32,
}

/// Probe kind: look the masked address up in the exact-match hash (`SUB_V4`/`SUB_V6`).
pub const PROBE_HASH: u32 = 0;
/// Probe kind: index the family's direct pool array (`POOL_V4`/`POOL_V6`) by the prefix's
/// offset in the pool: one memory access, no hashing.
pub const PROBE_POOL: u32 = 1;

/// One probe for IPv4: the length to try, its network-order mask and how to look it up.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V4Probe {
    pub prefix_len: u32,
    pub mask: u32,
    /// `PROBE_HASH` or `PROBE_POOL`.
    pub kind: u32,
    pub _pad: u32,
}

/// One probe for IPv6: the length to try, how to look it up and its network-order mask words.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V6Probe {
    pub prefix_len: u32,
    /// `PROBE_HASH` or `PROBE_POOL`.
    pub kind: u32,
    pub mask: [u32; 4],
}

/// A direct pool: the prefixes of one length whose "units" (the address's top bits down to
/// that length, as a host-order number) lie in `first .. first + units`. Entry `unit - first`
/// of the pool array holds the owner's slot + 1 (0: no owner).
///
/// IPv4 unit: `u32::from_be(addr) >> shift`. IPv6 unit: the top 64 address bits `>> shift`
/// (so IPv6 pools hold prefixes of length 64 or shorter).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolSpec {
    pub first: u64,
    pub units: u64,
    /// Index of this generation's region in the pool array (in entries, an even number).
    pub base: u64,
    /// Address width used (32, or 64 for IPv6's top half) minus the prefix length.
    pub shift: u32,
    pub prefix_len: u32,
}

/// Value of map `LOOKUP_PLAN` (one entry per generation): how the kernel finds a subscriber.
///
/// The daemon probes the most populated prefix lengths (at most [`MAX_HASH_LENGTHS`] per
/// family) longest first, so the first hit is the most specific match among them. The most
/// populated length of each family is answered from a direct pool when its prefixes are
/// dense enough, the others from the exact-match hash. Prefixes of any other length (or
/// outside the pool) live in the LPM trie, consulted only when it holds a length longer than
/// the probe hit (`*_trie_max`, 0 when the trie is empty).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupPlan {
    /// The generation this plan's keys and pool region belong to.
    pub generation: u32,
    pub _pad: u32,
    pub v4_probes: u32,
    pub v6_probes: u32,
    pub v4_trie_max: u32,
    pub v6_trie_max: u32,
    pub v4_pool: PoolSpec,
    pub v6_pool: PoolSpec,
    pub v4: [V4Probe; MAX_HASH_LENGTHS],
    pub v6: [V6Probe; MAX_HASH_LENGTHS],
}

/// Network-order mask of an IPv4 prefix length, as a native `u32` (see [`V4Key`]).
pub const fn v4_mask(prefix_len: u32) -> u32 {
    if prefix_len == 0 {
        0
    } else if prefix_len >= 32 {
        u32::MAX
    } else {
        (u32::MAX << (32 - prefix_len)).to_be()
    }
}

/// Network-order mask words of an IPv6 prefix length (see [`V6Key`]).
pub const fn v6_mask(prefix_len: u32) -> [u32; 4] {
    let mut out = [0u32; 4];
    let mut i = 0;
    let mut start = 0u32;
    while i < 4 {
        let bits = if prefix_len <= start {
            0
        } else if prefix_len - start >= 32 {
            32
        } else {
            prefix_len - start
        };
        out[i] = v4_mask(bits);
        i += 1;
        start += 32;
    }
    out
}

/// Value of the pinned map `META` (array of one): what a daemon adopting pinned maps checks
/// before it touches them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// [`LAYOUT_VERSION`] of the daemon that created the maps.
    pub layout_version: u32,
    /// Subscriber slots per CPU region of `SUB_COUNTERS`.
    pub slot_capacity: u32,
    /// Possible CPUs when the maps were created.
    pub cpus: u32,
    /// Prefixes per family and generation in the hashes and tries.
    pub prefix_capacity: u32,
    /// Pool entries per family and generation.
    pub pool_v4: u32,
    pub pool_v6: u32,
    /// Random value chosen when the maps were created: tells the daemon's store whether the
    /// counters it last read are still the ones in the kernel.
    pub instance: u64,
}

/// Most grid prefixes per family the kernel compares against (a bounded linear scan: a few
/// compares cost less than any map lookup).
pub const MAX_GRID_PREFIXES: usize = 16;

/// Value of map `GRID` (array of one): the ISP grid's prefixes (orchestrators, storage
/// gateways, compute workers). Traffic between a subscriber and one of them is class grid.
/// Addresses and masks are network-order words, as in [`V4Key`] and [`V6Key`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GridSet {
    pub v4_count: u32,
    pub v6_count: u32,
    /// (address, mask) per IPv4 prefix.
    pub v4: [[u32; 2]; MAX_GRID_PREFIXES],
    /// Address words then mask words per IPv6 prefix.
    pub v6: [[u32; 8]; MAX_GRID_PREFIXES],
}

/// Bench-only map `BENCH_SPREAD` (array of one): how many table entries the spreading
/// benchmark programs step the looked-up address over, and where in the frame they write it
/// (set by the harness per frame, so that the rewrite costs the same whatever the framing and
/// only the program measured reads the headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchSpread {
    pub entries: u32,
    /// Byte offset of the frame's source-address word to rewrite: the IP header's start + 12
    /// (IPv4: the source; IPv6: the source's second word, its /32../64 bits).
    pub src_offset: u32,
    /// 0: write an IPv4 address (100.64.0.0 + entry); 1: an IPv6 word (entry << 8).
    pub ipv6: u32,
}

/// Length of the bench-only map `BENCH_ZIPF`: table entries drawn from a Zipf distribution,
/// read in turn by the `_zipf` benchmark programs. A power of two, so that a cursor wraps with
/// a mask; 2^20 draws are long enough that no cache remembers the cycle.
pub const BENCH_ZIPF_SAMPLES: u32 = 1 << 20;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    /// Marks map keys and values as plain old data for aya.
    macro_rules! pod {
        ($($t:ty),*) => {$(
            // SAFETY: every one of these is repr(C), holds only integers and arrays of
            // integers, and has no padding, so any bit pattern is a valid value.
            unsafe impl aya::Pod for $t {}
        )*};
    }
    pod!(
        Counter,
        SubscriberCounters,
        IfaceCounters,
        V4Key,
        V6Key,
        PrefixTarget,
        LookupPlan,
        Meta,
        GridSet,
        BenchSpread
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_exactly_the_prefix_bits() {
        assert_eq!(v4_mask(24).to_ne_bytes(), [255, 255, 255, 0]);
        assert_eq!(v4_mask(29).to_ne_bytes(), [255, 255, 255, 248]);
        assert_eq!(v4_mask(32), u32::MAX);
        let m = v6_mask(56);
        assert_eq!(m[0], u32::MAX);
        assert_eq!(m[1].to_ne_bytes(), [255, 255, 255, 0]);
        assert_eq!((m[2], m[3]), (0, 0));
    }

    #[test]
    fn counters_add_and_subtract_pair_by_pair_wrapping() {
        let mut a = SubscriberCounters::default();
        a.pairs[0] = Counter {
            packets: 2,
            bytes: 300,
        };
        a.pairs[3] = Counter {
            packets: u64::MAX,
            bytes: 10,
        };
        let mut b = SubscriberCounters::default();
        b.pairs[0] = Counter {
            packets: 1,
            bytes: 100,
        };
        b.pairs[3] = Counter {
            packets: 2,
            bytes: 5,
        };
        let before = a;
        a.add(&b);
        assert_eq!(
            a.pairs[0],
            Counter {
                packets: 3,
                bytes: 400
            }
        );
        // The kernel's counters wrap, and a sum wraps with them.
        assert_eq!(
            a.pairs[3],
            Counter {
                packets: 1,
                bytes: 15
            }
        );
        assert_eq!(a.pairs[1], Counter::default());
        // ... so the difference across the wrap is still what was counted.
        assert_eq!(a.wrapping_sub(&before), b);
        assert_eq!(a.wrapping_sub(&b), before);

        let mut i = IfaceCounters::default();
        let mut j = IfaceCounters::default();
        j.buckets[BUCKET_UNKNOWN] = Counter {
            packets: 4,
            bytes: 40,
        };
        i.add(&j);
        i.add(&j);
        assert_eq!(
            i.buckets[BUCKET_UNKNOWN],
            Counter {
                packets: 8,
                bytes: 80
            }
        );
        assert_eq!(i.buckets[BUCKET_ATTRIBUTED], Counter::default());
    }

    #[test]
    fn layouts_have_no_padding() {
        use core::mem::size_of;
        assert_eq!(size_of::<SubscriberCounters>(), 64);
        assert_eq!(size_of::<IfaceCounters>(), 80);
        assert_eq!(size_of::<V4Key>(), 8);
        assert_eq!(size_of::<V6Key>(), 20);
        assert_eq!(size_of::<PrefixTarget>(), 8);
        assert_eq!(size_of::<PoolSpec>(), 32);
        assert_eq!(size_of::<LookupPlan>(), 24 + 2 * 32 + 8 * 16 + 8 * 24);
        assert_eq!(size_of::<Meta>(), 32);
        assert_eq!(size_of::<GridSet>(), 8 + 16 * 8 + 16 * 32);
    }
}

/// The names of the maps in quid's XDP object (`ebpf/src/maps.rs` names each static the same):
/// the daemon finds, sizes and pins the maps by these.
pub mod map_name {
    /// Layout version, sizes and instance of the pinned maps.
    pub const META: &str = "META";
    /// The grid prefixes that make traffic class grid.
    pub const GRID: &str = "GRID";
    /// Per-subscriber counters, one region per CPU.
    pub const SUB_COUNTERS: &str = "SUB_COUNTERS";
    /// Per-interface buckets (per-CPU).
    pub const IFACE_COUNTERS: &str = "IFACE_COUNTERS";
    /// The lookup plan of each generation.
    pub const LOOKUP_PLAN: &str = "LOOKUP_PLAN";
    /// Which generation packets use.
    pub const ACTIVE_GEN: &str = "ACTIVE_GEN";
    /// Direct pool for IPv4's most common prefix length.
    pub const POOL_V4: &str = "POOL_V4";
    /// Direct pool for IPv6's most common prefix length.
    pub const POOL_V6: &str = "POOL_V6";
    /// Exact-match hash of IPv4 prefixes.
    pub const SUB_V4: &str = "SUB_V4";
    /// Exact-match hash of IPv6 prefixes.
    pub const SUB_V6: &str = "SUB_V6";
    /// LPM trie fallback for IPv4.
    pub const SUB_V4_TRIE: &str = "SUB_V4_TRIE";
    /// LPM trie fallback for IPv6.
    pub const SUB_V6_TRIE: &str = "SUB_V6_TRIE";
}
