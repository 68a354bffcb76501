//! Row counts of the usage tiers, kept in `meta` by the same transactions that add and remove
//! rows: the metrics read them every interval, and a `count(*)` of a year of hourly rows at a
//! million subscribers would scan gigabytes. `quid store stats` counts for real.

use rusqlite::{Connection, OptionalExtension, params};

use super::tiers::Tier;

/// The meta key holding `tier`'s row count.
fn key(tier: Tier) -> String {
    format!("rows_{}", tier.table())
}

/// Starts the count of every tier that has none from what the table holds (idempotent).
pub(super) fn init(conn: &Connection) -> rusqlite::Result<()> {
    for tier in Tier::ALL {
        let have: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key(tier)], |r| {
                r.get(0)
            })
            .optional()?;
        if have.is_none() {
            conn.execute(
                &format!(
                    "INSERT INTO meta (key, value) SELECT ?1, count(*) FROM {}",
                    tier.table()
                ),
                [key(tier)],
            )?;
        }
    }
    Ok(())
}

/// Rows `tier` holds, as counted.
pub(super) fn rows(conn: &Connection, tier: Tier) -> rusqlite::Result<u64> {
    let n: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key(tier)], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
}

/// Adds `delta` rows to `tier`'s count (inside the transaction that added or removed them).
pub(super) fn add(conn: &Connection, tier: Tier, delta: i64) -> rusqlite::Result<()> {
    if delta != 0 {
        conn.execute(
            "UPDATE meta SET value = max(0, value + ?2) WHERE key = ?1",
            params![key(tier), delta],
        )?;
    }
    Ok(())
}

/// Every tier's rows counted for real (`quid store stats`, and tests of the kept counts).
pub(super) fn counted(conn: &Connection, tier: Tier) -> rusqlite::Result<u64> {
    conn.query_row(&format!("SELECT count(*) FROM {}", tier.table()), [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| u64::try_from(n).unwrap_or(0))
}
