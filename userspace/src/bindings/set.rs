//! The live bindings: which session holds which prefixes for which subscriber, and how they lie
//! over the subscriber table file. Pure bookkeeping: the daemon installs what this computes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::IpNet;

use super::request::{BindingEvent, BindingSource, Outcome, Refusal, SessionKey};
use crate::{
    store::StoredSession,
    subscribers::table::{Table, check_prefix},
};

/// At most this many prefixes in one session: a NAS sends one address and one or two IPv6
/// prefixes; more is a peer filling the maps.
pub const MAX_PREFIXES: usize = 16;

/// The table file's subscribers and listed prefixes, by position: what a binding may name and
/// what it may not take.
#[derive(Debug, Default)]
pub struct TableIndex {
    position: HashMap<String, usize>,
    listed: HashMap<IpNet, usize>,
}

impl TableIndex {
    /// The index of a table file (without live bindings).
    pub fn of(file: &Table) -> TableIndex {
        let mut index = TableIndex {
            position: HashMap::with_capacity(file.subscribers.len()),
            listed: HashMap::new(),
        };
        for (i, s) in file.subscribers.iter().enumerate() {
            index.position.insert(s.id.clone(), i);
            for p in &s.prefixes {
                index.listed.insert(*p, i);
            }
        }
        index
    }
}

/// One live session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    subscriber: String,
    /// Sorted, without repeats.
    prefixes: Vec<IpNet>,
}

/// The sessions and who holds each prefix, with each subscriber's sessions and the count per
/// source kept beside them, so a batch costs the sessions it touches, not all of them.
#[derive(Debug, Clone, Default)]
pub struct Live {
    sessions: BTreeMap<SessionKey, Session>,
    holder: HashMap<IpNet, SessionKey>,
    of_subscriber: HashMap<String, BTreeSet<SessionKey>>,
    per_source: [usize; BindingSource::ALL.len()],
}

/// The position of `source` in [`BindingSource::ALL`].
fn source_index(source: BindingSource) -> usize {
    BindingSource::ALL
        .iter()
        .position(|s| *s == source)
        .unwrap_or(0)
}

impl Live {
    /// Sessions as the store kept them (a prefix held twice goes to the later row).
    pub fn from_stored(rows: Vec<StoredSession>) -> Live {
        let mut live = Live::default();
        for row in rows {
            for p in &row.prefixes {
                if let Some(other) = live.holder.get(p).cloned() {
                    live.strip(&other, p);
                }
            }
            live.remove(&row.session);
            live.insert(
                row.session,
                Session {
                    subscriber: row.subscriber,
                    prefixes: row.prefixes,
                },
            );
        }
        live
    }

    /// What the store must write to hold these sessions instead of `before`'s: the sessions
    /// that began or changed, and those that ended (a whole comparison: for a table reload;
    /// a batch has [`Bindings::batch_changes`]).
    pub fn changes_since(&self, before: &Live) -> (Vec<StoredSession>, Vec<SessionKey>) {
        let changed = self
            .sessions
            .iter()
            .filter(|(k, s)| before.sessions.get(*k) != Some(*s))
            .map(|(k, s)| stored(k, s))
            .collect();
        let ended = before
            .sessions
            .keys()
            .filter(|k| !self.sessions.contains_key(*k))
            .cloned()
            .collect();
        (changed, ended)
    }

    /// Each subscriber's bound prefixes, sorted.
    fn by_subscriber(&self) -> BTreeMap<&str, Vec<IpNet>> {
        let mut out: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
        for s in self.sessions.values() {
            out.entry(&s.subscriber).or_default().extend(&s.prefixes);
        }
        for prefixes in out.values_mut() {
            prefixes.sort();
        }
        out
    }

    /// Live sessions of `source`.
    pub fn active(&self, source: BindingSource) -> usize {
        self.per_source[source_index(source)]
    }

    /// Adds a session under a key that holds none, and makes it the holder of its prefixes.
    fn insert(&mut self, key: SessionKey, session: Session) {
        for p in &session.prefixes {
            self.holder.insert(*p, key.clone());
        }
        self.of_subscriber
            .entry(session.subscriber.clone())
            .or_default()
            .insert(key.clone());
        self.per_source[source_index(key.source)] += 1;
        self.sessions.insert(key, session);
    }

