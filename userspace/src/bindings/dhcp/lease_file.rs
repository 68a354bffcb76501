//! Following one Kea memfile lease file as Kea writes it: a line appended per lease change
//! (the newest line of an address wins), and at lease file cleanup (LFC) the file moved aside
//! to `NAME.2` and a fresh one started, while `kea-lfc` merges `NAME.1` and `NAME.2` into
//! `NAME.completed`, then `NAME.1`. When the followed file is replaced or shrinks, the whole
//! state is read again the way Kea loads it at start: `NAME.completed`, else `NAME.1` then
//! `NAME.2`, then `NAME`. Only complete lines are read; a line still being written waits for
//! its newline.

use std::{
    collections::HashMap,
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::lease::{Header, Lease};

/// A line longer than this is no Kea lease line: it is skipped up to its newline.
const MAX_LINE: usize = 64 * 1024;

/// A line that could not be read, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub path: PathBuf,
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// How far one file has been read.
#[derive(Debug, Default)]
struct Cursor {
    header: Option<Header>,
    /// Lines read so far (the number of the last complete line).
    line: u64,
    /// Inside a line too long to keep: skip to its end.
    skipping: bool,
}

/// The followed file: which file it is and the byte after its last complete line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    dev: u64,
    ino: u64,
    offset: u64,
}

/// One lease file followed live.
#[derive(Debug)]
pub struct LeaseFile {
    path: PathBuf,
    position: Option<Position>,
    cursor: Cursor,
    loaded: bool,
    /// Every lease by its key, as the newest line says.
    pub leases: HashMap<String, Lease>,
}

impl LeaseFile {
    /// A file to follow; nothing is read before the first [`LeaseFile::poll`].
    pub fn new(path: &Path) -> LeaseFile {
        LeaseFile {
            path: path.to_owned(),
            position: None,
            cursor: Cursor::default(),
            loaded: false,
            leases: HashMap::new(),
        }
    }

