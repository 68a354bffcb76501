//! The configured interfaces: attach to each at start (detaching from ones no longer
//! configured), then follow them while running: one deleted and created again (a new ifindex)
//! is re-attached, one that disappears is said once.

use log::{error, info, warn};

use super::state::State;

impl State<'_> {
    /// Detaches from interfaces no longer in the config and attaches to every configured one.
    pub fn attach_configured(&mut self) -> anyhow::Result<()> {
        let names: Vec<String> = self
            .config
            .interfaces
            .iter()
            .map(|i| i.name.get_ref().0.clone())
            .collect();
        for gone in self.dp.drop_stale_links(&names)? {
            info!("detached from {gone}: no longer in the config");
        }
        for iface in &self.config.interfaces {
            let a = self
                .dp
                .attach(&iface.name.get_ref().0, iface.role, iface.xdp_mode)?;
            info!(
                "attached to {} (ifindex {}) as {} in {} mode, {} framing",
                a.name,
                a.ifindex,
                a.role,
                a.mode,
                a.framing.name()
            );
        }
        Ok(())
    }

    /// Re-attaches to configured interfaces that were deleted and created again (a new
    /// ifindex), and says when one disappears. Subscriber counts carry on; the interface's
    /// own buckets start again from zero, as they belong to the new ifindex.
    pub fn follow_interfaces(&mut self) {
        for iface in &self.config.interfaces {
            let name = &iface.name.get_ref().0;
            let now = nix::net::if_::if_nametoindex(name.as_str()).ok();
            let was = self
                .dp
                .attachments
                .iter()
                .find(|a| &a.name == name)
                .map(|a| a.ifindex);
            match (was, now) {
                (Some(old), Some(new)) if old == new && self.dp.attached_to(name, new) => {
                    self.missing.remove(name);
                }
                (_, None) => {
                    if self.missing.insert(name.clone()) {
                        warn!("{name} disappeared: nothing is counted on it until it is back");
                    }
                }
                (_, Some(new)) => {
                    let attached = self
                        .dp
                        .release(name)
                        .and_then(|()| self.dp.attach(name, iface.role, iface.xdp_mode).cloned());
                    match attached {
                        Ok(a) => {
                            self.missing.remove(name);
                            self.status.reattachments += 1;
                            info!(
                                "{name} is back (ifindex {new}): re-attached in {} mode, {} \
                                 framing",
                                a.mode,
                                a.framing.name()
                            );
                        }
                        Err(e) => {
                            error!("{name} is back but re-attaching failed (will retry): {e}")
                        }
                    }
                }
            }
        }
    }
}
