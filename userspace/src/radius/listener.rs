//! The accounting listener: one UDP socket; each datagram is matched to its client,
//! authenticated, checked against retransmissions and its session, turned into binding
//! changes, and answered once the daemon has applied them. RFC 2866: a request from an unknown
//! client or with a bad authenticator is dropped silently; one quid cannot record is not
//! answered, so the NAS retries it.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use log::{info, warn};
use tokio::net::UdpSocket;

use super::{
    attributes::{Accounting, SubscriberAttribute},
    authenticator::{MESSAGE_AUTHENTICATOR, Verdict, sign_response, verify_request},
    binder::{Binder, Reply},
    config::{Clients, RadiusConfig},
    outcome::{Counts, Outcome},
    packet::{Builder, Code, MAX_PACKET_LEN, Packet},
    retransmissions::{RequestId, Retransmissions, Seen},
    sessions::{Decision, Sessions, Unchanged, nas_key},
};
use crate::clock::Clock;

/// Proxy-State (33): copied into the answer unchanged (RFC 2865 section 5.33).
const PROXY_STATE: u8 = 33;
/// Most distinct names logged as unknown (each once); more are only counted.
const MAX_LOGGED: usize = 10_000;
/// Most requests remembered for retransmissions.
const MAX_REMEMBERED: usize = 1 << 20;
/// The socket's receive buffer: room for a few thousand requests queued while the daemon
/// applies a batch (the kernel's default of about 200 KiB drops datagrams from about 300 on,
/// and every dropped request costs its NAS a retransmission timeout).
const RECEIVE_BUFFER: usize = 8 << 20;

/// What the receive loop and the answering tasks share.
struct State {
    sessions: Sessions,
    seen: Retransmissions,
    /// Names (and sources) already logged once.
    logged: HashSet<String>,
}

impl State {
    /// Logs `message` the first time `key` is met.
    fn log_once(&mut self, key: String, message: impl FnOnce() -> String) {
        if self.logged.len() < MAX_LOGGED && self.logged.insert(key) {
            warn!("{}", message());
        }
    }
}

/// What the receive loop does with a request.
enum Step {
    /// Send this answer.
    Answer(Vec<u8>, Outcome),
    /// Drop it.
    Drop(Outcome),
    /// Submit these changes (of this subscriber), answer once applied (or undo).
    Apply(Vec<super::sessions::Change>, super::sessions::Undo, String),
}

/// The running listener.
pub struct Listener<B: Binder> {
    socket: Arc<UdpSocket>,
    clients: Clients,
    by: SubscriberAttribute,
    state: Arc<Mutex<State>>,
    binder: Arc<B>,
    counts: Arc<Counts>,
    clock: Clock,
}

