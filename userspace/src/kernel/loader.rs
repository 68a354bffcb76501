//! Loading quid's XDP object into the kernel and attaching it to interfaces by role, with its
//! maps and links pinned under bpffs so counting goes on while the daemon is stopped and a
//! restarted daemon adopts them.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use log::{info, warn};
use quid_common::{LAYOUT_VERSION, Meta, map_name};

use crate::kernel::{
    attach_settings::{KernelLog, Role, XdpModeSetting},
    counter_view::CounterView,
    error::KernelError,
    link_type::{self, Framing},
    sizes::{Sizes, possible_cpus, possible_cpus_u32},
};

/// quid's XDP object, built from `ebpf/` by `build.rs` and embedded so one binary suffices.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/quid"));

/// Maps pinned by name under the pin directory: everything a restarted daemon needs.
pub const PINNED_MAPS: [&str; 12] = [
    map_name::META,
    map_name::GRID,
    map_name::SUB_COUNTERS,
    map_name::IFACE_COUNTERS,
    map_name::LOOKUP_PLAN,
    map_name::ACTIVE_GEN,
    map_name::POOL_V4,
    map_name::POOL_V6,
    map_name::SUB_V4,
    map_name::SUB_V6,
    map_name::SUB_V4_TRIE,
    map_name::SUB_V6_TRIE,
];

/// The programs the daemon attaches: one per role and framing.
pub const PROGRAMS: [&str; 6] = [
    "quid_access",
    "quid_core",
    "quid_both",
    "quid_access_ip",
    "quid_core_ip",
    "quid_both_ip",
];

/// bpffs's magic number (`statfs.f_type`).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Makes sure `dir` exists on a bpffs, mounting one at /sys/fs/bpf if that is where it goes.
pub fn prepare_pin_dir(dir: &Path) -> Result<(), KernelError> {
    let pin_err = |message: String| KernelError::Pin {
        dir: dir.to_owned(),
        message,
    };
    let bpffs = Path::new("/sys/fs/bpf");
    let is_bpffs = |p: &Path| {
        nix::sys::statfs::statfs(p)
            .map(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
            .unwrap_or(false)
    };
    if dir.starts_with(bpffs) && !is_bpffs(bpffs) {
        std::fs::create_dir_all(bpffs)
            .map_err(|e| pin_err(format!("creating {}: {e}", bpffs.display())))?;
        nix::mount::mount(
            Some("bpf"),
            bpffs,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| {
            pin_err(format!(
                "bpffs is not mounted at /sys/fs/bpf and mounting it failed: {e} (mounting \
                 needs CAP_SYS_ADMIN, which quid does not otherwise need: mount it at boot with \
                 `mount -t bpf bpf /sys/fs/bpf`, as systemd does)"
            ))
        })?;
        info!("mounted bpffs at /sys/fs/bpf");
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        pin_err(format!(
            "cannot create it: {e} (bpffs names cannot contain '.'; when quid runs as its \
             own user, create it for that user: install -d -o quid -g quid -m 0750 DIR, as \
             the shipped quid.service does)"
        ))
    })?;
    if !is_bpffs(dir) {
        return Err(pin_err(
            "it is not on a bpffs: set daemon.pin_dir under /sys/fs/bpf, or mount one there \
             (mount -t bpf bpf DIR)"
                .into(),
        ));
    }
    Ok(())
}

/// Reads the `META` of maps pinned in `dir`, if there are any.
pub fn pinned_meta(dir: &Path) -> Result<Option<Meta>, KernelError> {
    let path = dir.join(map_name::META);
    if !path.exists() {
        return Ok(None);
    }
    let data = MapData::from_pin(&path).map_err(|source| KernelError::Map {
        name: map_name::META,
        source,
    })?;
    let map = Map::Array(data);
    let array: Array<&MapData, Meta> =
        Array::try_from(&map).map_err(|source| KernelError::Map {
            name: map_name::META,
            source,
        })?;
    let meta = array.get(&0, 0).map_err(|source| KernelError::Map {
        name: map_name::META,
        source,
    })?;
    Ok(Some(meta))
}

