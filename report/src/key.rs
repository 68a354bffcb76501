//! The node's key file: 64 hex digits of an ed25519 secret, written once with a mode that
//! never lets more than its owner read it, even for an instant.

use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _, path::Path};

use ed25519_dalek::SigningKey;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read.
    #[error("cannot read the node key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file holds something else than 64 hex digits.
    #[error("{path} is not a node key (64 hex digits)")]
    Format { path: String },
    /// The file cannot be created (it exists, or the folder is missing or read-only).
    #[error("cannot create {path} (it must not exist yet): {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
}

/// Reads a secret key written by `quid node keygen` or `quid-node init`.
pub fn read_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| KeyError::Format {
            path: path.display().to_string(),
        })?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Writes `text` and a newline to a new file `path` with `mode` (refusing to overwrite one),
/// synced to disk; returns it open, for the caller to change its group.
pub fn write_secret(path: &Path, mode: u32, text: &str) -> Result<std::fs::File, KeyError> {
    let create = |source| KeyError::Create {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(create)?;
    writeln!(f, "{text}").map_err(create)?;
    f.sync_all().map_err(create)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_key_reads_back_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let key = crate::report::keygen().unwrap();
        write_secret(&path, 0o600, &hex::encode(key.to_bytes())).unwrap();
        assert_eq!(read_key(&path).unwrap().to_bytes(), key.to_bytes());
        assert!(matches!(
            write_secret(&path, 0o600, "x"),
            Err(KeyError::Create { .. })
        ));
        std::fs::write(dir.path().join("bad"), "abc").unwrap();
        assert!(matches!(
            read_key(&dir.path().join("bad")),
            Err(KeyError::Format { .. })
        ));
    }
}