    /// Ends a session, freeing the prefixes it holds; the session, if there was one.
    fn remove(&mut self, key: &SessionKey) -> Option<Session> {
        let old = self.sessions.remove(key)?;
        for p in &old.prefixes {
            if self.holder.get(p) == Some(key) {
                self.holder.remove(p);
            }
        }
        if let Some(keys) = self.of_subscriber.get_mut(&old.subscriber) {
            keys.remove(key);
            if keys.is_empty() {
                self.of_subscriber.remove(&old.subscriber);
            }
        }
        let n = &mut self.per_source[source_index(key.source)];
        *n = n.saturating_sub(1);
        Some(old)
    }

    /// Takes prefix `p` from session `key` (a newer claim won it); a session left with none
    /// ends.
    fn strip(&mut self, key: &SessionKey, p: &IpNet) {
        if self.holder.get(p) == Some(key) {
            self.holder.remove(p);
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        s.prefixes.retain(|q| q != p);
        if s.prefixes.is_empty() {
            self.remove(key);
        }
    }

    /// Subscriber `id`'s bound prefixes, sorted, with the sessions of `instead` taken as
    /// given there (`None`: absent) rather than as they are.
    fn prefixes_of(&self, id: &str, instead: &BTreeMap<SessionKey, Option<Session>>) -> Vec<IpNet> {
        let mut out: Vec<IpNet> = self
            .of_subscriber
            .get(id)
            .into_iter()
            .flatten()
            .filter(|k| !instead.contains_key(*k))
            .filter_map(|k| self.sessions.get(k))
            .chain(instead.values().flatten().filter(|s| s.subscriber == id))
            .flat_map(|s| s.prefixes.iter().copied())
            .collect();
        out.sort();
        out
    }
}

/// A session as the store keeps it.
fn stored(key: &SessionKey, s: &Session) -> StoredSession {
    StoredSession {
        session: key.clone(),
        subscriber: s.subscriber.clone(),
        prefixes: s.prefixes.clone(),
    }
}

/// The live bindings over one table file.
#[derive(Debug)]
pub struct Bindings {
    base: TableIndex,
    live: Live,
    max_sessions: usize,
    /// Since [`Bindings::begin_batch`]: each session the batch touched, as it was before
    /// (`None`: it did not exist). What a batch undoes, stores and re-lays.
    journal: BTreeMap<SessionKey, Option<Session>>,
}

impl Bindings {
    /// No bindings, over an empty table; at most `max_sessions` sessions at once.
    pub fn new(max_sessions: usize) -> Bindings {
        Bindings {
            base: TableIndex::default(),
            live: Live::default(),
            max_sessions,
            journal: BTreeMap::new(),
        }
    }

    /// The sessions.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Takes `live` as the sessions (those a restarted daemon stored).
    pub fn restore(&mut self, live: Live) {
        self.live = live;
        self.journal.clear();
    }

    /// Starts a batch: what [`Bindings::apply`] changes from now on can be undone, stored and
    /// re-laid by the sessions it touched alone.
    pub fn begin_batch(&mut self) {
        self.journal.clear();
    }

    /// Records session `key` as it is, the first time the batch touches it.
    fn note(&mut self, key: &SessionKey) {
        if !self.journal.contains_key(key) {
            let was = self.live.sessions.get(key).cloned();
            self.journal.insert(key.clone(), was);
        }
    }

    /// Puts the sessions back as they were before the batch (the kernel did not take it).
    pub fn undo(&mut self) {
        let journal = std::mem::take(&mut self.journal);
        for key in journal.keys() {
            self.live.remove(key);
        }
        for (key, was) in journal {
            if let Some(s) = was {
                self.live.insert(key, s);
            }
        }
    }