/// Removes every link and map quid pinned in `dir` (detaching its programs), then `dir`.
/// Returns how many pins were removed.
pub fn remove_pins(dir: &Path) -> Result<usize, KernelError> {
    let pin_err = |message: String| KernelError::Pin {
        dir: dir.to_owned(),
        message,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(pin_err(e.to_string())),
    };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    // Links first: a program stops counting before its maps go.
    names.sort_by_key(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("link_"))
    });
    for p in &names {
        std::fs::remove_file(p).map_err(|e| pin_err(format!("removing {}: {e}", p.display())))?;
    }
    std::fs::remove_dir(dir).map_err(|e| pin_err(format!("removing the directory: {e}")))?;
    Ok(names.len())
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // getrandom only fails without any entropy source; then the clock still tells two map
    // creations on this machine apart, which is all the instance is for.
    if getrandom::fill(&mut b).is_ok() {
        return u64::from_ne_bytes(b);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        // u64 nanoseconds since the epoch last until 2554; saturating is fine for an instance.
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(1)
}

/// One interface quid is attached to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub ifindex: u32,
    pub role: Role,
    /// `native` or `generic`.
    pub mode: String,
    /// What its packets start with; Ethernet in a snapshot an older quid wrote.
    #[serde(default)]
    pub framing: Framing,
}

/// The loaded object and its attachments; dropping it detaches everything.
pub struct Datapath {
    /// Declared before `ebpf` so the mapping goes before the maps.
    pub counters: CounterView,
    pub sizes: Sizes,
    pub ebpf: Ebpf,
    pub attachments: Vec<Attachment>,
    /// (interface, program, link) for links this process owns unpinned or adopted.
    links: Vec<(String, &'static str, XdpLinkId)>,
    /// Where maps and links are pinned (`None`: nothing outlives the daemon).
    pin_dir: Option<PathBuf>,
    /// The pinned maps' META: read from the pins when adopted, written when created.
    pub meta: Meta,
    /// Whether the maps were adopted from a previous daemon rather than created.
    pub adopted: bool,
    /// (interface, link) for links this process pinned.
    pinned_links: Vec<(String, PinnedLink)>,
}

impl Datapath {
    /// Loads the embedded object with maps sized for `sizes` and every role program.
    pub fn load(sizes: Sizes, kernel_log: KernelLog) -> Result<Datapath, KernelError> {
        Self::load_pinned(sizes, kernel_log, None)
    }

    /// Like [`Datapath::load`], with the maps pinned in `pin_dir` (adopted if a compatible
    /// earlier daemon left them there; refused, untouched, if not).
    pub fn load_pinned(
        sizes: Sizes,
        kernel_log: KernelLog,
        pin_dir: Option<&Path>,
    ) -> Result<Datapath, KernelError> {
        let cpus = possible_cpus_u32()?;
        let mut wanted = Meta {
            layout_version: LAYOUT_VERSION,
            slot_capacity: sizes.subscribers,
            cpus,
            prefix_capacity: sizes.prefixes,
            pool_v4: sizes.pool_v4,
            pool_v6: sizes.pool_v6,
            instance: 0,
        };
        let mut adopted = None;
        if let Some(dir) = pin_dir {
            prepare_pin_dir(dir)?;
            if let Some(found) = pinned_meta(dir)? {
                if found.layout_version != LAYOUT_VERSION {
                    return Err(KernelError::LayoutVersion {
                        dir: dir.to_owned(),
                        found: found.layout_version,
                        expected: LAYOUT_VERSION,
                    });
                }
                if (Meta {
                    instance: 0,
                    ..found
                }) != wanted
                {
                    let old = Sizes {
                        subscribers: found.slot_capacity,
                        prefixes: found.prefix_capacity,
                        pool_v4: found.pool_v4,
                        pool_v6: found.pool_v6,
                    };
                    return Err(KernelError::SizeMismatch {
                        dir: dir.to_owned(),
                        found: old.describe(found.cpus),
                        wanted: sizes.describe(cpus),
                    });
                }
                adopted = Some(found);
            } else if std::fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
            {
                return Err(KernelError::Pin {
                    dir: dir.to_owned(),
                    message: "it holds pins but no META map: they are not quid's (or are \
                              incomplete); remove them or choose another daemon.pin_dir"
                        .into(),
                });
            }
        }
        let pins: Vec<(&str, PathBuf)> = match pin_dir {
            Some(dir) => PINNED_MAPS.iter().map(|&m| (m, dir.join(m))).collect(),
            None => Vec::new(),
        };
        let loaded = Self::load_object_with(OBJECT, sizes, &[], kernel_log, &PROGRAMS, &pins);
        let mut dp = match loaded {
            Ok(dp) => dp,
            Err(e) => {
                // The loader pins the maps before it loads the programs: a refused program
                // must not leave maps of a start that never happened.
                if adopted.is_none()
                    && let Some(dir) = pin_dir
                    && let Err(undo) = remove_pins(dir)
                {
                    warn!("{undo}: remove it by hand (`quid detach`)");
                }
                return Err(e);
            }
        };
        dp.pin_dir = pin_dir.map(Path::to_owned);
        match adopted {
            Some(meta) => {
                dp.meta = meta;
                dp.adopted = true;
            }
            None => {
                wanted.instance = random_u64();
                let written = map::<Array<&mut MapData, Meta>>(&mut dp, map_name::META).and_then(
                    |mut meta| {
                        meta.set(0, wanted, 0).map_err(|source| KernelError::Map {
                            name: map_name::META,
                            source,
                        })
                    },
                );
                if let Err(e) = written {
                    // Maps without a META would make the next start refuse the directory.
                    if let Err(undo) = dp.unpin_all() {
                        warn!("{undo}: remove it by hand (`quid detach`)");
                    }
                    return Err(e);
                }
                dp.meta = wanted;
            }
        }
        Ok(dp)
    }

