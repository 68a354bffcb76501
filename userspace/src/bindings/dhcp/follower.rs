//! From Kea's lease files to binding events: the leases active now, mapped to subscribers,
//! compared with what was asked of the daemon before. A lease that starts or moves is a Bind
//! of its address; one that expires (by quid's clock), is released (lifetime 0), declined or
//! reclaimed is a Release.

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
};

use ipnet::IpNet;
use log::{info, warn};

use super::{figures::DhcpFigures, identity::Identities, lease::Family, lease_file::LeaseFile};
use crate::bindings::request::{BindingEvent, BindingSource, Refusal, SessionKey};

/// A refused Bind (an unknown subscriber, a prefix the table lists) is asked again after this
/// many seconds: the table may have been fixed meanwhile.
const RETRY_SECS: u64 = 30;

/// Every lease is bound again this often (an unchanged binding costs the daemon nothing): a
/// session the daemon ended on its own (its subscriber left the table, then came back) is
/// taken up again.
const RESYNC_SECS: u64 = 300;

/// What one lease binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub subscriber: String,
    pub prefix: IpNet,
}

/// What the daemon was asked for one lease.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    binding: Binding,
    /// Refused for good at this time (unix seconds); `None`: the daemon holds it.
    refused_at: Option<u64>,
}

/// The events that take the daemon from the bindings `before` to `after` (keyed by lease):
/// Releases first, so an address that moves between leases is free before it is bound again.
pub fn diff(
    before: &BTreeMap<String, Binding>,
    after: &BTreeMap<String, Binding>,
) -> Vec<BindingEvent> {
    let session = |key: &String| SessionKey {
        source: BindingSource::Dhcp,
        id: key.clone(),
    };
    let releases =
        before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| BindingEvent::Release {
                session: session(k),
            });
    let binds = after
        .iter()
        .filter(|(k, b)| before.get(*k) != Some(b))
        .map(|(k, b)| BindingEvent::Bind {
            session: session(k),
            subscriber: b.subscriber.clone(),
            prefixes: vec![b.prefix],
        });
    releases.chain(binds).collect()
}

/// The leases of the followed files active at `now` that the mapping names a subscriber for;
/// the keys of the active ones it does not know go to `unmapped`.
fn wanted(
    files: &[(Family, LeaseFile)],
    map: &Identities,
    now: u64,
    unmapped: &mut Vec<String>,
) -> BTreeMap<String, Binding> {
    let mut out = BTreeMap::new();
    for (family, file) in files {
        for (key, lease) in file.leases.iter().filter(|(_, l)| l.active_at(now)) {
            match map.subscriber(lease, *family == Family::V6) {
                Some(s) => {
                    out.insert(
                        key.clone(),
                        Binding {
                            subscriber: s.to_owned(),
                            prefix: lease.prefix,
                        },
                    );
                }
                None => unmapped.push(key.clone()),
            }
        }
    }
    out
}

/// The lease files, the mapping, and what the daemon was asked.
pub struct Follower {
    files: Vec<(Family, LeaseFile)>,
    map_path: PathBuf,
    map: Identities,
    map_stamp: Option<std::time::SystemTime>,
    sent: BTreeMap<String, Sent>,
    /// Unmapped leases already logged (each is logged once).
    unmapped_logged: HashSet<String>,
    figures: Arc<DhcpFigures>,
    /// When every active lease is next bound again (unix seconds).
    resync_at: u64,
}

impl Follower {
    /// Follows `files` (v4 and/or v6), mapping leases with `map` read from `map_path`; the
    /// daemon holds `held` already (lease key, subscriber, prefix: taken up from its last run).
    pub fn new(
        files: Vec<(Family, PathBuf)>,
        map_path: PathBuf,
        map: Identities,
        held: Vec<(String, String, IpNet)>,
    ) -> Follower {
        let sent = held
            .into_iter()
            .map(|(key, subscriber, prefix)| {
                let binding = Binding { subscriber, prefix };
                (
                    key,
                    Sent {
                        binding,
                        refused_at: None,
                    },
                )
            })
            .collect();
        Follower {
            files: files
                .into_iter()
                .map(|(f, p)| (f, LeaseFile::new(&p)))
                .collect(),
            map_stamp: stamp(&map_path),
            map_path,
            map,
            sent,
            unmapped_logged: HashSet::new(),
            figures: Arc::default(),
            resync_at: 0,
        }
    }