    /// What the store must write for the batch: the sessions it began or changed, and those
    /// it ended.
    pub fn batch_changes(&self) -> (Vec<StoredSession>, Vec<SessionKey>) {
        let mut changed = Vec::new();
        let mut ended = Vec::new();
        for (key, was) in &self.journal {
            match (self.live.sessions.get(key), was) {
                (Some(now), was) if was.as_ref() != Some(now) => changed.push(stored(key, now)),
                (None, Some(_)) => ended.push(key.clone()),
                _ => {}
            }
        }
        (changed, ended)
    }

    /// Applies one event to the sessions (not yet to the kernel). `current` is the installed
    /// table, the one [`Bindings::overlay`] or [`Bindings::relayer`] made; it names owners.
    pub fn apply(&mut self, event: &BindingEvent, current: &Table) -> Result<Outcome, Refusal> {
        match event {
            BindingEvent::Release { session } => {
                self.note(session);
                Ok(if self.live.remove(session).is_some() {
                    Outcome::Released
                } else {
                    Outcome::UnknownSession
                })
            }
            BindingEvent::Bind {
                session,
                subscriber,
                prefixes,
            } => self.bind(session, subscriber, prefixes, current),
        }
    }

    fn bind(
        &mut self,
        session: &SessionKey,
        subscriber: &str,
        prefixes: &[IpNet],
        current: &Table,
    ) -> Result<Outcome, Refusal> {
        if !self.base.position.contains_key(subscriber) {
            return Err(Refusal::UnknownSubscriber(subscriber.to_owned()));
        }
        let mut wanted = BTreeSet::new();
        for p in prefixes {
            wanted.insert(check_prefix(*p, &p.to_string()).map_err(Refusal::BadPrefix)?);
        }
        if wanted.len() > MAX_PREFIXES {
            return Err(Refusal::TooManyPrefixes {
                count: wanted.len(),
                max: MAX_PREFIXES,
            });
        }
        for p in &wanted {
            if let Some(&i) = self.base.listed.get(p) {
                let owner = current
                    .subscribers
                    .get(i)
                    .map_or_else(String::new, |s| s.id.clone());
                return Err(Refusal::ConflictsWithTable { prefix: *p, owner });
            }
        }
        let wanted: Vec<IpNet> = wanted.into_iter().collect();
        match self.live.sessions.get(session) {
            Some(s) if s.subscriber == subscriber && s.prefixes == wanted => {
                return Ok(Outcome::Unchanged);
            }
            None if self.live.sessions.len() >= self.max_sessions => {
                return Err(Refusal::TooManySessions(self.live.sessions.len()));
            }
            _ => {}
        }
        self.note(session);
        self.live.remove(session);
        // The newest claim wins: a prefix held by another session leaves it.
        for p in &wanted {
            if let Some(other) = self.live.holder.get(p).cloned() {
                self.note(&other);
                self.live.strip(&other, p);
            }
        }
        self.live.insert(
            session.clone(),
            Session {
                subscriber: subscriber.to_owned(),
                prefixes: wanted,
            },
        );
        Ok(Outcome::Bound)
    }

    /// Takes `file` as the new table file and lays the live bindings over it. Sessions whose
    /// subscriber left the table end; a prefix the file now lists leaves its session. Returns
    /// the table to install, the index to [`Bindings::adopt`] once it is installed, and what
    /// ended, with why.
    pub fn overlay(
        &self,
        mut file: Table,
    ) -> (Table, TableIndex, Live, Vec<(SessionKey, Refusal)>) {
        let index = TableIndex::of(&file);
        let mut live = self.live.clone();
        let mut ended = Vec::new();
        let keys: Vec<SessionKey> = live.sessions.keys().cloned().collect();
        for key in keys {
            let Some(s) = live.sessions.get(&key) else {
                continue;
            };
            if !index.position.contains_key(&s.subscriber) {
                ended.push((
                    key.clone(),
                    Refusal::UnknownSubscriber(s.subscriber.clone()),
                ));
                live.remove(&key);
                continue;
            }
            let listed: Vec<IpNet> = s
                .prefixes
                .iter()
                .filter(|p| index.listed.contains_key(p))
                .copied()
                .collect();
            for prefix in listed {
                let owner = index
                    .listed
                    .get(&prefix)
                    .and_then(|&i| file.subscribers.get(i))
                    .map_or_else(String::new, |o| o.id.clone());
                ended.push((key.clone(), Refusal::ConflictsWithTable { prefix, owner }));
                live.holder.remove(&prefix);
                if let Some(s) = live.sessions.get_mut(&key) {
                    s.prefixes.retain(|q| *q != prefix);
                }
            }
        }
        for (id, prefixes) in live.by_subscriber() {
            if let Some(&i) = index.position.get(id) {
                file.subscribers[i].prefixes.extend(prefixes);
            }
        }
        (file, index, live, ended)
    }