    /// Reads what was written since the last poll (everything again after a cleanup);
    /// returns the lines it could not read. Whether the leases changed is for the caller to
    /// see: a poll that read nothing changes nothing.
    pub fn poll(&mut self) -> std::io::Result<Vec<BadLine>> {
        let mut bad = Vec::new();
        let file = match File::open(&self.path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let meta = file.as_ref().map(File::metadata).transpose()?;
        let replaced = match (&meta, self.position) {
            (Some(m), Some(p)) => m.ino() != p.ino || m.dev() != p.dev || m.len() < p.offset,
            (Some(_), None) => true,
            (None, Some(_)) => true,
            (None, None) => !self.loaded,
        };
        if replaced {
            self.reload_all(&mut bad)?;
        }
        if let (Some(mut file), Some(meta)) = (file, meta) {
            let offset = self.position.filter(|_| !replaced).map_or(0, |p| p.offset);
            file.seek(SeekFrom::Start(offset))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            let used = ingest(
                &bytes,
                &self.path,
                &mut self.cursor,
                &mut self.leases,
                &mut bad,
            );
            self.position = Some(Position {
                dev: meta.dev(),
                ino: meta.ino(),
                offset: offset + used as u64,
            });
        } else {
            self.position = None;
        }
        Ok(bad)
    }

    /// Forgets every lease and reads the files of the last cleanup again (the followed file
    /// itself is read by the caller, from its start).
    fn reload_all(&mut self, bad: &mut Vec<BadLine>) -> std::io::Result<()> {
        self.loaded = true;
        self.cursor = Cursor::default();
        // kea-lfc may move its files while they are read: read again until they held still.
        for _ in 0..3 {
            let before = self.cleanup_files();
            self.leases.clear();
            bad.clear();
            for path in self.cleanup_files().iter().flat_map(|(p, _)| p) {
                match std::fs::read(path) {
                    Ok(bytes) => {
                        let mut cursor = Cursor::default();
                        ingest(&bytes, path, &mut cursor, &mut self.leases, bad);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            if self.cleanup_files() == before {
                break;
            }
        }
        Ok(())
    }

    /// The files of the last cleanup that Kea would load, in its order, with their inodes.
    fn cleanup_files(&self) -> Vec<(Option<PathBuf>, u64)> {
        let with = |suffix: &str| {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let p = PathBuf::from(p);
            let ino = std::fs::metadata(&p).map(|m| m.ino()).ok();
            ino.map(|i| (Some(p), i))
        };
        match with(".completed") {
            Some(done) => vec![done],
            None => [with(".1"), with(".2")].into_iter().flatten().collect(),
        }
    }
}

/// Reads the complete lines of `bytes` into `leases`; returns the bytes used (up to the last
/// newline, or past a line too long to keep).
fn ingest(
    bytes: &[u8],
    path: &Path,
    cursor: &mut Cursor,
    leases: &mut HashMap<String, Lease>,
    bad: &mut Vec<BadLine>,
) -> usize {
    let mut used = 0;
    while used < bytes.len() {
        let rest = &bytes[used..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_LINE && !cursor.skipping {
                cursor.skipping = true;
                bad.push(BadLine {
                    path: path.to_owned(),
                    line: cursor.line + 1,
                    message: format!("a line longer than {MAX_LINE} bytes; skipped"),
                });
                used = bytes.len();
            }
            break;
        };
        used += end + 1;
        cursor.line += 1;
        if std::mem::take(&mut cursor.skipping) {
            continue;
        }
        let line = &rest[..end];
        let mut report = |message: String| {
            bad.push(BadLine {
                path: path.to_owned(),
                line: cursor.line,
                message,
            })
        };
        let Ok(line) = std::str::from_utf8(line) else {
            report("not UTF-8".into());
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        match &cursor.header {
            None => match Header::parse(line) {
                Ok(h) => cursor.header = Some(h),
                Err(m) => report(m),
            },
            Some(h) => match h.lease(line) {
                Ok(lease) => {
                    leases.insert(lease.key(), lease);
                }
                Err(m) => report(m),
            },
        }
    }
    used
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::io::Write;

    pub(in crate::bindings::dhcp) const HEADER: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n";

    fn line(addr: &str, valid: u32, expire: u64, state: u8) -> String {
        format!("{addr},aa:bb:cc:00:00:01,,{valid},{expire},1,0,0,,{state},\n")
    }

    /// Appends `text` to the file at `path` (created if missing), as Kea does.
    pub(in crate::bindings::dhcp) fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn keys(f: &LeaseFile) -> Vec<(String, u64)> {
        let mut k: Vec<(String, u64)> = f
            .leases
            .iter()
            .map(|(k, l)| (k.clone(), l.expire))
            .collect();
        k.sort();
        k
    }

    #[test]
    fn appended_lines_are_read_as_they_come_and_a_partial_line_waits_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases4.csv");
        let mut f = LeaseFile::new(&path);
        assert!(f.poll().unwrap().is_empty(), "no file yet: nothing");
        append(&path, HEADER);
        append(&path, &line("192.0.2.10", 4, 100, 0));
        let half = line("192.0.2.11", 4, 200, 0);
        append(&path, &half[..12]);
        assert!(f.poll().unwrap().is_empty());
        assert_eq!(keys(&f), [("192.0.2.10".into(), 100)]);
        append(&path, &half[12..]);
        // A renewal: the newest line of an address wins.
        append(&path, &line("192.0.2.10", 4, 104, 0));
        append(&path, "192.0.2.99,broken\n");
        let bad = f.poll().unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(
            bad[0].to_string(),
            format!("{}:5: 2 fields, the header has 11", path.display())
        );
        assert_eq!(
            keys(&f),
            [("192.0.2.10".into(), 104), ("192.0.2.11".into(), 200)]
        );
    }

    #[test]
    fn a_cleanup_that_replaces_the_file_is_read_the_way_kea_loads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases4.csv");
        append(&path, HEADER);
        append(&path, &line("192.0.2.10", 4, 100, 0));
        append(&path, &line("192.0.2.11", 4, 100, 0));
        let mut f = LeaseFile::new(&path);
        f.poll().unwrap();
        assert_eq!(f.leases.len(), 2);
        // Kea moves the file to .2 and starts a new one, which gets a renewal of .11.
        std::fs::rename(&path, dir.path().join("leases4.csv.2")).unwrap();
        append(&path, HEADER);
        append(&path, &line("192.0.2.11", 4, 300, 0));
        f.poll().unwrap();
        assert_eq!(
            keys(&f),
            [("192.0.2.10".into(), 100), ("192.0.2.11".into(), 300)]
        );
        // kea-lfc's result replaces .1 and .2 (here: .completed, the step before its rename).
        let completed = dir.path().join("leases4.csv.completed");
        std::fs::write(
            &completed,
            format!("{HEADER}{}", line("192.0.2.11", 4, 100, 0)),
        )
        .unwrap();
        std::fs::remove_file(dir.path().join("leases4.csv.2")).unwrap();
        // The live file is rewritten shorter than it was read (a new file in its place).
        std::fs::remove_file(&path).unwrap();
        append(&path, HEADER);
        f.poll().unwrap();
        assert_eq!(keys(&f), [("192.0.2.11".into(), 100)]);
        // The followed file gone: what the cleanup files hold stays.
        std::fs::remove_file(&path).unwrap();
        f.poll().unwrap();
        assert_eq!(keys(&f), [("192.0.2.11".into(), 100)]);
    }

    #[test]
    fn an_endless_line_is_skipped_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases4.csv");
        append(&path, HEADER);
        append(&path, &"9".repeat(MAX_LINE + 1));
        let mut f = LeaseFile::new(&path);
        let bad = f.poll().unwrap();
        assert_eq!(bad.len(), 1, "{bad:?}");
        append(&path, &format!("999\n{}", line("192.0.2.10", 4, 100, 0)));
        assert!(f.poll().unwrap().is_empty());
        assert_eq!(keys(&f), [("192.0.2.10".into(), 100)]);
    }
}
