//! The subscriber a read command names must be one the store knows: a typo must fail, not
//! print zeros that look like an idle subscriber.

use anyhow::bail;
use quid::{config::Config, store::Store};

/// Fails, naming `id` and how to list the known ones, unless the store knows subscriber `id`
/// or `also_known` (records of its own the command found, such as ledger entries) says so.
pub fn require_subscriber(
    config: &Config,
    store: &Store,
    id: &str,
    also_known: impl FnOnce() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    if store.has_subscriber(id)? || also_known()? {
        return Ok(());
    }
    bail!(
        "unknown subscriber `{}`: the store in {} has no record of it; `quid subscribers` \
         lists the subscribers (`quid balance` every balance)",
        id.escape_debug(),
        config.daemon.state_dir.display()
    )
}
