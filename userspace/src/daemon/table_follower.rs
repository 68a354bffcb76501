//! With `[store] tables = "shared"`, each router writes the tables pushed to the shared store
//! into its configured files, where its reload picks them up like an edit: a change pushed once
//! reaches every router. A pushed table is checked again before it is written (the database is
//! not trusted to hold only what `quid cluster push-table` checked), and written by rename, so
//! a reload never reads half a file.

use std::{collections::HashMap, io::Write as _, path::PathBuf};

use log::{error, info};

use crate::{
    cluster::tables::{SharedTable, digest},
    store::shared::{SharedError, SharedStore},
    subscribers::table_file::Format,
};

/// The shared tables this router follows, and where it writes them.
pub(super) struct TableFollower {
    files: Vec<(SharedTable, PathBuf)>,
    /// How this router's subscriber table is laid out (`[subscribers] format`).
    format: Format,
    /// The generation of each table last refused (said once).
    refused: HashMap<&'static str, i64>,
}

impl TableFollower {
    /// Follows `files` (none: the router keeps its own files), the subscriber table laid out
    /// as `format`.
    pub fn new(files: Vec<(SharedTable, PathBuf)>, format: Format) -> TableFollower {
        TableFollower {
            files,
            format,
            refused: HashMap::new(),
        }
    }

    /// Writes every table whose pushed bytes differ from its file's.
    pub async fn follow(&mut self, shared: &SharedStore) -> Result<(), SharedError> {
        for (table, path) in &self.files {
            let Some(t) = shared.table(*table).await? else {
                continue;
            };
            let local = std::fs::read(path).unwrap_or_default();
            if digest(&local) == t.sha256 {
                continue;
            }
            if let Err(e) = table.check(&t.body, path, &self.format) {
                if self.refused.insert(table.as_str(), t.generation) != Some(t.generation) {
                    error!(
                        "the shared {} table, generation {}, is refused (this router keeps its \
                         current one): {e}",
                        table.as_str(),
                        t.generation
                    );
                }
                continue;
            }
            match write_by_rename(path, &t.body) {
                Ok(()) => info!(
                    "wrote the shared {} table, generation {} (pushed by {}), to {}",
                    table.as_str(),
                    t.generation,
                    t.updated_by,
                    path.display()
                ),
                Err(e) => error!(
                    "cannot write the shared {} table to {}: {e}",
                    table.as_str(),
                    path.display()
                ),
            }
        }
        Ok(())
    }
}

/// Writes `body` to a temporary file beside `path`, syncs it, and renames it over `path`.
fn write_by_rename(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".shared-tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