    /// Loads any quid-layout object (the daemon's or the benchmark's) with quid's maps sized
    /// for `sizes`, `extra_maps` sized as given, and then the named programs.
    pub fn load_object(
        object: &[u8],
        sizes: Sizes,
        extra_maps: &[(&str, u32)],
        kernel_log: KernelLog,
        programs: &[&str],
    ) -> Result<Datapath, KernelError> {
        Self::load_object_with(object, sizes, extra_maps, kernel_log, programs, &[])
    }

    fn load_object_with(
        object: &[u8],
        sizes: Sizes,
        extra_maps: &[(&str, u32)],
        kernel_log: KernelLog,
        programs: &[&str],
        pins: &[(&str, PathBuf)],
    ) -> Result<Datapath, KernelError> {
        if object.is_empty() {
            return Err(KernelError::NoObject);
        }
        let level = kernel_log.aya_level();
        let mut loader = EbpfLoader::new();
        let quid_maps = sizes.map_sizes()?;
        for &(name, size) in quid_maps.iter().chain(extra_maps) {
            loader.map_max_entries(name, size);
        }
        for (name, path) in pins {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader
            .override_global(aya_log::LEVEL, &level, true)
            .override_global("SLOT_CAPACITY", &sizes.subscribers, true)
            .load(object)?;
        let map = ebpf
            .map(map_name::SUB_COUNTERS)
            .ok_or(KernelError::MissingMap(map_name::SUB_COUNTERS))?;
        let counters = CounterView::new(map, sizes.subscribers, possible_cpus()?)?;
        let mut dp = Datapath {
            counters,
            sizes,
            ebpf,
            attachments: Vec::new(),
            links: Vec::new(),
            pin_dir: None,
            meta: Meta::default(),
            adopted: false,
            pinned_links: Vec::new(),
        };
        for &name in programs {
            dp.program(name)?
                .load()
                .map_err(|source| KernelError::Program {
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
    ) -> Result<&Attachment, KernelError> {
        let ifindex = nix::net::if_::if_nametoindex(name)
            .map_err(|_| KernelError::NoInterface(name.into()))?;
        if ifindex >= quid_common::MAX_IFINDEX {
            return Err(KernelError::IfindexTooLarge {
                name: name.into(),
                ifindex,
                max: quid_common::MAX_IFINDEX,
            });
        }
        let framing = link_type::of_interface(name)?;
        let program_name = role.program(framing);
        let link_pin = self
            .pin_dir
            .as_ref()
            .map(|d| d.join(format!("link_{name}")));
        if let Some(path) = link_pin.as_ref().filter(|p| p.exists())
            && crate::kernel::link_info::ifindex(path).ok() != Some(ifindex)
        {
            // The interface was deleted (and maybe created again) while no daemon ran: the
            // pinned link is defunct, so it goes and the program is attached afresh below.
            warn!(
                "the pinned link to {name} belongs to an interface that is gone; attaching afresh"
            );
            std::fs::remove_file(path).map_err(|e| KernelError::Pin {
                dir: path.clone(),
                message: format!("removing the defunct link: {e}"),
            })?;
        }
        if let Some(path) = link_pin.as_ref().filter(|p| p.exists()) {
            // A previous daemon's link: swap our program into it atomically (no packet
            // goes uncounted), and keep its pin.
            let pin_err = |message: String| KernelError::Pin {
                dir: path.clone(),
                message,
            };
            let pinned = PinnedLink::from_pin(path).map_err(|e| pin_err(e.to_string()))?;
            let link =
                XdpLink::try_from(FdLink::from(pinned)).map_err(|e| pin_err(e.to_string()))?;
            let program = self.program(program_name)?;
            let id = program
                .attach_to_link(link)
                .map_err(|source| KernelError::Attach {
                    name: name.into(),
                    mode: "adopted",
                    source,
                })?;
            self.links.push((name.into(), program_name, id));
            let index = self.attachments.len();
            self.attachments.push(Attachment {
                name: name.into(),
                ifindex,
                role,
                mode: "adopted".into(),
                framing,
            });
            return Ok(&self.attachments[index]);
        }
        let program = self.program(program_name)?;
        let attach = |program: &mut Xdp, mode: XdpMode, label: &'static str| {
            program
                .attach_to_if_index(ifindex, mode)
                .map(|id| (id, label))
                .map_err(|source| KernelError::Attach {
                    name: name.into(),
                    mode: label,
                    source,
                })
        };
        let (link, mode) = match (setting, framing) {
            // Links without Ethernet run XDP only in the generic hook: a tun device takes a
            // native program and never runs it, so native is never tried there.
            (XdpModeSetting::Native, Framing::Ip) => {
                return Err(KernelError::NativeOnIpLink(name.into()));
            }
            (XdpModeSetting::Auto, Framing::Ip) | (XdpModeSetting::Generic, _) => {
                attach(program, XdpMode::Skb, "generic")?
            }
            (XdpModeSetting::Native, Framing::Ethernet) => {
                attach(program, XdpMode::Driver, "native")?
            }
            (XdpModeSetting::Auto, Framing::Ethernet) => {
                match attach(program, XdpMode::Driver, "native") {
                    Ok(ok) => ok,
                    Err(e) => {
                        warn!(
                            "{e}; falling back to generic XDP on `{name}` (slower, counts the same)"
                        );
                        attach(program, XdpMode::Skb, "generic")?
                    }
                }
            }
        };
        if let Some(path) = link_pin {
            let pin_err = |message: String| KernelError::Pin {
                dir: path.clone(),
                message,
            };
            let taken = self
                .program(program_name)?
                .take_link(link)
                .map_err(|source| KernelError::Program {
                    name: program_name.into(),
                    source,
                })?;
            let fd = FdLink::try_from(taken).map_err(|e| {
                pin_err(format!(
                    "{e}: the kernel attached through netlink, which cannot be pinned"
                ))
            })?;
            let pinned = fd.pin(&path).map_err(|e| pin_err(e.to_string()))?;
            self.pinned_links.push((name.into(), pinned));
        } else {
            self.links.push((name.into(), program_name, link));
        }
        let index = self.attachments.len();
        self.attachments.push(Attachment {
            name: name.into(),
            ifindex,
            role,
            mode: mode.into(),
            framing,
        });
        Ok(&self.attachments[index])
    }

    /// Removes link pins for interfaces no longer configured (their programs detach).
    pub fn drop_stale_links(&self, configured: &[String]) -> Result<Vec<String>, KernelError> {
        let Some(dir) = &self.pin_dir else {
            return Ok(Vec::new());
        };
        let mut dropped = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(ifname) = name.strip_prefix("link_")
                && !configured.iter().any(|c| c == ifname)
            {
                std::fs::remove_file(e.path()).map_err(|err| KernelError::Pin {
                    dir: dir.clone(),
                    message: format!("removing {name}: {err}"),
                })?;
                dropped.push(ifname.to_owned());
            }
        }
        Ok(dropped)
    }

    /// Whether the program is attached to the interface `name` is now (`ifindex`): for a
    /// pinned link the kernel's word, otherwise the ifindex it was attached to.
    pub fn attached_to(&self, name: &str, ifindex: u32) -> bool {
        match &self.pin_dir {
            Some(dir) => {
                crate::kernel::link_info::ifindex(&dir.join(format!("link_{name}"))).ok()
                    == Some(ifindex)
            }
            None => self
                .attachments
                .iter()
                .any(|a| a.name == name && a.ifindex == ifindex),
        }
    }

    /// Forgets the attachment to `name` whose interface was deleted: its link is defunct, so
    /// it is dropped and its pin removed; `attach` can then attach to the new interface.
    pub fn release(&mut self, name: &str) -> Result<(), KernelError> {
        self.attachments.retain(|a| a.name != name);
        let (mine, rest) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|(n, _, _)| n == name);
        self.links = rest;
        for (_, program_name, link) in mine {
            // A defunct link may refuse the detach; dropping it is what matters.
            let _ = self.program(program_name)?.detach(link);
        }
        self.pinned_links.retain(|(n, _)| n != name);
        if let Some(dir) = &self.pin_dir {
            let pin = dir.join(format!("link_{name}"));
            if pin.exists() {
                std::fs::remove_file(&pin).map_err(|e| KernelError::Pin {
                    dir: dir.clone(),
                    message: format!("removing {}: {e}", pin.display()),
                })?;
            }
        }
        Ok(())
    }

    /// Detaches everything and removes every pin, so nothing of quid stays in the kernel.
    pub fn unpin_all(&mut self) -> Result<(), KernelError> {
        self.detach_all()?;
        self.pinned_links.clear();
        if let Some(dir) = self.pin_dir.take() {
            remove_pins(&dir)?;
        }
        Ok(())
    }

    /// Undoes a start that failed before counting began. Maps this process created go with
    /// every pin and attachment; maps adopted from an earlier daemon stay, with the links that
    /// daemon pinned (they were counting before this start and keep counting), and only the
    /// links this start pinned are removed. Returns whether anything of an earlier daemon was
    /// kept.
    pub fn abandon_start(&mut self) -> Result<bool, KernelError> {
        if !self.adopted {
            self.unpin_all()?;
            return Ok(false);
        }
        for (name, link) in std::mem::take(&mut self.pinned_links) {
            // Dropping the unpinned link detaches it: it was this link's only reference.
            link.unpin().map_err(|e| KernelError::Pin {
                dir: self.pin_dir.clone().unwrap_or_default(),
                message: format!("removing the link to {name}: {e}"),
            })?;
        }
        Ok(true)
    }

    /// Detaches every program but keeps the maps, so the final counts can still be read.
    pub fn detach_all(&mut self) -> Result<(), KernelError> {
        for (_, program_name, link) in std::mem::take(&mut self.links) {
            self.program(program_name)?
                .detach(link)
                .map_err(|source| KernelError::Program {
                    name: program_name.into(),
                    source,
                })?;
        }
        Ok(())
    }

    /// One of the object's XDP programs by name.
    pub fn program(&mut self, name: &str) -> Result<&mut Xdp, KernelError> {
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| KernelError::Program {
                name: name.into(),
                source: aya::programs::ProgramError::InvalidName { name: name.into() },
            })?
            .try_into()
            .map_err(|source| KernelError::Program {
                name: name.into(),
                source,
            })
    }
}

/// A typed view of one of the object's maps.
pub(crate) fn map<'a, T>(dp: &'a mut Datapath, name: &'static str) -> Result<T, KernelError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let m = dp.ebpf.map_mut(name).ok_or(KernelError::MissingMap(name))?;
    T::try_from(m).map_err(|source| KernelError::Map { name, source })
}