/// Why the listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "radius.listen {addr}: cannot bind the UDP socket: {source} (is another RADIUS server on that port?)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl<B: Binder> Listener<B> {
    /// Binds the socket (so a taken port stops the start at once).
    pub async fn bind(
        config: &RadiusConfig,
        clients: Clients,
        binder: B,
        counts: Arc<Counts>,
        clock: Clock,
    ) -> Result<Listener<B>, ListenError> {
        let socket = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| ListenError::Bind {
                addr: config.listen,
                source,
            })?;
        // CAP_NET_ADMIN may pass net.core.rmem_max; without it the kernel caps the size there.
        if nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::RcvBufForce,
            &RECEIVE_BUFFER,
        )
        .is_err()
        {
            let _ = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::RcvBuf,
                &RECEIVE_BUFFER,
            );
        }
        Ok(Listener {
            socket: Arc::new(socket),
            clients,
            by: config.subscriber_attribute,
            state: Arc::new(Mutex::new(State {
                sessions: Sessions::new(config.replay_window_secs, config.max_sessions),
                seen: Retransmissions::new(config.duplicate_window_secs, MAX_REMEMBERED),
                logged: HashSet::new(),
            })),
            binder: Arc::new(binder),
            counts,
            clock,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives and handles datagrams until the socket fails.
    pub async fn run(self) -> std::io::Result<()> {
        // One byte more than the largest packet, so an oversized datagram is seen as one.
        let mut buf = vec![0u8; MAX_PACKET_LEN + 1];
        loop {
            let (n, src) = self.socket.recv_from(&mut buf).await?;
            self.handle(&buf[..n], src).await;
        }
    }

    fn now(&self) -> u64 {
        self.clock.now().unwrap_or(0)
    }

    /// Handles one datagram from `src`.
    async fn handle(&self, data: &[u8], src: SocketAddr) {
        let Some(client) = self.clients.find(src.ip()) else {
            self.counts.add(Outcome::UnknownClient);
            self.lock().log_once(format!("client {}", src.ip()), || {
                format!(
                    "radius: dropped a datagram from {}, which no [[radius.client]] covers (logged once per address)",
                    src.ip()
                )
            });
            return;
        };
        let Ok(packet) = Packet::parse(data) else {
            self.counts.add(Outcome::Malformed);
            return;
        };
        if packet.code() != Code::AccountingRequest {
            self.counts.add(Outcome::NotAccounting);
            return;
        }
        match verify_request(&packet, &client.secret) {
            Verdict::BadRequestAuthenticator => {
                self.counts.add(Outcome::BadAuthenticator);
                return;
            }
            Verdict::BadMessageAuthenticator => {
                self.counts.add(Outcome::BadMessageAuthenticator);
                return;
            }
            Verdict::Authentic {
                message_authenticator: false,
            } if client.require_message_authenticator => {
                self.counts.add(Outcome::BadMessageAuthenticator);
                return;
            }
            Verdict::Authentic { .. } => {}
        }
        let id: RequestId = (src, packet.identifier(), packet.authenticator());
        let now = self.now();
        let step = {
            let mut state = self.lock();
            self.decide(&mut state, &packet, &client.secret, id, now)
        };
        let (changes, undo, subscriber) = match step {
            Step::Answer(response, outcome) => {
                self.counts.add(outcome);
                let _ = self.socket.send_to(&response, src).await;
                return;
            }
            Step::Drop(outcome) => {
                self.counts.add(outcome);
                return;
            }
            Step::Apply(changes, undo, subscriber) => (changes, undo, subscriber),
        };
        // Submitted here, in arrival order; answered by a task of its own, so the next
        // datagram is read while the daemon applies this one.
        let mut pending = Vec::with_capacity(changes.len());
        for change in changes {
            pending.push(self.binder.submit(change).await);
        }
        let response = response(&packet, &client.secret);
        let state = Arc::clone(&self.state);
        let socket = Arc::clone(&self.socket);
        let counts = Arc::clone(&self.counts);
        let clock = self.clock.clone();
        tokio::spawn(async move {
            let mut result = Reply::Applied;
            for reply in pending {
                let reply = reply.await;
                // The worst answer decides: unavailable, then refused, then unknown.
                let rank = |r: &Reply| match r {
                    Reply::Applied => 0,
                    Reply::UnknownSubscriber => 1,
                    Reply::Refused(_) => 2,
                    Reply::Unavailable(_) => 3,
                };
                if rank(&reply) > rank(&result) {
                    result = reply;
                }
            }
            let now = clock.now().unwrap_or(0);
            let outcome = {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                match &result {
                    Reply::Applied => Outcome::Applied,
                    Reply::UnknownSubscriber => {
                        state.log_once(format!("subscriber {subscriber}"), || {
                            format!(
                                "radius: {subscriber:?} is not in the subscriber table: its addresses are not bound (logged once per name)"
                            )
                        });
                        Outcome::UnknownSubscriber
                    }
                    Reply::Refused(why) => {
                        warn!("radius: binding for {subscriber:?} refused: {why}");
                        Outcome::Refused
                    }
                    Reply::Unavailable(why) => {
                        state.sessions.undo(undo);
                        state.seen.forget(&id);
                        info!(
                            "radius: binding for {subscriber:?} not applied now ({why}); the NAS will send it again"
                        );
                        Outcome::Unavailable
                    }
                }
            };
            counts.add(outcome);
            if outcome == Outcome::Unavailable {
                return;
            }
            state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .seen
                .answered(id, response.clone(), now);
            let _ = socket.send_to(&response, src).await;
        });
    }

    /// What to do with an authentic request, under the state's lock (nothing awaited).
    fn decide(
        &self,
        state: &mut State,
        packet: &Packet<'_>,
        secret: &[u8],
        id: RequestId,
        now: u64,
    ) -> Step {
        match state.seen.get(&id, now) {
            Some(Seen::Answered(response)) => {
                return Step::Answer(response.clone(), Outcome::Retransmission);
            }
            Some(Seen::Pending) => return Step::Drop(Outcome::Retransmission),
            None => {}
        }
        let src = id.0;
        let acct = match Accounting::read(packet, self.by) {
            Ok(a) => a,
            Err(e) => {
                state.log_once(format!("attributes {} {e}", src.ip()), || {
                    format!(
                        "radius: dropped a request from {}: {e} (logged once per client and reason)",
                        src.ip()
                    )
                });
                return Step::Drop(Outcome::BadAttributes);
            }
        };
        let nas = nas_key(acct.nas, src.ip());
        let (decision, undo) = state.sessions.decide(&nas, &acct, now);
        match decision {
            Decision::Apply(changes) => {
                state.seen.pending(id, now);
                Step::Apply(
                    changes,
                    undo,
                    String::from_utf8_lossy(acct.subscriber).into_owned(),
                )
            }
            Decision::Unchanged(why) => {
                let response = response(packet, secret);
                state.seen.answered(id, response.clone(), now);
                let outcome = match why {
                    Unchanged::Same => Outcome::Unchanged,
                    Unchanged::Stale | Unchanged::AfterStop | Unchanged::TooOld => {
                        Outcome::Replayed
                    }
                };
                Step::Answer(response, outcome)
            }
            Decision::Full => {
                state.log_once("sessions full".into(), || {
                    "radius: too many sessions followed (radius.max_sessions): new sessions are not answered until stopped ones are forgotten".into()
                });
                Step::Drop(Outcome::SessionsFull)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The Accounting-Response to an authentic request: its identifier, its Proxy-States, a
/// Message-Authenticator when the request had one, signed with the client's secret.
fn response(request: &Packet<'_>, secret: &[u8]) -> Vec<u8> {
    let mut b = Builder::new(Code::AccountingResponse, request.identifier(), [0; 16]);
    let mut with_ma = false;
    for a in request.attributes() {
        // The request fitted in 4096 bytes, so its Proxy-States fit in the answer.
        if a.kind == PROXY_STATE {
            let _ = b.attribute(PROXY_STATE, a.value);
        }
        with_ma |= a.kind == MESSAGE_AUTHENTICATOR;
    }
    if with_ma {
        let _ = b.attribute(MESSAGE_AUTHENTICATOR, &[0; 16]);
    }
    let mut bytes = b.finish();
    sign_response(&mut bytes, &request.authenticator(), secret);
    bytes
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt as _, time::Duration};

    use super::*;
    use crate::radius::{
        attributes::StatusType, authenticator::verify_response, binder::PendingReply,
        request::Request, sessions::Change,
    };

    /// Records every change; answers by the subscriber's name.
    #[derive(Default, Clone)]
    struct Fake {
        changes: Arc<Mutex<Vec<Change>>>,
        busy_once: Arc<Mutex<bool>>,
    }

    impl Binder for Fake {
        async fn submit(&self, change: Change) -> PendingReply {
            self.changes.lock().unwrap().push(change.clone());
            let busy = std::mem::replace(&mut *self.busy_once.lock().unwrap(), false);
            Box::pin(async move {
                match change {
                    Change::Bind { subscriber, .. } if subscriber == "ghost" => {
                        Reply::UnknownSubscriber
                    }
                    _ if busy => Reply::Unavailable("store busy".into()),
                    _ => Reply::Applied,
                }
            })
        }
    }

    struct Rig {
        nas: UdpSocket,
        fake: Fake,
        counts: Arc<Counts>,
        _dir: tempfile::TempDir,
    }

    async fn rig(client: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config: RadiusConfig = toml::from_str(&format!(
            "listen = \"127.0.0.1:0\"\n[[client]]\naddress = \"{client}\"\nsecret_file = {secret:?}\n"
        ))
        .unwrap();
        let fake = Fake::default();
        let counts = Arc::new(Counts::default());
        let listener = Listener::bind(
            &config,
            Clients::load(&config).unwrap(),
            fake.clone(),
            Arc::clone(&counts),
            Clock::manual(1_800_000_000),
        )
        .await
        .unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(listener.run());
        let nas = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        nas.connect(addr).await.unwrap();
        Rig {
            nas,
            fake,
            counts,
            _dir: dir,
        }
    }

    impl Rig {
        /// Sends `bytes`; the answer, if one comes within 300 ms.
        async fn ask(&self, bytes: &[u8]) -> Option<Vec<u8>> {
            self.nas.send(bytes).await.unwrap();
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_millis(300), self.nas.recv(&mut buf))
                .await
                .ok()?
                .unwrap();
            Some(buf[..n].to_vec())
        }

        fn changes(&self) -> Vec<Change> {
            self.fake.changes.lock().unwrap().clone()
        }
    }

    fn start<'a>(user: &'a [u8], session: &'a [u8], prefixes: &'a [ipnet::IpNet]) -> Request<'a> {
        Request {
            status: Some(StatusType::Start),
            session_id: session,
            user_name: user,
            nas_identifier: b"bng-1",
            prefixes,
            event_timestamp: Some(1_800_000_000),
            ..Request::default()
        }
    }

    #[tokio::test]
    async fn a_start_is_answered_once_applied_and_its_retransmission_is_not_applied_again() {
        let r = rig("127.0.0.1").await;
        let p: Vec<ipnet::IpNet> = vec!["100.64.0.9/32".parse().unwrap()];
        let req = start(b"alice", b"s1", &p).encode(1, b"s3cret").unwrap();
        let answer = r.ask(&req).await.expect("answered");
        let answer = Packet::parse(&answer).unwrap();
        assert_eq!(answer.code(), Code::AccountingResponse);
        assert_eq!(answer.identifier(), 1);
        assert!(verify_response(
            &answer,
            &req[4..20].try_into().unwrap(),
            b"s3cret"
        ));
        assert_eq!(
            r.changes(),
            vec![Change::Bind {
                session: "bng-1/s1".into(),
                subscriber: "alice".into(),
                prefixes: p.clone()
            }]
        );
        // The same datagram again: the same answer, nothing applied again.
        assert_eq!(r.ask(&req).await.unwrap(), answer.bytes());
        // The same Start with another identifier (a NAS resending it): answered, not applied.
        assert!(
            r.ask(&start(b"alice", b"s1", &p).encode(2, b"s3cret").unwrap())
                .await
                .is_some()
        );
        assert_eq!(r.changes().len(), 1);
        assert_eq!(r.counts.get(Outcome::Applied), 1);
        assert_eq!(r.counts.get(Outcome::Retransmission), 1);
        assert_eq!(r.counts.get(Outcome::Replayed), 1);
    }

    #[tokio::test]
    async fn forgeries_are_dropped_silently_and_counted() {
        let r = rig("127.0.0.1").await;
        let p: Vec<ipnet::IpNet> = vec!["100.64.0.9/32".parse().unwrap()];
        // The wrong secret.
        assert_eq!(
            r.ask(&start(b"alice", b"s1", &p).encode(1, b"guess").unwrap())
                .await,
            None
        );
        // A good packet with one bit of its address flipped after signing.
        let mut forged = start(b"alice", b"s1", &p).encode(2, b"s3cret").unwrap();
        let at = forged.len() - 1 - 4 - 2;
        forged[at] ^= 1;
        assert_eq!(r.ask(&forged).await, None);
        // A bad Message-Authenticator under a good request authenticator.
        let mut with_ma = start(b"alice", b"s1", &p);
        with_ma.message_authenticator = true;
        let mut bad_ma = with_ma.encode(3, b"s3cret").unwrap();
        let n = bad_ma.len();
        bad_ma[n - 1] ^= 1;
        let auth = crate::radius::authenticator::request_authenticator(&bad_ma, b"s3cret");
        bad_ma[4..20].copy_from_slice(&auth);
        assert_eq!(r.ask(&bad_ma).await, None);
        // Garbage and an Access-Request.
        assert_eq!(r.ask(&[4, 1, 0, 3]).await, None);
        let mut access = start(b"alice", b"s1", &p).encode(4, b"s3cret").unwrap();
        access[0] = 1;
        assert_eq!(r.ask(&access).await, None);
        assert!(r.changes().is_empty());
        assert_eq!(r.counts.get(Outcome::BadAuthenticator), 2);
        assert_eq!(r.counts.get(Outcome::BadMessageAuthenticator), 1);
        assert_eq!(r.counts.get(Outcome::Malformed), 1);
        assert_eq!(r.counts.get(Outcome::NotAccounting), 1);
        // The genuine one still works after all that.
        assert!(
            r.ask(&start(b"alice", b"s1", &p).encode(5, b"s3cret").unwrap())
                .await
                .is_some()
        );
        assert_eq!(r.changes().len(), 1);
    }

    #[tokio::test]
    async fn a_start_replayed_after_its_stop_changes_nothing() {
        let r = rig("127.0.0.1").await;
        let p: Vec<ipnet::IpNet> = vec!["100.64.0.9/32".parse().unwrap()];
        assert!(
            r.ask(&start(b"alice", b"s1", &p).encode(1, b"s3cret").unwrap())
                .await
                .is_some()
        );
        let stop = Request {
            status: Some(StatusType::Stop),
            session_time: Some(90),
            ..start(b"alice", b"s1", &[])
        };
        assert!(r.ask(&stop.encode(2, b"s3cret").unwrap()).await.is_some());
        // The Start again, as a new request (another identifier, so no retransmission).
        assert!(
            r.ask(&start(b"alice", b"s1", &p).encode(3, b"s3cret").unwrap())
                .await
                .is_some()
        );
        assert_eq!(r.changes().len(), 2, "{:?}", r.changes());
        assert_eq!(r.counts.get(Outcome::Replayed), 1);
    }

    #[tokio::test]
    async fn an_unknown_client_is_dropped_silently() {
        let r = rig("192.0.2.0/24").await;
        let req = start(b"alice", b"s1", &[]).encode(1, b"s3cret").unwrap();
        assert_eq!(r.ask(&req).await, None);
        assert_eq!(r.counts.get(Outcome::UnknownClient), 1);
        assert!(r.changes().is_empty());
    }

    #[tokio::test]
    async fn an_unknown_subscriber_is_answered_and_counted() {
        let r = rig("127.0.0.1").await;
        let req = start(b"ghost", b"s1", &[]).encode(1, b"s3cret").unwrap();
        assert!(r.ask(&req).await.is_some());
        assert_eq!(r.counts.get(Outcome::UnknownSubscriber), 1);
    }

    #[tokio::test]
    async fn a_change_not_applied_is_not_answered_and_its_retry_applies() {
        let r = rig("127.0.0.1").await;
        *r.fake.busy_once.lock().unwrap() = true;
        let req = start(b"alice", b"s1", &[]).encode(1, b"s3cret").unwrap();
        assert_eq!(r.ask(&req).await, None);
        assert_eq!(r.counts.get(Outcome::Unavailable), 1);
        assert!(r.ask(&req).await.is_some());
        assert_eq!(r.counts.get(Outcome::Applied), 1);
        assert_eq!(r.changes().len(), 2);
    }
}
