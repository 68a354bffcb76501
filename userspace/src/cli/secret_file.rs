//! Writing key and token files: always a new file with the mode given, so a key is never
//! overwritten and never readable by more than it should be, even for an instant (the writing
//! itself is `quid_report::key::write_secret`, shared with `quid-node init`).

/// Writes `text` to a new file `path` with `mode` (refusing to overwrite one); returns it
/// open, for the caller to change its group.
pub fn write_secret(
    path: &std::path::Path,
    mode: u32,
    text: &str,
) -> anyhow::Result<std::fs::File> {
    Ok(quid_report::key::write_secret(path, mode, text)?)
}
