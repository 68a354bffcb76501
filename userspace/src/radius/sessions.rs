//! The sessions a NAS reported, and what a new request may change: a Start or Interim-Update
//! binds only when it is newer than everything heard of its session, a Stop releases once,
//! and a replayed or reordered packet changes nothing.

use std::collections::{HashMap, VecDeque};

use ipnet::IpNet;

use super::attributes::{Accounting, StatusType};

/// How far a session had got when a packet was sent: Event-Timestamp, then
/// Acct-Session-Time (either may be absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub event_timestamp: Option<u32>,
    pub session_time: u32,
}

impl Progress {
    fn of(acct: &Accounting<'_>) -> Progress {
        Progress {
            event_timestamp: acct.event_timestamp,
            session_time: acct.session_time.unwrap_or(0),
        }
    }

    /// Whether `self` is strictly later than `old` (by timestamps where both have one).
    fn after(self, old: Progress) -> bool {
        match (self.event_timestamp, old.event_timestamp) {
            (Some(a), Some(b)) => (a, self.session_time) > (b, old.session_time),
            _ => self.session_time > old.session_time,
        }
    }
}

/// A change to the live bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `session` holds `prefixes` for `subscriber` from now on.
    Bind {
        session: String,
        subscriber: String,
        prefixes: Vec<IpNet>,
    },
    /// `session` ended.
    Release { session: String },
}

/// Why a request changes nothing (it is still answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchanged {
    /// Not newer than what the session already reported (a replay or a late copy).
    Stale,
    /// The session has stopped; a Start, Interim or Stop of it afterwards is a replay.
    AfterStop,
    /// Newer, but the same subscriber and addresses as before: nothing to move.
    Same,
    /// Event-Timestamp older than the replay window.
    TooOld,
}

/// What a request does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Apply these changes (in order), then answer.
    Apply(Vec<Change>),
    /// Answer without changing anything.
    Unchanged(Unchanged),
    /// Refuse: the session table is full (not answered, so the NAS retries).
    Full,
}

#[derive(Debug, Clone)]
struct Session {
    nas: String,
    subscriber: String,
    prefixes: Vec<IpNet>,
    progress: Progress,
    /// Unix seconds of the Stop, once stopped.
    stopped_at: Option<u64>,
}

/// What a decision replaced, so a change the daemon could not apply can be undone.
#[derive(Debug, Clone)]
pub struct Undo(Vec<(String, Option<Session>)>);

/// The sessions followed, keyed by "<NAS>/<Acct-Session-Id>".
#[derive(Debug)]
pub struct Sessions {
    by_key: HashMap<String, Session>,
    /// Stopped sessions in the order they stopped, for forgetting them after the window.
    stopped: VecDeque<(u64, String)>,
    /// The newest Event-Timestamp each NAS sent.
    nas_latest: HashMap<String, u32>,
    replay_window: u64,
    max: usize,
}

/// The session key: "<NAS>/<Acct-Session-Id>", the id escaped (it may be any octets).
pub fn session_key(nas: &str, session_id: &[u8]) -> String {
    format!("{nas}/{}", session_id.escape_ascii())
}

/// How a NAS is named in session keys: its address, or its NAS-Identifier escaped with '/'
/// written as `\x2f`, so the first '/' of a key always ends the NAS.
pub fn nas_key(nas: Option<super::attributes::Nas<'_>>, source: std::net::IpAddr) -> String {
    match nas {
        Some(super::attributes::Nas::Address(ip)) => ip.to_canonical().to_string(),
        Some(super::attributes::Nas::Identifier(id)) => {
            id.escape_ascii().to_string().replace('/', "\\x2f")
        }
        None => source.to_canonical().to_string(),
    }
}

impl Sessions {
    /// Empty; stopped sessions are kept `replay_window` seconds, at most `max` in all.
    pub fn new(replay_window: u64, max: usize) -> Sessions {
        Sessions {
            by_key: HashMap::new(),
            stopped: VecDeque::new(),
            nas_latest: HashMap::new(),
            replay_window,
            max,
        }
    }

    /// Sessions followed (live and stopped).
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no session is followed.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Live (not stopped) sessions.
    pub fn live(&self) -> usize {
        self.by_key
            .values()
            .filter(|s| s.stopped_at.is_none())
            .count()
    }

