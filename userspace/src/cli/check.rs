//! `quid check`: everything `quid run` would refuse before touching the kernel, without it,
//! and whether this host's interfaces can carry the programs (asked, never attached).

use std::path::Path;

use anyhow::bail;
use quid::{
    config::Config,
    daemon::preflight::preflight,
    kernel::{attach_settings::XdpModeSetting, link_type::Framing, xdp_features},
};

/// Checks the config at `path` and says what it holds; unless `files_only`, also that each
/// configured interface exists here and can carry XDP, and what `xdp_mode` would attach.
pub fn check(path: &Path, files_only: bool) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    // Everything `quid run` would refuse before touching the kernel.
    let table = preflight(&cfg)?.table;
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    if !files_only {
        for iface in &cfg.interfaces {
            let name = &iface.name.get_ref().0;
            let mode = iface.xdp_mode;
            match xdp_features::probe(name) {
                Err(e) => errors.push(e.to_string()),
                Ok(c) if c.framing == Framing::Ip => match mode {
                    XdpModeSetting::Native => errors.push(format!(
                        "interface `{name}`: it has no Ethernet header (tun, ppp, WireGuard), \
                         which runs XDP only in generic mode, so xdp_mode = \"native\" is \
                         refused; use \"auto\" or \"generic\""
                    )),
                    _ => lines.push(format!(
                        "  {name}: ifindex {}, no Ethernet header: the IP programs attach \
                         generic (links without Ethernet run XDP only there)",
                        c.ifindex
                    )),
                },
                Ok(c) => match (mode, c.native) {
                    (XdpModeSetting::Native, Some(false)) => errors.push(format!(
                        "interface `{name}`: its driver has no native XDP, so xdp_mode = \
                         \"native\" would fail; use \"auto\" or \"generic\""
                    )),
                    (XdpModeSetting::Generic, _) => lines.push(format!(
                        "  {name}: ifindex {}, xdp_mode generic: attaches generic",
                        c.ifindex
                    )),
                    (_, native) => lines.push(format!(
                        "  {name}: ifindex {}, xdp_mode {}: {}",
                        c.ifindex,
                        if mode == XdpModeSetting::Auto {
                            "auto"
                        } else {
                            "native"
                        },
                        match native {
                            Some(true) => "the driver runs XDP natively; attaches native",
                            Some(false) =>
                                "no native XDP in the driver; auto attaches generic (slower, \
                                 counts the same)",
                            None =>
                                "the kernel does not say whether the driver runs XDP natively; \
                                 tries native, then (auto only) generic",
                        }
                    )),
                },
            }
        }
    }
    if !errors.is_empty() {
        bail!(
            "{}: {}\n(`quid check --files-only` checks a config meant for another host)",
            path.display(),
            errors.join("\n  ")
        );
    }
    let (v4, v6) = table.prefix_counts();
    println!(
        "{}: ok; {} subscribers, {v4} IPv4 and {v6} IPv6 prefixes, {} interfaces{}",
        path.display(),
        table.subscribers.len(),
        cfg.interfaces.len(),
        if files_only {
            " (not checked on this host)"
        } else {
            ""
        }
    );
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
