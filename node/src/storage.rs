//! Storage given to the grid: a reservation file in the contributed directory, allocated with
//! fallocate so the blocks are really taken from the filesystem (a sparse file or a number in
//! a config file would claim space the device does not give). Credit is for the bytes the
//! filesystem reports allocated when a period closes, never more than the reservation.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use nix::fcntl::{FallocateFlags, fallocate};

/// The reservation's file name inside the contributed directory.
pub const RESERVATION: &str = "quid-reservation";

/// Why the reservation could not be made or checked.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The directory or file cannot be created or read.
    #[error("cannot use {path}: {message} (check [storage] dir and its permissions)")]
    Io { path: String, message: String },
    /// The filesystem has not the room asked for.
    #[error(
        "cannot reserve {bytes} bytes in {path}: {message} (free space, or lower [storage] reserve_bytes)"
    )]
    Allocate {
        path: String,
        bytes: u64,
        message: String,
    },
}

/// Creates `dir` if needed and allocates `bytes` in its reservation file.
pub fn reserve(dir: &Path, bytes: u64) -> Result<(), StorageError> {
    let path = dir.join(RESERVATION);
    let io = |e: std::io::Error| StorageError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    let alloc = |message: String| StorageError::Allocate {
        path: path.display().to_string(),
        bytes,
        message,
    };
    let len = i64::try_from(bytes).map_err(|_| alloc("larger than a file can be".to_owned()))?;
    fallocate(&file, FallocateFlags::empty(), 0, len).map_err(|e| alloc(e.to_string()))?;
    file.sync_all().map_err(io)
}

/// The bytes of the reservation the filesystem has allocated, at most `bytes`; 0 when the
/// file is gone (a deleted reservation earns nothing).
pub fn allocated(dir: &Path, bytes: u64) -> u64 {
    std::fs::metadata(dir.join(RESERVATION))
        .map(|m| m.blocks().saturating_mul(512).min(m.len()).min(bytes))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_is_allocated_not_sparse_and_a_deleted_one_earns_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let grid = dir.path().join("grid");
        reserve(&grid, 8 << 20).unwrap();
        assert_eq!(allocated(&grid, 8 << 20), 8 << 20);
        // A sparse file of the same length is not a reservation.
        let f = std::fs::File::create(grid.join(RESERVATION)).unwrap();
        f.set_len(8 << 20).unwrap();
        assert_eq!(allocated(&grid, 8 << 20), 0);
        std::fs::remove_file(grid.join(RESERVATION)).unwrap();
        assert_eq!(allocated(&grid, 8 << 20), 0);
    }
}