    fn forget_old(&mut self, now: u64) {
        while let Some((at, _)) = self.stopped.front() {
            if now.saturating_sub(*at) < self.replay_window {
                break;
            }
            if let Some((at, key)) = self.stopped.pop_front()
                && self.by_key.get(&key).and_then(|s| s.stopped_at) == Some(at)
            {
                self.by_key.remove(&key);
            }
        }
    }

    /// Decides what `acct`, from the NAS named `nas`, does at unix time `now`, and records it.
    /// The returned [`Undo`] puts the sessions back if the change is not applied.
    pub fn decide(&mut self, nas: &str, acct: &Accounting<'_>, now: u64) -> (Decision, Undo) {
        self.forget_old(now);
        let mut undo = Undo(Vec::new());
        if let Some(ts) = acct.event_timestamp {
            let latest = self.nas_latest.entry(nas.to_owned()).or_insert(ts);
            *latest = (*latest).max(ts);
        }
        let too_old = acct
            .event_timestamp
            .is_some_and(|ts| u64::from(ts) + self.replay_window < now);
        let decision = match acct.status {
            StatusType::AccountingOn | StatusType::AccountingOff => {
                // A replayed On/Off would release every session of the NAS: only one at least
                // as new as everything the NAS sent counts, so it must carry a timestamp.
                let newest = self.nas_latest.get(nas).copied();
                match acct.event_timestamp {
                    Some(ts) if !too_old && Some(ts) >= newest => {
                        Decision::Apply(self.stop_all(nas, now, &mut undo))
                    }
                    Some(_) if too_old => Decision::Unchanged(Unchanged::TooOld),
                    _ => Decision::Unchanged(Unchanged::Stale),
                }
            }
            StatusType::Stop => {
                let key = session_key(nas, acct.session_id);
                match self.by_key.get_mut(&key) {
                    Some(s) if s.stopped_at.is_some() => Decision::Unchanged(Unchanged::AfterStop),
                    Some(s) => {
                        undo.0.push((key.clone(), Some(s.clone())));
                        s.stopped_at = Some(now);
                        self.stopped.push_back((now, key.clone()));
                        Decision::Apply(vec![Change::Release { session: key }])
                    }
                    None if too_old => Decision::Unchanged(Unchanged::TooOld),
                    None => {
                        // A Stop for a session this daemon never heard of (it started before
                        // a restart): release it all the same, and remember it stopped.
                        if self.by_key.len() >= self.max {
                            return (Decision::Full, undo);
                        }
                        undo.0.push((key.clone(), None));
                        self.by_key.insert(
                            key.clone(),
                            Session {
                                nas: nas.to_owned(),
                                subscriber: String::from_utf8_lossy(acct.subscriber).into_owned(),
                                prefixes: Vec::new(),
                                progress: Progress::of(acct),
                                stopped_at: Some(now),
                            },
                        );
                        self.stopped.push_back((now, key.clone()));
                        Decision::Apply(vec![Change::Release { session: key }])
                    }
                }
            }
            StatusType::Start | StatusType::InterimUpdate => {
                let key = session_key(nas, acct.session_id);
                let progress = Progress::of(acct);
                let subscriber = String::from_utf8_lossy(acct.subscriber).into_owned();
                let full = self.by_key.len() >= self.max;
                match self.by_key.get_mut(&key) {
                    Some(s) if s.stopped_at.is_some() => Decision::Unchanged(Unchanged::AfterStop),
                    Some(s) if !progress.after(s.progress) => Decision::Unchanged(Unchanged::Stale),
                    Some(s) => {
                        undo.0.push((key.clone(), Some(s.clone())));
                        s.progress = progress;
                        if s.subscriber == subscriber && s.prefixes == acct.prefixes {
                            // Saying again what the session holds is no new claim: it must not
                            // take back an address another session has claimed since.
                            Decision::Unchanged(Unchanged::Same)
                        } else {
                            s.subscriber.clone_from(&subscriber);
                            s.prefixes.clone_from(&acct.prefixes);
                            Decision::Apply(vec![Change::Bind {
                                session: key,
                                subscriber,
                                prefixes: acct.prefixes.clone(),
                            }])
                        }
                    }
                    None if too_old => Decision::Unchanged(Unchanged::TooOld),
                    None if full => Decision::Full,
                    None => {
                        undo.0.push((key.clone(), None));
                        self.by_key.insert(
                            key.clone(),
                            Session {
                                nas: nas.to_owned(),
                                subscriber: subscriber.clone(),
                                prefixes: acct.prefixes.clone(),
                                progress,
                                stopped_at: None,
                            },
                        );
                        Decision::Apply(vec![Change::Bind {
                            session: key,
                            subscriber,
                            prefixes: acct.prefixes.clone(),
                        }])
                    }
                }
            }
        };
        (decision, undo)
    }

