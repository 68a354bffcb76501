//! What can go wrong between quid and the kernel: loading, attaching, pinning, maps.

use std::path::PathBuf;

/// Errors while loading or attaching.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "loading the XDP object failed: {0} (quid needs root or CAP_BPF+CAP_NET_ADMIN+CAP_PERFMON)"
    )]
    Load(#[from] aya::EbpfError),
    #[error(
        "this quid was built without its XDP programs (bpf-linker was missing at build time): \
         run scripts/bootstrap.sh, then rebuild"
    )]
    NoObject,
    #[error("program {name}: {source}")]
    Program {
        name: String,
        source: aya::programs::ProgramError,
    },
    #[error(transparent)]
    UnsupportedLink(#[from] crate::kernel::link_type::UnsupportedLink),
    #[error("interface `{0}` does not exist: check the [[interface]] names in the config")]
    NoInterface(String),
    #[error("interface `{name}` has ifindex {ifindex}, quid counts interfaces below {max} only")]
    IfindexTooLarge {
        name: String,
        ifindex: u32,
        max: u32,
    },
    #[error(
        "xdp_mode = \"native\" on `{0}`: it has no Ethernet header (tun, ppp, WireGuard), and \
         such links run XDP programs only in generic mode (a tun device accepts a native program \
         and never runs it); set xdp_mode to \"auto\" or \"generic\""
    )]
    NativeOnIpLink(String),
    #[error("attaching XDP to `{name}` in {mode} mode failed: {source}")]
    Attach {
        name: String,
        mode: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("map {0} missing from the XDP object (was it built from this source tree?)")]
    MissingMap(&'static str),
    #[error("mapping {name} into memory failed: {source}")]
    Mmap {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("cannot count the possible CPUs ({0})")]
    Cpus(String),
    #[error("map {name} would need {entries} entries, more than a kernel map holds (u32)")]
    MapTooLarge { name: &'static str, entries: u64 },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error(
        "the maps pinned in {dir} have layout version {found}, this quid understands version \
         {expected}: they were left untouched. Run the quid that pinned them, or `quid detach` \
         to remove them (their counters are lost)"
    )]
    LayoutVersion {
        dir: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error(
        "the maps pinned in {dir} were created for {found}, the config asks for {wanted}: they \
         were left untouched. Restore the sizes in the config, or `quid detach` and restart \
         (the kernel counters restart from zero; the store keeps the totals)"
    )]
    SizeMismatch {
        dir: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("pinning under {dir}: {message}")]
    Pin { dir: PathBuf, message: String },
}
