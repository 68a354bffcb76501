//! Everything that talks to the kernel: loading and attaching the XDP programs, the lookup
//! tables they read (mirroring `ebpf/src/lookup.rs`), and the counters they write.

pub mod attach_settings;
pub mod capabilities;
pub mod counter_view;
pub mod counters;
pub mod error;
pub mod grid_prefixes;
pub mod link_info;
pub mod link_type;
pub mod loader;
pub mod lookup_plan;
pub mod mmap_array;
pub mod prefix_census;
pub mod sizes;
pub mod subscriber_maps;
pub mod test_frames;
pub mod xdp_features;