    /// Makes an overlay's index and sessions the current ones, once its table is installed.
    pub fn adopt(&mut self, index: TableIndex, live: Live) {
        self.base = index;
        self.live = live;
        self.journal.clear();
    }

    /// What changes in the installed table `current` (laid over with the sessions as they
    /// were before the batch) to lie under the sessions now: each row whose bound prefixes
    /// differ, by position, with all its prefixes (listed, then bound). Only the subscribers
    /// of sessions the batch touched are looked at.
    pub fn relayer(&self, current: &Table) -> Vec<(usize, Vec<IpNet>)> {
        let mut touched: BTreeSet<&str> = BTreeSet::new();
        for (key, was) in &self.journal {
            touched.extend(was.iter().map(|s| s.subscriber.as_str()));
            touched.extend(self.live.sessions.get(key).map(|s| s.subscriber.as_str()));
        }
        let none = BTreeMap::new();
        let mut old: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
        let mut new: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
        for id in touched {
            let (was, is) = (
                self.live.prefixes_of(id, &self.journal),
                self.live.prefixes_of(id, &none),
            );
            if was != is {
                old.insert(id, was);
                new.insert(id, is);
            }
        }
        let mut rows = Vec::with_capacity(old.len());
        for id in old.keys().copied() {
            let at = self
                .base
                .position
                .get(id)
                .copied()
                .filter(|&i| current.subscribers.get(i).is_some_and(|s| s.id == id))
                .or_else(|| current.subscribers.iter().position(|s| s.id == id));
            let Some((i, row)) = at.and_then(|i| Some((i, current.subscribers.get(i)?))) else {
                continue;
            };
            let gone = old.get(id).map_or(&[][..], Vec::as_slice);
            let mut prefixes: Vec<IpNet> = row
                .prefixes
                .iter()
                .filter(|p| !gone.contains(p))
                .copied()
                .collect();
            prefixes.extend(new.get(id).map_or(&[][..], Vec::as_slice));
            rows.push((i, prefixes));
        }
        rows
    }

