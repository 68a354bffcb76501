//! What the accounting client sends when: a session per subscriber from the first time the
//! client sees it metered until it leaves the table. Its octets are the subscriber's running
//! totals less the totals when the session began, so every request carries the session's
//! cumulative count: a retransmitted, duplicated or lost Interim-Update never adds a byte.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use md5::{Digest as _, Md5};

use crate::{radius::attributes::StatusType, store::AccountingSession};

/// One subscriber's running totals, as the books hold them after an interval's read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meter {
    /// The subscriber's id (sent as User-Name).
    pub id: String,
    /// Bytes from the subscriber so far (upload; RADIUS input).
    pub input: u64,
    /// Bytes to the subscriber so far (download; RADIUS output).
    pub output: u64,
    /// Its address when the table gives it exactly one IPv4 /32 (Framed-IP-Address).
    pub framed_ipv4: Option<Ipv4Addr>,
    /// Still in the table (false: removed, its books closed with these final totals).
    pub active: bool,
}

/// Every subscriber's totals at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// When the totals were read (seconds since 1970, the daemon's clock).
    pub at: u64,
    pub meters: Vec<Meter>,
}

/// One Accounting-Request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub status: StatusType,
    /// Acct-Session-Id.
    pub session_id: String,
    /// User-Name: the subscriber's id.
    pub user_name: String,
    pub framed_ipv4: Option<Ipv4Addr>,
    /// Event-Timestamp.
    pub at: u32,
    /// Acct-Session-Time.
    pub session_time: u32,
    /// Acct-Input-Octets (and -Gigawords): from the subscriber, this session.
    pub input: u64,
    /// Acct-Output-Octets (and -Gigawords): to the subscriber, this session.
    pub output: u64,
}

/// What one tally changed: sessions to store or forget, requests to send.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub began: Vec<(String, AccountingSession)>,
    pub ended: Vec<String>,
    pub records: Vec<Record>,
}

/// A session the client follows.
#[derive(Debug, Clone)]
struct Session {
    stored: AccountingSession,
    /// When its next Interim-Update is due (0: at the next tally, as after a restart).
    next_interim: u64,
    /// The last totals seen (for a Stop when the subscriber vanished from the books).
    input: u64,
    output: u64,
    framed_ipv4: Option<Ipv4Addr>,
}

/// The sessions and when each is due.
#[derive(Debug)]
pub struct Accountant {
    sessions: BTreeMap<String, Session>,
    interval: u64,
}

/// The Acct-Session-Id of `id`'s session that began at `start`: the same for every request of
/// the session and across restarts (both come from the store), new for the next session.
pub fn session_id(id: &str, start: u64) -> String {
    // A long id is replaced by its digest, so the whole attribute stays within 253 octets.
    if id.len() <= 200 {
        format!("{start:x}-{id}")
    } else {
        let digest: [u8; 16] = Md5::digest(id.as_bytes()).into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{start:x}-{hex}")
    }
}

