//! Bringing up the kernel side: load quid's programs or adopt the maps pinned by the last
//! daemon, start the kernel log, install the grid prefixes, and open the books against the
//! counters found there (so counting carries on across a restart).

use anyhow::{Context as _, anyhow};
use log::info;
use tokio::io::unix::AsyncFd;

use crate::{
    clock::Clock,
    config::{Config, KernelLog},
    kernel::loader::Datapath,
    kernel::subscriber_maps::{self as registry, Registry},
    metering::interval::Books,
    store::Store,
};

/// The kernel program's log, read as its ring buffer fills.
pub(super) type KernelLogFd = AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>;

/// The datapath with its books and the registry of installed subscribers.
pub(super) struct Kernel {
    pub dp: Datapath,
    /// The kernel log, unless `kernel_log = "off"`.
    pub log: Option<KernelLogFd>,
    pub books: Books,
    pub registry: Registry,
}

/// Loads (or adopts) the datapath sized for the config and opens the books in `store`.
pub(super) fn open(config: &Config, store: Store, clock: Clock) -> anyhow::Result<Kernel> {
    let sizes = config.subscribers.sizes();
    let mut dp = Datapath::load_pinned(
        sizes,
        config.daemon.kernel_log,
        Some(&config.daemon.pin_dir),
    )?;
    match set_up(config, &mut dp, store, clock) {
        Ok((log, books, registry)) => Ok(Kernel {
            dp,
            log,
            books,
            registry,
        }),
        Err(e) => Err(abandon(&mut dp, e)),
    }
}

/// Undoes what a start that failed with `e` did to the kernel (see
/// [`Datapath::abandon_start`]) and returns `e` saying what was left.
pub(super) fn abandon(dp: &mut Datapath, e: anyhow::Error) -> anyhow::Error {
    match dp.abandon_start() {
        Ok(false) => e.context("quid did not start; nothing is left attached or pinned"),
        Ok(true) => e.context(
            "quid did not start; the maps and links an earlier quid pinned are kept as they were \
             and keep counting (`quid detach` removes them)",
        ),
        Err(undo) => e.context(format!(
            "quid did not start, and undoing the start failed too ({undo}): run `quid detach` \
             with this config to remove what it left attached or pinned"
        )),
    }
}

/// Everything after loading: the kernel log, the grid prefixes, the books and the registry.
fn set_up(
    config: &Config,
    dp: &mut Datapath,
    store: Store,
    clock: Clock,
) -> anyhow::Result<(Option<KernelLogFd>, Books, Registry)> {
    let log = match config.daemon.kernel_log {
        KernelLog::Off => None,
        _ => {
            let logger =
                aya_log::EbpfLogger::init(&mut dp.ebpf).context("kernel log setup failed")?;
            // SAFETY: the logger owns its ring buffer fd, which lives as long as the AsyncFd.
            Some(unsafe { AsyncFd::register(logger) }.map_err(|e| anyhow!("kernel log: {e}"))?)
        }
    };
    crate::kernel::grid_prefixes::install(dp, &config.grid.nets())?;
    let (mut books, adopted) = Books::open(store, dp.meta.instance, dp.adopted, clock)?;
    books.tariff = config.tariff.clone();
    books.period = config.settlement.period;
    let registry = match adopted {
        Some((installed, slots)) => {
            info!(
                "adopted the maps pinned in {} ({} subscribers installed); counting never stopped",
                config.daemon.pin_dir.display(),
                installed.subscribers.len()
            );
            let active = registry::active_generation(dp)?;
            Registry::adopt(
                dp,
                config.subscribers.hash_lengths,
                installed,
                slots,
                active,
            )
        }
        None => Registry::new(config.subscribers.hash_lengths),
    };
    Ok((log, books, registry))
}
