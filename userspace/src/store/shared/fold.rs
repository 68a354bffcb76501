//! The fold: shipments are copied into `quid_usage_delta` as they arrive (an append, as fast as
//! COPY goes); every so often one router moves everything there into the hourly rows of
//! `quid_usage_hour`, summed per (subscriber, hour, router), in one statement. Rows are deleted
//! and added in the same transaction, so a reader summing both tables counts each byte once;
//! two routers folding at once cannot both move a row (the second waits on the first's row
//! locks, then skips what it deleted).

use super::{SharedError, SharedStore};
use crate::store::tiers::COUNTERS;

impl SharedStore {
    /// Folds every shipped row into the hourly rows; returns the hourly rows added or updated.
    pub async fn fold(&mut self) -> Result<u64, SharedError> {
        let cols = COUNTERS.join(", ");
        let sums = COUNTERS.map(|c| format!("sum({c})::bigint")).join(", ");
        let set = COUNTERS
            .map(|c| format!("{c} = quid_usage_hour.{c} + excluded.{c}"))
            .join(", ");
        let tx = self.client.transaction().await?;
        let n = tx
            .execute(
                &format!(
                    "WITH moved AS (DELETE FROM quid_usage_delta RETURNING *)
                     INSERT INTO quid_usage_hour (subscriber, start, router, {cols})
                     SELECT subscriber, start, router, {sums} FROM moved
                     GROUP BY subscriber, start, router
                     ON CONFLICT (subscriber, start, router) DO UPDATE SET {set}"
                ),
                &[],
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}