fn secs32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Accountant {
    /// Follows the sessions the store holds (from the last run): each sends an Interim-Update
    /// at the first tally, with the same Acct-Session-Id.
    pub fn new(stored: Vec<(String, AccountingSession)>, interval_secs: u64) -> Accountant {
        let sessions = stored
            .into_iter()
            .map(|(id, stored)| {
                let s = Session {
                    stored,
                    next_interim: 0,
                    input: stored.base_input,
                    output: stored.base_output,
                    framed_ipv4: None,
                };
                (id, s)
            })
            .collect();
        Accountant {
            sessions,
            interval: interval_secs,
        }
    }

    /// Sessions followed now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is followed.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn record(&self, status: StatusType, id: &str, s: &Session, at: u64) -> Record {
        Record {
            status,
            session_id: session_id(id, s.stored.start),
            user_name: id.to_owned(),
            framed_ipv4: s.framed_ipv4,
            at: secs32(at),
            session_time: secs32(at.saturating_sub(s.stored.start)),
            input: s.input.saturating_sub(s.stored.base_input),
            output: s.output.saturating_sub(s.stored.base_output),
        }
    }

    /// Starts, updates and stops sessions by `tally`.
    pub fn step(&mut self, tally: &Tally) -> Step {
        let mut step = Step::default();
        let at = tally.at;
        let mut seen = BTreeSet::new();
        for m in &tally.meters {
            seen.insert(m.id.as_str());
            match (m.active, self.sessions.get_mut(&m.id)) {
                (true, None) => {
                    let stored = AccountingSession {
                        start: at,
                        base_input: m.input,
                        base_output: m.output,
                    };
                    let s = Session {
                        stored,
                        next_interim: at.saturating_add(self.interval),
                        input: m.input,
                        output: m.output,
                        framed_ipv4: m.framed_ipv4,
                    };
                    step.records
                        .push(self.record(StatusType::Start, &m.id, &s, at));
                    step.began.push((m.id.clone(), stored));
                    self.sessions.insert(m.id.clone(), s);
                }
                (true, Some(s)) => {
                    // Totals only grow; a smaller figure (which the books never give) is not
                    // taken, so a session's octets never go back.
                    s.input = s.input.max(m.input);
                    s.output = s.output.max(m.output);
                    s.framed_ipv4 = m.framed_ipv4;
                    if at >= s.next_interim {
                        s.next_interim = at.saturating_add(self.interval);
                        let s = s.clone();
                        step.records
                            .push(self.record(StatusType::InterimUpdate, &m.id, &s, at));
                    }
                }
                (false, Some(s)) => {
                    s.input = s.input.max(m.input);
                    s.output = s.output.max(m.output);
                    let s = s.clone();
                    step.records
                        .push(self.record(StatusType::Stop, &m.id, &s, at));
                    self.sessions.remove(&m.id);
                    step.ended.push(m.id.clone());
                }
                (false, None) => {}
            }
        }
        // A session whose subscriber the books no longer hold at all ends with what was seen.
        let vanished: Vec<String> = self
            .sessions
            .keys()
            .filter(|id| !seen.contains(id.as_str()))
            .cloned()
            .collect();
        for id in vanished {
            if let Some(s) = self.sessions.remove(&id) {
                step.records
                    .push(self.record(StatusType::Stop, &id, &s, at));
                step.ended.push(id);
            }
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(id: &str, input: u64, output: u64, active: bool) -> Meter {
        Meter {
            id: id.into(),
            input,
            output,
            framed_ipv4: None,
            active,
        }
    }

    fn tally(at: u64, meters: &[Meter]) -> Tally {
        Tally {
            at,
            meters: meters.to_vec(),
        }
    }

    fn kinds(s: &Step) -> Vec<(StatusType, &str, u64, u64)> {
        s.records
            .iter()
            .map(|r| (r.status, r.user_name.as_str(), r.input, r.output))
            .collect()
    }

    #[test]
    fn a_session_starts_updates_on_its_interval_and_stops_with_cumulative_octets() {
        let mut a = Accountant::new(Vec::new(), 60);
        let s = a.step(&tally(1000, &[meter("alice", 500, 900, true)]));
        assert_eq!(kinds(&s), vec![(StatusType::Start, "alice", 0, 0)]);
        assert_eq!(s.began[0].1.base_input, 500);
        let id = s.records[0].session_id.clone();
        assert_eq!(id, "3e8-alice");
        // Not due yet.
        assert!(
            a.step(&tally(1030, &[meter("alice", 600, 1000, true)]))
                .records
                .is_empty()
        );
        let s = a.step(&tally(1060, &[meter("alice", 700, 1900, true)]));
        assert_eq!(
            kinds(&s),
            vec![(StatusType::InterimUpdate, "alice", 200, 1000)]
        );
        assert_eq!(
            (s.records[0].session_time, &s.records[0].session_id),
            (60, &id)
        );
        // The books removed alice: Stop with the final totals; her next session is new.
        let s = a.step(&tally(1070, &[meter("alice", 710, 2000, false)]));
        assert_eq!(kinds(&s), vec![(StatusType::Stop, "alice", 210, 1100)]);
        assert_eq!(s.ended, vec!["alice".to_owned()]);
        let s = a.step(&tally(1080, &[meter("alice", 710, 2000, true)]));
        assert_eq!(kinds(&s), vec![(StatusType::Start, "alice", 0, 0)]);
        assert_ne!(s.records[0].session_id, id);
    }

    #[test]
    fn a_restart_goes_on_with_the_stored_session_and_its_base() {
        let stored = AccountingSession {
            start: 1000,
            base_input: 500,
            base_output: 900,
        };
        let mut a = Accountant::new(vec![("alice".into(), stored)], 60);
        let s = a.step(&tally(1010, &[meter("alice", 800, 950, true)]));
        assert_eq!(
            kinds(&s),
            vec![(StatusType::InterimUpdate, "alice", 300, 50)]
        );
        assert_eq!(s.records[0].session_id, "3e8-alice");
        assert!(s.began.is_empty());
        // A subscriber the books no longer hold at all is stopped with what was last seen.
        let s = a.step(&tally(1020, &[]));
        assert_eq!(kinds(&s), vec![(StatusType::Stop, "alice", 300, 50)]);
        assert!(a.is_empty());
    }

    #[test]
    fn octets_past_four_gigabytes_and_a_long_id_fit() {
        let long = "x".repeat(250);
        assert_eq!(session_id(&long, 1).len(), 2 + 32);
        let mut a = Accountant::new(Vec::new(), 1);
        a.step(&tally(1, &[meter("bob", 0, 0, true)]));
        let s = a.step(&tally(2, &[meter("bob", 5 << 32 | 7, 1, true)]));
        assert_eq!(s.records[0].input, 5 << 32 | 7);
        // A total that went back (never from the books) is not taken.
        let s = a.step(&tally(3, &[meter("bob", 3, 1, true)]));
        assert_eq!(s.records[0].input, 5 << 32 | 7);
    }
}
