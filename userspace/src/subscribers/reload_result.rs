//! The outcome of the last table reload (`STATE_DIR/reload.json`), which `quid subscribers
//! reload` waits for after it sends the daemon SIGHUP.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::kernel::subscriber_maps::Change;

/// File name of the reload result inside the state directory.
pub const FILE: &str = "reload.json";

/// One reload: what changed, or every reason it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResult {
    /// Counts reloads since the daemon started.
    pub seq: u64,
    pub at_unix: u64,
    pub ok: bool,
    /// Every bad line (or the reason the change could not be installed).
    pub errors: Vec<String>,
    pub change: Change,
}

impl ReloadResult {
    /// Writes the result atomically.
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        let tmp = state_dir.join(format!(".{FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, state_dir.join(FILE))
    }

    /// The last reload's result, if any.
    pub fn read(state_dir: &Path) -> Option<ReloadResult> {
        serde_json::from_slice(&std::fs::read(state_dir.join(FILE)).ok()?).ok()
    }
}