    /// Counts into `figures` (shared with the metrics).
    pub fn with_figures(mut self, figures: Arc<DhcpFigures>) -> Follower {
        self.figures = figures;
        self
    }

    /// Reads what changed (the files, the mapping) and returns the events that bring the
    /// daemon to the leases active at `now`; report each answer with [`Follower::answered`].
    pub fn step(&mut self, now: u64) -> Vec<BindingEvent> {
        self.reload_map();
        for (_, file) in &mut self.files {
            match file.poll() {
                Ok(bad) => {
                    self.figures
                        .lines_skipped
                        .fetch_add(bad.len() as u64, Ordering::Relaxed);
                    for b in bad {
                        warn!("DHCP lease line skipped: {b}");
                    }
                }
                Err(e) => warn!("DHCP lease file unreadable, its leases stay as they were: {e}"),
            }
        }
        // A refused binding is asked again once in a while.
        self.sent.retain(|_, s| {
            s.refused_at
                .is_none_or(|at| now < at.saturating_add(RETRY_SECS))
        });
        let mut unmapped = Vec::new();
        let after = wanted(&self.files, &self.map, now, &mut unmapped);
        self.figures
            .leases_unmapped
            .store(unmapped.len() as u64, Ordering::Relaxed);
        for key in unmapped {
            if self.unmapped_logged.insert(key.clone()) {
                info!(
                    "DHCP lease {key} matches no row of the mapping file {}; it is not bound",
                    self.map_path.display()
                );
            }
        }
        self.unmapped_logged
            .retain(|k| self.files.iter().any(|(_, f)| f.leases.contains_key(k)));
        let before: BTreeMap<String, Binding> = self
            .sent
            .iter()
            .map(|(k, s)| (k.clone(), s.binding.clone()))
            .collect();
        let mut events = diff(&before, &after);
        if now >= self.resync_at {
            self.resync_at = now.saturating_add(RESYNC_SECS);
            let unchanged = after.iter().filter(|(k, b)| {
                self.sent
                    .get(*k)
                    .is_some_and(|s| s.refused_at.is_none() && s.binding == **b)
            });
            events.extend(unchanged.map(|(k, b)| BindingEvent::Bind {
                session: SessionKey {
                    source: BindingSource::Dhcp,
                    id: k.clone(),
                },
                subscriber: b.subscriber.clone(),
                prefixes: vec![b.prefix],
            }));
        }
        // The daemon never held a refused binding: forget it without a Release.
        events.retain(|e| match e {
            BindingEvent::Release { session } => {
                let held = self
                    .sent
                    .get(&session.id)
                    .is_some_and(|s| s.refused_at.is_none());
                if !held {
                    self.sent.remove(&session.id);
                }
                held
            }
            BindingEvent::Bind { .. } => true,
        });
        events
    }

    /// Takes the daemon's answer to an event [`Follower::step`] gave: a change the daemon
    /// could not install is asked again at the next step.
    pub fn answered(&mut self, event: &BindingEvent, answer: &Result<(), Refusal>, now: u64) {
        let retry = matches!(answer, Err(Refusal::NotInstalled(_) | Refusal::Unavailable));
        match event {
            BindingEvent::Bind {
                session,
                subscriber,
                prefixes,
            } if !retry => {
                let Some(&prefix) = prefixes.first() else {
                    return;
                };
                self.sent.insert(
                    session.id.clone(),
                    Sent {
                        binding: Binding {
                            subscriber: subscriber.clone(),
                            prefix,
                        },
                        refused_at: answer.is_err().then_some(now),
                    },
                );
            }
            BindingEvent::Bind { session, .. } => {
                // Asked again next step: as if never sent.
                self.sent.remove(&session.id);
            }
            BindingEvent::Release { session } if !retry => {
                self.sent.remove(&session.id);
            }
            BindingEvent::Release { .. } => {}
        }
    }

