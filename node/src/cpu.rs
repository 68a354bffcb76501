//! CPU given to the grid: the `usage_usec` line of a cgroup v2 `cpu.stat` (a systemd slice
//! such as `/sys/fs/cgroup/grid.slice`, or `/sys/fs/cgroup/unified/...` on a hybrid host),
//! in core-microseconds, with the cgroup directory's inode as identity: a cgroup removed and
//! created again gets a new inode and a counter that starts from 0.

use std::{os::unix::fs::MetadataExt as _, path::Path};

use crate::counter::Raw;

/// Why `cpu.stat` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// The cgroup or its `cpu.stat` is not there (the workload is not running yet).
    #[error(
        "cannot read {path}: {source} (is the grid workload's cgroup there? check [cpu] cgroup)"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file has no readable `usage_usec` line.
    #[error("{path} has no `usage_usec <integer>` line: is this a cgroup v2 directory?")]
    Format { path: String },
}

/// Reads `usage_usec` of the cgroup at `cgroup` (its directory).
pub fn read(cgroup: &Path) -> Result<Raw, CpuError> {
    let path = cgroup.join("cpu.stat");
    let err = |source| CpuError::Read {
        path: path.display().to_string(),
        source,
    };
    let identity = std::fs::metadata(cgroup).map_err(err)?.ino();
    let text = std::fs::read_to_string(&path).map_err(err)?;
    let value = parse_usage_usec(&text).ok_or_else(|| CpuError::Format {
        path: path.display().to_string(),
    })?;
    Ok(Raw { value, identity })
}

/// The `usage_usec` figure of a `cpu.stat` text.
pub fn parse_usage_usec(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_usec_is_read_from_cpu_stat_and_a_bad_file_is_named() {
        let text = "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n";
        assert_eq!(parse_usage_usec(text), Some(1_234_567));
        assert_eq!(parse_usage_usec("user_usec 5\n"), None);
        assert_eq!(parse_usage_usec("usage_usec -5\n"), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cpu.stat"), "nothing\n").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("usage_usec"), "{err}");
        let err = read(&dir.path().join("gone")).unwrap_err().to_string();
        assert!(err.contains("[cpu] cgroup"), "{err}");
    }
}
