//! The router's fill inside the reservation, and the node's answers to its audits: chunk `i`
//! lives at byte `i * CHUNK_BYTES` of the reservation file, so the fill takes the space the
//! reservation already holds and an audit reads exactly the blocks it names.

use std::{
    fs::File,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

use quid_report::audit::{Answer, CHUNK_BYTES, Challenge, proof};

use crate::storage::RESERVATION;

/// Why a chunk could not be stored or an audit answered.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    /// The reservation file cannot be opened, read or written.
    #[error("cannot use the reservation {path}: {message} (run `quid-node init` to make it)")]
    Io { path: String, message: String },
    /// A chunk the router sent does not fit the reservation.
    #[error(
        "chunk {index} does not fit a reservation of {chunks} chunks (the router's fill is larger than [storage] reserve_bytes)"
    )]
    OutOfRange { index: u64, chunks: u64 },
    /// A chunk is not [`CHUNK_BYTES`] long.
    #[error("a chunk is {0} bytes, not {CHUNK_BYTES}: refusing to store a truncated fill")]
    ChunkSize(usize),
    /// A challenge names a chunk the reservation cannot hold.
    #[error("the challenge names chunk {index}, beyond the reservation's {chunks} chunks")]
    NotHeld { index: u64, chunks: u64 },
    /// A challenge's nonce is not 32 bytes of hex.
    #[error("the challenge's nonce is not 64 hex digits")]
    Nonce,
}

/// The reservation file, as a store of fill chunks.
#[derive(Debug)]
pub struct Fill {
    file: File,
    path: PathBuf,
    chunks: u64,
}

impl Fill {
    /// Opens the reservation in `dir` (made by `storage::reserve`) for the fill.
    pub fn open(dir: &Path) -> Result<Fill, FillError> {
        let path = dir.join(RESERVATION);
        let io = |e: std::io::Error| FillError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(Fill {
            file,
            chunks: len / CHUNK_BYTES as u64,
            path,
        })
    }

    /// How many chunks the reservation holds.
    pub fn capacity(&self) -> u64 {
        self.chunks
    }

    fn io(&self, e: std::io::Error) -> FillError {
        FillError::Io {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Stores chunk `index` as the router sent it (not yet synced: see [`Fill::sync`]).
    pub fn write(&self, index: u64, chunk: &[u8]) -> Result<(), FillError> {
        if chunk.len() != CHUNK_BYTES {
            return Err(FillError::ChunkSize(chunk.len()));
        }
        if index >= self.chunks {
            return Err(FillError::OutOfRange {
                index,
                chunks: self.chunks,
            });
        }
        self.file
            .write_all_at(chunk, index * CHUNK_BYTES as u64)
            .map_err(|e| self.io(e))
    }

    /// Flushes stored chunks to the disk, before the node tells the router it holds them.
    pub fn sync(&self) -> Result<(), FillError> {
        self.file.sync_data().map_err(|e| self.io(e))
    }

    /// Chunk `index` as stored.
    pub fn read(&self, index: u64) -> Result<Vec<u8>, FillError> {
        if index >= self.chunks {
            return Err(FillError::NotHeld {
                index,
                chunks: self.chunks,
            });
        }
        let mut chunk = vec![0u8; CHUNK_BYTES];
        self.file
            .read_exact_at(&mut chunk, index * CHUNK_BYTES as u64)
            .map_err(|e| self.io(e))?;
        Ok(chunk)
    }

    /// The answer to `challenge` from the chunks as stored.
    pub fn answer(&self, challenge: &Challenge) -> Result<Answer, FillError> {
        let nonce = challenge.nonce_bytes().ok_or(FillError::Nonce)?;
        let proofs = challenge
            .chunks
            .iter()
            .map(|&i| Ok(hex::encode(proof(&nonce, &self.read(i)?))))
            .collect::<Result<_, FillError>>()?;
        Ok(Answer {
            nonce: challenge.nonce.clone(),
            proofs,
        })
    }
}
