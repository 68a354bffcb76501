//! Each subscriber's plan with the time it came into force (`plan_history`), so a period's
//! usage and contributions are attributed to the plan in force when they happened, not to the
//! subscriber's current plan. A row is written when the installed table gives a subscriber a
//! plan different from its last recorded one (a new subscriber, or a reload that changed it).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{Store, StoreError};

/// The table, keyed by subscriber number then time.
const TABLE: &str = "
CREATE TABLE IF NOT EXISTS plan_history (
    key INTEGER NOT NULL, since INTEGER NOT NULL, plan TEXT NOT NULL,
    PRIMARY KEY (key, since)) WITHOUT ROWID;";

/// The schema version this step brings a store to (`meta` key `plan_history_schema`).
const VERSION: i64 = 1;

/// `since` of the rows a migration writes: the plan was in force before history was kept.
pub const SINCE_ALWAYS: i64 = i64::MIN;

/// Adds `plan_history` to a store that lacks it, each known subscriber's current plan in force
/// since always (nothing older is known); idempotent, called on every open from `schema.rs`.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let fill = format!(
        "{TABLE}
         INSERT OR IGNORE INTO plan_history (key, since, plan)
             SELECT key, {SINCE_ALWAYS}, plan FROM subscribers WHERE key IS NOT NULL;"
    );
    if super::schema::versioned_step(conn, "plan_history_schema", VERSION, &fill)? {
        log::info!("store: plans are kept with the time they came into force (version 1)");
    }
    Ok(())
}

/// Records `plans` ((subscriber key, plan)) as in force from `at`, each only when it differs
/// from the subscriber's last recorded plan (inside an open transaction).
pub(super) fn put(tx: &Transaction<'_>, plans: &[(i64, &str)], at: i64) -> rusqlite::Result<()> {
    let mut last = tx.prepare_cached(
        "SELECT plan FROM plan_history WHERE key = ?1 ORDER BY since DESC LIMIT 1",
    )?;
    let mut put = tx.prepare_cached(
        "INSERT INTO plan_history (key, since, plan) VALUES (?1, ?2, ?3)
         ON CONFLICT(key, since) DO UPDATE SET plan = excluded.plan",
    )?;
    for &(key, plan) in plans {
        let recorded: Option<String> = last.query_row([key], |r| r.get(0)).optional()?;
        if recorded.as_deref() != Some(plan) {
            put.execute(params![key, at, plan])?;
        }
    }
    Ok(())
}

/// One row of the history: subscriber `key` on `plan` (an index into [`PlanHistory::plans`])
/// from `since` (unix seconds) until its next row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanSpan {
    pub key: i64,
    pub since: i64,
    pub plan: u32,
}

/// Every subscriber's plans over time, plan names held once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanHistory {
    /// The plan names, by index.
    pub plans: Vec<String>,
    /// In (key, since) order. A subscriber without rows (a store written by a tool) has one
    /// row of its current plan since always.
    pub spans: Vec<PlanSpan>,
}

impl Store {
    /// The plan history as of now.
    pub fn plan_history(&self) -> Result<PlanHistory, StoreError> {
        read(&self.conn).map_err(|e| self.sql(e))
    }
}

/// The plan history on `conn`.
pub(super) fn read(conn: &Connection) -> rusqlite::Result<PlanHistory> {
    read_keys(conn, i64::MIN, i64::MAX)
}

/// The plan history of the subscribers with keys in `first..=last` on `conn`.
pub(super) fn read_keys(conn: &Connection, first: i64, last: i64) -> rusqlite::Result<PlanHistory> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT key, since, plan FROM plan_history WHERE key BETWEEN ?1 AND ?2
         UNION ALL
         SELECT key, {SINCE_ALWAYS}, plan FROM subscribers s
         WHERE key BETWEEN ?1 AND ?2
           AND NOT EXISTS (SELECT 1 FROM plan_history h WHERE h.key = s.key)
         ORDER BY 1, 2"
    ))?;
    let mut rows = stmt.query([first, last])?;
    let mut history = PlanHistory::default();
    let mut index: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    while let Some(r) = rows.next()? {
        let name: String = r.get(2)?;
        let next = u32::try_from(history.plans.len()).unwrap_or(u32::MAX);
        let plan = *index.entry(name).or_insert_with_key(|name| {
            history.plans.push(name.clone());
            next
        });
        history.spans.push(PlanSpan {
            key: r.get(0)?,
            since: r.get(1)?,
            plan,
        });
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Record;

    fn record(id: &str, plan: &str, key: i64) -> Record {
        Record {
            plan: plan.into(),
            ..Record::fresh(id, key, 0)
        }
    }

    /// A store from before the history: its subscribers' current plans, in force since always;
    /// then a change is recorded once, at its time, and a repeat of the same plan is not.
    #[test]
    fn an_older_store_gets_its_current_plans_and_changes_are_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .commit(
                &[&record("alice", "home", 1), &record("bob", "pro", 2)],
                &[],
            )
            .unwrap();
        store
            .execute_unchecked_for_tests(
                "DROP TABLE plan_history; DELETE FROM meta WHERE key = 'plan_history_schema';",
            )
            .unwrap();
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        let span = |key, since, plan| PlanSpan { key, since, plan };
        let h = store.plan_history().unwrap();
        assert_eq!(h.plans, ["home", "pro"]);
        assert_eq!(
            h.spans,
            [span(1, SINCE_ALWAYS, 0), span(2, SINCE_ALWAYS, 1)]
        );
        let alice = record("alice", "pro", 1);
        for at in [100, 200] {
            store
                .commit_with(
                    &[&alice],
                    &[],
                    &crate::store::Changes {
                        at,
                        plans: &[(1, "pro")],
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        let h = store.plan_history().unwrap();
        assert_eq!(
            h.spans,
            [
                span(1, SINCE_ALWAYS, 0),
                span(1, 100, 1),
                span(2, SINCE_ALWAYS, 1)
            ]
        );
    }
}