    /// Live sessions of `source`.
    pub fn active(&self, source: BindingSource) -> usize {
        self.live.active(source)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn table(text: &str) -> Table {
        Table::parse(
            format!("id,name,plan,prefixes\n{text}").as_bytes(),
            Path::new("t.csv"),
        )
        .unwrap()
    }

    fn key(id: &str) -> SessionKey {
        SessionKey {
            source: BindingSource::Radius,
            id: id.into(),
        }
    }

    fn bind(session: &str, subscriber: &str, prefixes: &[&str]) -> BindingEvent {
        BindingEvent::Bind {
            session: key(session),
            subscriber: subscriber.into(),
            prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    /// Bindings over `file`, with the overlay installed; returns them and the installed table.
    fn over(file: &str) -> (Bindings, Table) {
        let mut b = Bindings::new(100);
        let (t, index, live, ended) = b.overlay(table(file));
        assert!(ended.is_empty());
        b.adopt(index, live);
        (b, t)
    }

    /// Applies `events` as the daemon does: a batch, then the table re-laid.
    fn step(
        b: &mut Bindings,
        t: &Table,
        events: &[BindingEvent],
    ) -> (Table, Vec<Result<Outcome, Refusal>>) {
        b.begin_batch();
        let outcomes = events.iter().map(|e| b.apply(e, t)).collect();
        let mut t = t.clone();
        for (i, prefixes) in b.relayer(&t) {
            t.subscribers[i].prefixes = prefixes;
        }
        (t, outcomes)
    }

    /// Subscribers a and b, bound by nas/1 (100.64.0.1) and nas/2 (100.64.0.2 and .3).
    fn a_and_b_bound() -> (Bindings, Table) {
        let (mut b, t) = over("a,A,home,dynamic\nb,B,home,dynamic\n");
        let (t, _) = step(
            &mut b,
            &t,
            &[
                bind("nas/1", "a", &["100.64.0.1/32"]),
                bind("nas/2", "b", &["100.64.0.2/32", "100.64.0.3/32"]),
            ],
        );
        (b, t)
    }

    fn prefixes_of(t: &Table, id: &str) -> Vec<String> {
        let s = t.subscribers.iter().find(|s| s.id == id).unwrap();
        s.prefixes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_dynamic_address_moves_to_the_newest_claim_and_is_freed_by_release() {
        let (mut b, t) = over("a,A,home,dynamic\nb,B,home,dynamic\nc,C,home,192.0.2.200\n");
        let (t, out) = step(
            &mut b,
            &t,
            &[bind("nas/1", "a", &["100.64.0.7/32", "2001:db8:a::/56"])],
        );
        assert_eq!(out, [Ok(Outcome::Bound)]);
        assert_eq!(prefixes_of(&t, "a"), ["100.64.0.7/32", "2001:db8:a::/56"]);
        // B gets A's address without A's Stop: it is B's now, A keeps its IPv6 prefix.
        let (t, out) = step(&mut b, &t, &[bind("nas/2", "b", &["100.64.0.7/32"])]);
        assert_eq!(out, [Ok(Outcome::Bound)]);
        assert_eq!(prefixes_of(&t, "a"), ["2001:db8:a::/56"]);
        assert_eq!(prefixes_of(&t, "b"), ["100.64.0.7/32"]);
        // A repeat changes nothing; the listed subscriber is untouched throughout.
        let (t, out) = step(&mut b, &t, &[bind("nas/2", "b", &["100.64.0.7/32"])]);
        assert_eq!(out, [Ok(Outcome::Unchanged)]);
        let (t, out) = step(
            &mut b,
            &t,
            &[
                BindingEvent::Release {
                    session: key("nas/2"),
                },
                BindingEvent::Release {
                    session: key("nas/2"),
                },
            ],
        );
        assert_eq!(out, [Ok(Outcome::Released), Ok(Outcome::UnknownSession)]);
        assert!(prefixes_of(&t, "b").is_empty());
        assert_eq!(prefixes_of(&t, "c"), ["192.0.2.200/32"]);
        assert_eq!(b.active(BindingSource::Radius), 1);
    }

    #[test]
    fn a_binding_may_not_name_a_stranger_take_a_listed_prefix_or_flood_the_maps() {
        let (mut b, t) = over("a,A,home,dynamic\nc,C,home,192.0.2.200\n");
        let many: Vec<String> = (0..17).map(|i| format!("100.64.1.{i}/32")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (after, out) = step(
            &mut b,
            &t,
            &[
                bind("nas/1", "mallory", &["100.64.0.9/32"]),
                bind("nas/1", "a", &["192.0.2.200/32"]),
                bind("nas/1", "a", &many),
                bind("nas/1", "a", &["0.0.0.0/0"]),
            ],
        );
        assert_eq!(out[0], Err(Refusal::UnknownSubscriber("mallory".into())));
        assert_eq!(
            out[1],
            Err(Refusal::ConflictsWithTable {
                prefix: "192.0.2.200/32".parse().unwrap(),
                owner: "c".into()
            })
        );
        assert_eq!(out[2], Err(Refusal::TooManyPrefixes { count: 17, max: 16 }));
        assert!(matches!(out[3], Err(Refusal::BadPrefix(_))));
        assert_eq!(after, t, "a refused event changes nothing");
        let mut small = Bindings::new(1);
        let (t, index, live, _) = small.overlay(table("a,A,home,dynamic\n"));
        small.adopt(index, live);
        let (_, out) = step(
            &mut small,
            &t,
            &[
                bind("s1", "a", &["100.64.0.1/32"]),
                bind("s2", "a", &["100.64.0.2/32"]),
            ],
        );
        assert_eq!(out[1], Err(Refusal::TooManySessions(1)));
    }

    #[test]
    fn a_new_table_file_keeps_the_bindings_of_subscribers_it_keeps() {
        let (mut b, t) = a_and_b_bound();
        assert_eq!(prefixes_of(&t, "b"), ["100.64.0.2/32", "100.64.0.3/32"]);
        // The new file drops `a` and lists one of b's addresses for a new subscriber.
        let (t, index, live, ended) =
            b.overlay(table("b,B,business,dynamic\nn,N,home,100.64.0.3\n"));
        assert_eq!(ended.len(), 2, "{ended:?}");
        b.adopt(index, live);
        assert_eq!(prefixes_of(&t, "b"), ["100.64.0.2/32"]);
        assert_eq!(prefixes_of(&t, "n"), ["100.64.0.3/32"]);
        assert_eq!(t.subscribers[0].plan, "business");
        assert_eq!(b.active(BindingSource::Radius), 1);
        // And the relayer finds rows by the new file's positions.
        let (t, _) = step(&mut b, &t, &[bind("nas/2", "b", &["100.64.0.9/32"])]);
        assert_eq!(prefixes_of(&t, "b"), ["100.64.0.9/32"]);
    }

    #[test]
    fn what_the_store_must_write_is_the_sessions_that_changed_and_those_that_ended() {
        let (mut b, t) = over("a,A,home,dynamic\nb,B,home,dynamic\n");
        let (t, _) = step(
            &mut b,
            &t,
            &[
                bind("nas/1", "a", &["100.64.0.1/32"]),
                bind("nas/2", "b", &["100.64.0.2/32"]),
            ],
        );
        let before = b.live().clone();
        let (_, _) = step(
            &mut b,
            &t,
            &[
                bind("nas/3", "b", &["100.64.0.2/32"]),
                bind("nas/1", "a", &["100.64.0.1/32"]),
            ],
        );
        let (changed, ended) = b.live().changes_since(&before);
        // The batch's own account, from the sessions it touched, says the same.
        assert_eq!(b.batch_changes(), (changed.clone(), ended.clone()));
        let changed: Vec<&str> = changed.iter().map(|s| s.session.id.as_str()).collect();
        // nas/2 lost its only address to nas/3; nas/1 is as it was.
        assert_eq!(changed, ["nas/3"]);
        assert_eq!(ended, [key("nas/2")]);
        // What was stored comes back as the same sessions.
        let (all, _) = b.live().changes_since(&Live::default());
        let back = Live::from_stored(all);
        assert_eq!(back.changes_since(b.live()), (vec![], vec![]));
        assert_eq!(
            back.sessions[&key("nas/3")].prefixes,
            ["100.64.0.2/32".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn a_batch_the_kernel_refused_is_undone_to_the_sessions_before_it() {
        let (mut b, t) = a_and_b_bound();
        let before = b.live().clone();
        // A move, a release, a new session and a prefix taken from another session, then undone.
        let (moved, _) = step(
            &mut b,
            &t,
            &[
                bind("nas/1", "b", &["100.64.0.1/32"]),
                bind("nas/3", "a", &["100.64.0.3/32", "100.64.0.4/32"]),
                BindingEvent::Release {
                    session: key("nas/2"),
                },
            ],
        );
        assert_eq!(prefixes_of(&moved, "a"), ["100.64.0.3/32", "100.64.0.4/32"]);
        assert_eq!(prefixes_of(&moved, "b"), ["100.64.0.1/32"]);
        b.undo();
        assert_eq!(b.live().changes_since(&before), (vec![], vec![]));
        assert_eq!(before.changes_since(b.live()), (vec![], vec![]));
        assert_eq!(b.active(BindingSource::Radius), 2);
        // After the undo the same table stays right: nothing to re-lay.
        b.begin_batch();
        assert!(b.relayer(&t).is_empty());
        let p: IpNet = "100.64.0.3/32".parse().unwrap();
        assert_eq!(b.live().holder.get(&p), Some(&key("nas/2")));
    }
}