    fn stop_all(&mut self, nas: &str, now: u64, undo: &mut Undo) -> Vec<Change> {
        let mut keys: Vec<String> = self
            .by_key
            .iter()
            .filter(|(_, s)| s.nas == nas && s.stopped_at.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        let mut changes = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(s) = self.by_key.get_mut(&key) {
                undo.0.push((key.clone(), Some(s.clone())));
                s.stopped_at = Some(now);
                self.stopped.push_back((now, key.clone()));
                changes.push(Change::Release { session: key });
            }
        }
        changes
    }

    /// Puts back what a decision changed (the daemon could not apply it; the NAS will retry).
    pub fn undo(&mut self, undo: Undo) {
        for (key, before) in undo.0.into_iter().rev() {
            match before {
                Some(s) => {
                    self.by_key.insert(key, s);
                }
                None => {
                    self.by_key.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct<'a>(
        status: StatusType,
        session: &'a [u8],
        user: &'a [u8],
        prefixes: &[&str],
        ts: Option<u32>,
        time: Option<u32>,
    ) -> Accounting<'a> {
        Accounting {
            status,
            session_id: session,
            subscriber: user,
            nas: None,
            prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            event_timestamp: ts,
            session_time: time,
            input_octets: 0,
            output_octets: 0,
        }
    }

    const NOW: u64 = 1_800_000_000;
    const T: u32 = 1_800_000_000;

    fn bind(session: &str, user: &str, p: &[&str]) -> Decision {
        Decision::Apply(vec![Change::Bind {
            session: session.into(),
            subscriber: user.into(),
            prefixes: p.iter().map(|p| p.parse().unwrap()).collect(),
        }])
    }

    #[test]
    fn start_interim_stop_bind_move_and_release() {
        let mut s = Sessions::new(86_400, 100);
        let d = |s: &mut Sessions, a| s.decide("nas", &a, NOW).0;
        use StatusType::*;
        let a = ["100.64.0.9/32"];
        assert_eq!(
            d(&mut s, acct(Start, b"1", b"alice", &a, Some(T), None)),
            bind("nas/1", "alice", &a)
        );
        // The same Start again (a retransmission with a new identifier): nothing.
        assert_eq!(
            d(&mut s, acct(Start, b"1", b"alice", &a, Some(T), None)),
            Decision::Unchanged(Unchanged::Stale)
        );
        // A newer Interim saying the same: nothing to move.
        assert_eq!(
            d(
                &mut s,
                acct(InterimUpdate, b"1", b"alice", &a, Some(T + 60), Some(60))
            ),
            Decision::Unchanged(Unchanged::Same)
        );
        // A newer Interim with a new delegated prefix: rebinds.
        let b = ["100.64.0.9/32", "2001:db8:1::/56"];
        assert_eq!(
            d(
                &mut s,
                acct(InterimUpdate, b"1", b"alice", &b, Some(T + 120), Some(120))
            ),
            bind("nas/1", "alice", &b)
        );
        // The older Interim replayed: nothing.
        assert_eq!(
            d(
                &mut s,
                acct(InterimUpdate, b"1", b"alice", &a, Some(T + 60), Some(60))
            ),
            Decision::Unchanged(Unchanged::Stale)
        );
        assert_eq!(
            d(
                &mut s,
                acct(Stop, b"1", b"alice", &b, Some(T + 180), Some(180))
            ),
            Decision::Apply(vec![Change::Release {
                session: "nas/1".into()
            }])
        );
        // Replays after the Stop: the Start, a later-looking Interim, the Stop itself.
        for st in [Start, InterimUpdate, Stop] {
            assert_eq!(
                d(
                    &mut s,
                    acct(st, b"1", b"alice", &a, Some(T + 999), Some(999))
                ),
                Decision::Unchanged(Unchanged::AfterStop)
            );
        }
        assert_eq!(s.live(), 0);
    }

    #[test]
    fn without_timestamps_session_time_orders() {
        let mut s = Sessions::new(86_400, 100);
        use StatusType::*;
        let a = ["100.64.0.9/32"];
        let b = ["100.64.0.10/32"];
        assert!(matches!(
            s.decide("n", &acct(Start, b"1", b"u", &a, None, None), NOW)
                .0,
            Decision::Apply(_)
        ));
        assert!(matches!(
            s.decide(
                "n",
                &acct(InterimUpdate, b"1", b"u", &b, None, Some(30)),
                NOW
            )
            .0,
            Decision::Apply(_)
        ));
        assert_eq!(
            s.decide(
                "n",
                &acct(InterimUpdate, b"1", b"u", &a, None, Some(30)),
                NOW
            )
            .0,
            Decision::Unchanged(Unchanged::Stale)
        );
    }

    #[test]
    fn a_replayed_old_start_of_a_forgotten_session_is_too_old() {
        let mut s = Sessions::new(3600, 100);
        let a = acct(StatusType::Start, b"9", b"u", &[], Some(T - 7200), None);
        assert_eq!(
            s.decide("n", &a, NOW).0,
            Decision::Unchanged(Unchanged::TooOld)
        );
    }

    #[test]
    fn stopped_sessions_are_forgotten_after_the_window_and_the_table_is_bounded() {
        let mut s = Sessions::new(100, 2);
        use StatusType::*;
        s.decide("n", &acct(Start, b"1", b"u", &[], None, None), NOW);
        s.decide("n", &acct(Stop, b"1", b"u", &[], None, Some(5)), NOW);
        s.decide("n", &acct(Start, b"2", b"u", &[], None, None), NOW);
        assert_eq!(
            s.decide("n", &acct(Start, b"3", b"u", &[], None, None), NOW)
                .0,
            Decision::Full
        );
        assert_eq!(s.len(), 2);
        assert!(matches!(
            s.decide("n", &acct(Start, b"3", b"u", &[], None, None), NOW + 100)
                .0,
            Decision::Apply(_)
        ));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn accounting_on_releases_the_nas_sessions_only_when_newest() {
        let mut s = Sessions::new(86_400, 100);
        use StatusType::*;
        s.decide("n", &acct(Start, b"1", b"u", &[], Some(T), None), NOW);
        s.decide("n", &acct(Start, b"2", b"v", &[], Some(T + 5), None), NOW);
        s.decide("m", &acct(Start, b"1", b"w", &[], Some(T), None), NOW);
        // A replayed Accounting-On, older than the NAS's newest packet, or without a time.
        assert_eq!(
            s.decide(
                "n",
                &acct(AccountingOn, b"", b"", &[], Some(T + 1), None),
                NOW
            )
            .0,
            Decision::Unchanged(Unchanged::Stale)
        );
        assert_eq!(
            s.decide("n", &acct(AccountingOn, b"", b"", &[], None, None), NOW)
                .0,
            Decision::Unchanged(Unchanged::Stale)
        );
        assert_eq!(
            s.decide(
                "n",
                &acct(AccountingOn, b"", b"", &[], Some(T + 10), None),
                NOW
            )
            .0,
            Decision::Apply(vec![
                Change::Release {
                    session: "n/1".into()
                },
                Change::Release {
                    session: "n/2".into()
                }
            ])
        );
        assert_eq!(s.live(), 1);
    }

    #[test]
    fn undo_puts_the_session_back() {
        let mut s = Sessions::new(86_400, 100);
        let a = acct(
            StatusType::Start,
            b"1",
            b"u",
            &["100.64.0.1/32"],
            None,
            None,
        );
        let (_, undo) = s.decide("n", &a, NOW);
        s.undo(undo);
        assert!(s.is_empty());
        // Retried after the undo, it binds again.
        assert!(matches!(s.decide("n", &a, NOW).0, Decision::Apply(_)));
    }

    #[test]
    fn session_keys_cannot_collide() {
        use crate::radius::attributes::Nas;
        let src = "192.0.2.1".parse().unwrap();
        let slash = nas_key(Some(Nas::Identifier(b"n/a")), src);
        assert_eq!(slash, "n\\x2fa");
        assert_ne!(session_key(&slash, b"b"), session_key("n", b"a/b"));
        assert_eq!(session_key("n", b"x\xff\n"), "n/x\\xff\\n");
        assert_eq!(
            nas_key(None, "::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1"
        );
    }
}
