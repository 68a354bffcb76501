//! The shared tables: pushed whole, numbered by generation, read back by every router.

use super::{SharedError, SharedStore};
use crate::cluster::tables::{SharedTable, digest};

/// A table as the shared store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTable {
    /// Raised by one at every push.
    pub generation: i64,
    pub body: Vec<u8>,
    /// SHA-256 of `body`, hex.
    pub sha256: String,
    /// Who pushed it (a router id) and when (unix seconds).
    pub updated_by: String,
    pub updated_at: i64,
}

impl SharedStore {
    /// Replaces `table` with `body` (already checked); returns its generation.
    pub async fn push_table(
        &self,
        table: SharedTable,
        body: &[u8],
        now: i64,
    ) -> Result<i64, SharedError> {
        let row = self
            .client
            .query_one(
                "INSERT INTO quid_tables (name, generation, body, sha256, updated_at, updated_by)
                 VALUES ($1, 1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO UPDATE SET generation = quid_tables.generation + 1,
                   body = excluded.body, sha256 = excluded.sha256,
                   updated_at = excluded.updated_at, updated_by = excluded.updated_by
                 RETURNING generation",
                &[
                    &table.as_str(),
                    &body,
                    &digest(body),
                    &now,
                    &self.router.as_str(),
                ],
            )
            .await?;
        Ok(row.get(0))
    }

    /// `table` as last pushed, if ever.
    pub async fn table(&self, table: SharedTable) -> Result<Option<StoredTable>, SharedError> {
        let row = self
            .client
            .query_opt(
                "SELECT generation, body, sha256, updated_by, updated_at FROM quid_tables
                 WHERE name = $1",
                &[&table.as_str()],
            )
            .await?;
        Ok(row.map(|r| StoredTable {
            generation: r.get(0),
            body: r.get(1),
            sha256: r.get(2),
            updated_by: r.get(3),
            updated_at: r.get(4),
        }))
    }
}
