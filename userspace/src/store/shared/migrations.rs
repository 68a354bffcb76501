//! The shared store's schema, versioned: each version is applied once, in its own
//! transaction, and recorded in `quid_schema`. PostgreSQL's DDL is transactional, so two
//! routers starting at once cannot both apply a version: the second fails on the record and
//! retries, and then finds it applied.

use tokio_postgres::Client;

use super::SharedError;

/// Every version's SQL, in order (version n is `MIGRATIONS[n - 1]`). A row's counters are one
/// hour of one subscriber on one router (BIGINT); sums over rows are NUMERIC in PostgreSQL,
/// so a subscriber's total over routers and hours never overflows. Shipments are copied into
/// `quid_usage_delta` (append only, no index: as fast as COPY goes) and folded into
/// `quid_usage_hour` in bulk.
const MIGRATIONS: [&str; 3] = [
    // 1: routers and their shipping cursors, usage per (subscriber, hour, router) and the
    // shipments not folded into it yet, reports
    // once per (node, seq) with every router's copy.
    "
CREATE TABLE quid_routers (
    router TEXT PRIMARY KEY,
    store_identity BIGINT NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    reports_cursor BIGINT NOT NULL DEFAULT 0,
    covered_until BIGINT NOT NULL DEFAULT 0,
    shipped_at BIGINT NOT NULL DEFAULT 0,
    batches BIGINT NOT NULL DEFAULT 0,
    usage_rows BIGINT NOT NULL DEFAULT 0);
CREATE TABLE quid_usage_hour (
    subscriber TEXT NOT NULL, start BIGINT NOT NULL, router TEXT NOT NULL,
    up_packets BIGINT NOT NULL, up_bytes BIGINT NOT NULL,
    up_grid_packets BIGINT NOT NULL, up_grid_bytes BIGINT NOT NULL,
    down_packets BIGINT NOT NULL, down_bytes BIGINT NOT NULL,
    down_grid_packets BIGINT NOT NULL, down_grid_bytes BIGINT NOT NULL,
    PRIMARY KEY (subscriber, start, router));
CREATE TABLE quid_usage_delta (
    router TEXT NOT NULL, subscriber TEXT NOT NULL, start BIGINT NOT NULL,
    up_packets BIGINT NOT NULL, up_bytes BIGINT NOT NULL,
    up_grid_packets BIGINT NOT NULL, up_grid_bytes BIGINT NOT NULL,
    down_packets BIGINT NOT NULL, down_bytes BIGINT NOT NULL,
    down_grid_packets BIGINT NOT NULL, down_grid_bytes BIGINT NOT NULL);
CREATE TABLE quid_reports (
    node TEXT NOT NULL, seq BIGINT NOT NULL, subscriber TEXT NOT NULL,
    period_start BIGINT NOT NULL, period_end BIGINT NOT NULL,
    cpu_core_micros BIGINT NOT NULL, storage_byte_seconds BIGINT NOT NULL,
    energy_microjoules BIGINT NOT NULL,
    grid_bytes_sent BIGINT NOT NULL, grid_bytes_received BIGINT NOT NULL,
    signature TEXT NOT NULL, received_at BIGINT NOT NULL, router TEXT NOT NULL,
    PRIMARY KEY (node, seq));
CREATE TABLE quid_report_copies (
    node TEXT NOT NULL, seq BIGINT NOT NULL, router TEXT NOT NULL,
    signature TEXT NOT NULL, received_at BIGINT NOT NULL,
    PRIMARY KEY (node, seq, router));
",
    // 2: the tables every router applies alike (`[store] tables = \"shared\"`).
    "
CREATE TABLE quid_tables (
    name TEXT PRIMARY KEY, generation BIGINT NOT NULL, body BYTEA NOT NULL,
    sha256 TEXT NOT NULL, updated_at BIGINT NOT NULL, updated_by TEXT NOT NULL);
",
    // 3: the energy source a version-3 report signs (NULL for older reports).
    "ALTER TABLE quid_reports ADD COLUMN energy_source TEXT;",
];

/// The newest schema version this quid knows (the number of migrations; a test checks it).
pub const VERSION: i32 = 3;

/// Applies every version the database lacks; refuses a database newer than this quid.
pub(super) async fn bring_up_to_date(client: &mut Client) -> Result<(), SharedError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS quid_schema (
                version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    let found: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM quid_schema", &[])
        .await?
        .get(0);
    if found > VERSION {
        return Err(SharedError::Newer {
            found,
            known: VERSION,
        });
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS.iter())
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO quid_schema (version) VALUES ($1)", &[&version])
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_counts_the_migrations() {
        assert_eq!(
            usize::try_from(super::VERSION).unwrap(),
            super::MIGRATIONS.len()
        );
    }
}