    /// Rereads the mapping file when it changed; a bad file keeps the current mapping.
    fn reload_map(&mut self) {
        let now = stamp(&self.map_path);
        if now == self.map_stamp {
            return;
        }
        self.map_stamp = now;
        match Identities::load(&self.map_path) {
            Ok(map) => {
                info!("reloaded the DHCP mapping file {}", self.map_path.display());
                self.map = map;
            }
            Err(e) => {
                self.figures
                    .map_reloads_refused
                    .fetch_add(1, Ordering::Relaxed);
                warn!("DHCP mapping file reload refused, the current mapping stays: {e}");
            }
        }
    }
}

/// When a file last changed (`None`: unreadable).
fn stamp(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::super::lease_file::tests::{HEADER, append};
    use super::*;

    fn b(subscriber: &str, prefix: &str) -> Binding {
        Binding {
            subscriber: subscriber.into(),
            prefix: prefix.parse().unwrap(),
        }
    }

    fn shown(events: &[BindingEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                BindingEvent::Bind {
                    session,
                    subscriber,
                    prefixes,
                } => format!("bind {} {subscriber} {}", session.id, prefixes[0]),
                BindingEvent::Release { session } => format!("release {}", session.id),
            })
            .collect()
    }

    #[test]
    fn the_difference_of_two_lease_sets_is_releases_then_binds() {
        let before = BTreeMap::from([
            ("192.0.2.10".to_string(), b("alice", "192.0.2.10/32")),
            ("192.0.2.11".to_string(), b("bob", "192.0.2.11/32")),
            ("192.0.2.12".to_string(), b("carol", "192.0.2.12/32")),
        ]);
        let after = BTreeMap::from([
            ("192.0.2.10".to_string(), b("alice", "192.0.2.10/32")),
            ("192.0.2.12".to_string(), b("dave", "192.0.2.12/32")),
            (
                "2001:db8:100::/56".to_string(),
                b("alice", "2001:db8:100::/56"),
            ),
        ]);
        assert_eq!(
            shown(&diff(&before, &after)),
            [
                "release 192.0.2.11",
                "bind 192.0.2.12 dave 192.0.2.12/32",
                "bind 2001:db8:100::/56 alice 2001:db8:100::/56",
            ]
        );
        assert!(diff(&after, &after).is_empty());
    }

    /// Applies every event as the daemon would accept it.
    fn step(f: &mut Follower, now: u64) -> Vec<String> {
        let events = f.step(now);
        for e in &events {
            f.answered(e, &Ok(()), now);
        }
        shown(&events)
    }

    /// A follower of `dir`'s v4 lease file (returned), nothing held, with the mapping `map`.
    fn follower(dir: &tempfile::TempDir, map: &str) -> (Follower, std::path::PathBuf) {
        let leases = dir.path().join("leases4.csv");
        let map_path = dir.path().join("map.csv");
        std::fs::write(&map_path, map).unwrap();
        let identities = Identities::load(&map_path).unwrap();
        let f = Follower::new(
            vec![(Family::V4, leases.clone())],
            map_path,
            identities,
            Vec::new(),
        );
        (f, leases)
    }

    #[test]
    fn leases_bind_renew_expire_release_and_decline_by_quid_s_clock() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, leases) = follower(
            &dir,
            "key,value,subscriber\nhwaddr,aa:bb:cc:00:00:01,alice\nhwaddr,aa:bb:cc:00:00:02,bob\n",
        );
        let lease = |addr: &str, mac: u8, valid: u32, expire: u64, state: u8| {
            format!("{addr},aa:bb:cc:00:00:0{mac},,{valid},{expire},1,0,0,,{state},\n")
        };
        append(&leases, HEADER);
        append(&leases, &lease("192.0.2.10", 1, 4, 1004, 0));
        append(&leases, &lease("192.0.2.11", 2, 4, 1004, 0));
        append(&leases, &lease("192.0.2.12", 3, 4, 1004, 0));
        assert_eq!(
            step(&mut f, 1000),
            [
                "bind 192.0.2.10 alice 192.0.2.10/32",
                "bind 192.0.2.11 bob 192.0.2.11/32"
            ],
            "192.0.2.12 is nobody's"
        );
        // A renewal changes nothing the daemon holds.
        append(&leases, &lease("192.0.2.10", 1, 4, 1006, 0));
        assert!(step(&mut f, 1002).is_empty());
        // bob's lease expires by the clock (Kea writes nothing at that moment).
        assert_eq!(step(&mut f, 1004), ["release 192.0.2.11"]);
        // alice releases hers (lifetime 0); bob gets an address and declines it.
        append(&leases, &lease("192.0.2.10", 1, 0, 1005, 0));
        append(&leases, &lease("192.0.2.13", 2, 4, 1009, 0));
        assert_eq!(
            step(&mut f, 1005),
            ["release 192.0.2.10", "bind 192.0.2.13 bob 192.0.2.13/32"]
        );
        append(&leases, &lease("192.0.2.13", 2, 4, 1009, 1));
        assert_eq!(step(&mut f, 1005), ["release 192.0.2.13"]);
        // The address is handed to alice; then reclaimed.
        append(&leases, &lease("192.0.2.13", 1, 4, 1010, 0));
        assert_eq!(step(&mut f, 1006), ["bind 192.0.2.13 alice 192.0.2.13/32"]);
        append(&leases, &lease("192.0.2.13", 1, 4, 1010, 2));
        assert_eq!(step(&mut f, 1006), ["release 192.0.2.13"]);
    }

    #[test]
    fn sessions_taken_up_from_the_last_run_are_released_unless_still_leased() {
        let dir = tempfile::tempdir().unwrap();
        let leases = dir.path().join("leases4.csv");
        let map_path = dir.path().join("map.csv");
        std::fs::write(
            &map_path,
            "key,value,subscriber\nhwaddr,aa:bb:cc:00:00:01,alice\n",
        )
        .unwrap();
        let map = Identities::load(&map_path).unwrap();
        append(&leases, HEADER);
        append(
            &leases,
            "192.0.2.10,aa:bb:cc:00:00:01,,1000,2000,1,0,0,,0,\n",
        );
        append(&leases, "192.0.2.11,aa:bb:cc:00:00:01,,100,990,1,0,0,,0,\n");
        let held = |addr: &str| {
            (
                addr.to_string(),
                "alice".to_string(),
                format!("{addr}/32").parse().unwrap(),
            )
        };
        let mut f = Follower::new(
            vec![(Family::V4, leases)],
            map_path,
            map,
            vec![held("192.0.2.10"), held("192.0.2.11"), held("192.0.2.12")],
        );
        // .11 expired and .12 is gone while quid was down; .10 is leased as held, and bound
        // again as every lease is at the first step and every RESYNC_SECS.
        assert_eq!(
            step(&mut f, 1000),
            [
                "release 192.0.2.11",
                "release 192.0.2.12",
                "bind 192.0.2.10 alice 192.0.2.10/32"
            ]
        );
        assert!(step(&mut f, 1001).is_empty());
        assert_eq!(
            step(&mut f, 1000 + RESYNC_SECS),
            ["bind 192.0.2.10 alice 192.0.2.10/32"]
        );
    }

    #[test]
    fn a_refused_bind_is_not_released_and_is_asked_again_later() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, leases) = follower(
            &dir,
            "key,value,subscriber\nhwaddr,aa:bb:cc:00:00:01,ghost\n",
        );
        append(&leases, HEADER);
        append(
            &leases,
            "192.0.2.10,aa:bb:cc:00:00:01,,100,1100,1,0,0,,0,\n",
        );
        let events = f.step(1000);
        assert_eq!(events.len(), 1);
        f.answered(
            &events[0],
            &Err(Refusal::UnknownSubscriber("ghost".into())),
            1000,
        );
        assert!(f.step(1001).is_empty(), "not asked again at once");
        assert_eq!(f.step(1000 + RETRY_SECS).len(), 1, "asked again later");
        f.answered(
            &events[0],
            &Err(Refusal::NotInstalled("disk full".into())),
            1030,
        );
        assert_eq!(
            f.step(1031).len(),
            1,
            "a change not installed is asked again"
        );
        f.answered(
            &events[0],
            &Err(Refusal::UnknownSubscriber("ghost".into())),
            1031,
        );
        // It expires: the daemon never held it, so nothing is released.
        assert!(f.step(1100).is_empty());
    }
}
