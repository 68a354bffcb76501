//! Loading quid's XDP object into the kernel and attaching it to interfaces by role.

use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use log::warn;

use crate::{
    config::{KernelLog, Role, XdpModeSetting},
    counters::CounterView,
};

/// quid's XDP object, built from `ebpf/` by `build.rs` and embedded so one binary suffices.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/quid"));

/// Errors while loading or attaching.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(
        "loading the XDP object failed: {0} (quid needs root or CAP_BPF+CAP_NET_ADMIN+CAP_PERFMON)"
    )]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: String,
        source: aya::programs::ProgramError,
    },
    #[error("interface `{0}` does not exist: check the [[interface]] names in the config")]
    NoInterface(String),
    #[error("interface `{name}` has ifindex {ifindex}, quid counts interfaces below {max} only")]
    IfindexTooLarge {
        name: String,
        ifindex: u32,
        max: u32,
    },
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
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

/// Table sizes the kernel maps are created with.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Subscriber slots (per-CPU counter array length).
    pub subscribers: u32,
    /// Prefixes per family (hash and trie each).
    pub prefixes: u32,
    /// Direct pool entries per family (0: no pool).
    pub pool_v4: u32,
    pub pool_v6: u32,
}

impl Sizes {
    /// The pool sizes the plan may use.
    pub fn pools(&self) -> crate::plan::PoolSizes {
        crate::plan::PoolSizes {
            v4: self.pool_v4,
            v6: self.pool_v6,
        }
    }

    /// `max_entries` for each of quid's maps (`SUB_COUNTERS` holds a region per CPU).
    pub fn map_sizes(&self) -> Result<[(&'static str, u32); 7], DatapathError> {
        let cpus = possible_cpus()? as u32;
        Ok([
            // Two pool entries per array element.
            ("POOL_V4", self.pool_v4.div_ceil(2).max(1)),
            ("POOL_V6", self.pool_v6.div_ceil(2).max(1)),
            ("SUB_V4", self.prefixes),
            ("SUB_V6", self.prefixes),
            ("SUB_V4_TRIE", self.prefixes),
            ("SUB_V6_TRIE", self.prefixes),
            ("SUB_COUNTERS", self.subscribers * cpus),
        ])
    }
}

/// Number of possible CPUs (the kernel's `nr_cpu_ids`): one counter region each.
pub fn possible_cpus() -> Result<usize, DatapathError> {
    aya::util::nr_cpus().map_err(|(path, e)| DatapathError::Cpus(format!("{path}: {e}")))
}

/// One interface quid is attached to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub ifindex: u32,
    pub role: Role,
    /// `native` or `generic`.
    pub mode: String,
}

/// The loaded object and its attachments; dropping it detaches everything.
pub struct Datapath {
    /// Declared before `ebpf` so the mapping goes before the maps.
    pub counters: CounterView,
    pub sizes: Sizes,
    pub ebpf: Ebpf,
    pub attachments: Vec<Attachment>,
    links: Vec<(&'static str, XdpLinkId)>,
}

impl Datapath {
    /// Loads the embedded object with maps sized for `sizes` and all three role programs.
    pub fn load(sizes: Sizes, kernel_log: KernelLog) -> Result<Datapath, DatapathError> {
        Self::load_object(
            OBJECT,
            sizes,
            &[],
            kernel_log,
            &["quid_access", "quid_core", "quid_both"],
        )
    }

    /// Loads any quid-layout object (the daemon's or the benchmark's) with quid's maps sized
    /// for `sizes`, `extra_maps` sized as given, and then the named programs.
    pub fn load_object(
        object: &[u8],
        sizes: Sizes,
        extra_maps: &[(&str, u32)],
        kernel_log: KernelLog,
        programs: &[&str],
    ) -> Result<Datapath, DatapathError> {
        let level = kernel_log.aya_level();
        let mut loader = EbpfLoader::new();
        let quid_maps = sizes.map_sizes()?;
        for &(name, size) in quid_maps.iter().chain(extra_maps) {
            loader.map_max_entries(name, size);
        }
        let ebpf = loader
            .override_global(aya_log::LEVEL, &level, true)
            .override_global("SLOT_CAPACITY", &sizes.subscribers, true)
            .load(object)?;
        let map = ebpf
            .map("SUB_COUNTERS")
            .ok_or(DatapathError::MissingMap("SUB_COUNTERS"))?;
        let counters = CounterView::new(map, sizes.subscribers, possible_cpus()?)?;
        let mut dp = Datapath {
            counters,
            sizes,
            ebpf,
            attachments: Vec::new(),
            links: Vec::new(),
        };
        for &name in programs {
            dp.program(name)?
                .load()
                .map_err(|source| DatapathError::Program {
                    name: name.into(),
                    source,
                })?;
        }
        Ok(dp)
    }

    /// Attaches the role's program to `name`: native XDP, falling back to generic with a
    /// warning under `auto`, or exactly the forced mode.
    pub fn attach(
        &mut self,
        name: &str,
        role: Role,
        setting: XdpModeSetting,
    ) -> Result<&Attachment, DatapathError> {
        let ifindex = nix::net::if_::if_nametoindex(name)
            .map_err(|_| DatapathError::NoInterface(name.into()))?;
        if ifindex >= quid_common::MAX_IFINDEX {
            return Err(DatapathError::IfindexTooLarge {
                name: name.into(),
                ifindex,
                max: quid_common::MAX_IFINDEX,
            });
        }
        let program_name = role.program();
        let program = self.program(program_name)?;
        let attach = |program: &mut Xdp, mode: XdpMode, label: &'static str| {
            program
                .attach_to_if_index(ifindex, mode)
                .map(|id| (id, label))
                .map_err(|source| DatapathError::Attach {
                    name: name.into(),
                    mode: label,
                    source,
                })
        };
        let (link, mode) = match setting {
            XdpModeSetting::Native => attach(program, XdpMode::Driver, "native")?,
            XdpModeSetting::Generic => attach(program, XdpMode::Skb, "generic")?,
            XdpModeSetting::Auto => match attach(program, XdpMode::Driver, "native") {
                Ok(ok) => ok,
                Err(e) => {
                    warn!("{e}; falling back to generic XDP on `{name}` (slower, counts the same)");
                    attach(program, XdpMode::Skb, "generic")?
                }
            },
        };
        self.links.push((program_name, link));
        self.attachments.push(Attachment {
            name: name.into(),
            ifindex,
            role,
            mode: mode.into(),
        });
        Ok(self.attachments.last().expect("just pushed"))
    }

    /// Detaches every program but keeps the maps, so the final counts can still be read.
    pub fn detach_all(&mut self) -> Result<(), DatapathError> {
        for (program_name, link) in std::mem::take(&mut self.links) {
            self.program(program_name)?
                .detach(link)
                .map_err(|source| DatapathError::Program {
                    name: program_name.into(),
                    source,
                })?;
        }
        Ok(())
    }

    /// One of the object's XDP programs by name.
    pub fn program(&mut self, name: &str) -> Result<&mut Xdp, DatapathError> {
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| DatapathError::Program {
                name: name.into(),
                source: aya::programs::ProgramError::InvalidName { name: name.into() },
            })?
            .try_into()
            .map_err(|source| DatapathError::Program {
                name: name.into(),
                source,
            })
    }
}
