//! Writing key and token files: always a new file with the mode given, so a key is never
//! overwritten and never readable by more than it should be, even for an instant.

use anyhow::Context as _;

/// Writes `text` to a new file `path` with `mode` (refusing to overwrite one); returns it
/// open, for the caller to change its group.
pub fn write_secret(
    path: &std::path::Path,
    mode: u32,
    text: &str,
) -> anyhow::Result<std::fs::File> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    writeln!(f, "{text}")?;
    Ok(f)
}
