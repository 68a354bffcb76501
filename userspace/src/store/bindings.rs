//! The live bindings (RADIUS sessions, DHCP leases) as the daemon last installed them, so a
//! restarted daemon counts a dynamic address for its subscriber at once instead of booking it
//! `unknown` until the NAS's next Interim-Update.

use ipnet::IpNet;
use rusqlite::params;

use super::{Store, StoreError};
use crate::bindings::request::{BindingSource, SessionKey};

/// The table (created at every open; empty unless a binding source runs).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS live_bindings (
    source TEXT NOT NULL, session TEXT NOT NULL, subscriber TEXT NOT NULL,
    prefixes TEXT NOT NULL, PRIMARY KEY (source, session));";

/// One live session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub session: SessionKey,
    pub subscriber: String,
    pub prefixes: Vec<IpNet>,
}

fn source_of(text: &str) -> Option<BindingSource> {
    BindingSource::ALL.into_iter().find(|s| s.as_str() == text)
}

/// Writes sessions that began or changed, and drops those that ended, inside `tx`.
pub(super) fn put(
    tx: &rusqlite::Transaction<'_>,
    changed: &[StoredSession],
    ended: &[SessionKey],
) -> rusqlite::Result<()> {
    for s in changed {
        let prefixes: Vec<String> = s.prefixes.iter().map(ToString::to_string).collect();
        tx.execute(
            "INSERT INTO live_bindings (source, session, subscriber, prefixes)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, session)
             DO UPDATE SET subscriber = excluded.subscriber, prefixes = excluded.prefixes",
            params![
                s.session.source.as_str(),
                s.session.id,
                s.subscriber,
                prefixes.join(" ")
            ],
        )?;
    }
    for k in ended {
        tx.execute(
            "DELETE FROM live_bindings WHERE source = ?1 AND session = ?2",
            params![k.source.as_str(), k.id],
        )?;
    }
    Ok(())
}

impl Store {
    /// Writes sessions that began or changed, and drops those that ended, in one transaction.
    pub fn put_bindings(
        &mut self,
        changed: &[StoredSession],
        ended: &[SessionKey],
    ) -> Result<(), StoreError> {
        self.commit_with(
            &[],
            &[],
            &super::Changes {
                sessions: changed,
                sessions_ended: ended,
                ..Default::default()
            },
        )
    }

    /// The stored sessions. A row this quid cannot read (another version's source, a
    /// damaged prefix) is reported, not guessed at.
    pub fn live_bindings(&self) -> Result<Vec<StoredSession>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT source, session, subscriber, prefixes FROM live_bindings ORDER BY 1, 2",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| self.sql(e))?;
        rows.into_iter()
            .map(|(source, id, subscriber, prefixes)| {
                let corrupt = |what: &str| StoreError::Corrupt {
                    path: self.path.clone(),
                    detail: format!("live binding `{source}/{id}`: {what}"),
                };
                let source = source_of(&source).ok_or_else(|| corrupt("unknown source"))?;
                let prefixes = prefixes
                    .split_whitespace()
                    .map(|p| p.parse().map_err(|_| corrupt("a prefix is not one")))
                    .collect::<Result<_, _>>()?;
                Ok(StoredSession {
                    session: SessionKey { source, id },
                    subscriber,
                    prefixes,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_survive_a_reopen_and_ended_ones_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let key = |id: &str| SessionKey {
            source: BindingSource::Radius,
            id: id.into(),
        };
        let s = |id: &str, sub: &str, p: &str| StoredSession {
            session: key(id),
            subscriber: sub.into(),
            prefixes: vec![p.parse().unwrap()],
        };
        let mut store = Store::open(dir.path()).unwrap();
        store
            .put_bindings(
                &[
                    s("nas/1", "a", "100.64.0.1/32"),
                    s("nas/2", "b", "2001:db8::/56"),
                ],
                &[],
            )
            .unwrap();
        store
            .put_bindings(&[s("nas/1", "c", "100.64.0.9/32")], &[key("nas/2")])
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.live_bindings().unwrap(),
            [s("nas/1", "c", "100.64.0.9/32")]
        );
    }
}
