//! The accounting client on the wire: each request keeps its Identifier and Request
//! Authenticator (the same bytes) through every retransmission until an Accounting-Response
//! with a valid Response Authenticator arrives; the wait doubles each time (bounded), and a
//! request without a valid answer after `attempts` sends is given up. A response that does
//! not verify is ignored and counted. Up to 256 requests are in flight (one per Identifier);
//! the rest wait, and a waiting Interim-Update is replaced by its session's newer one.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::{IpNet, Ipv4Net};

use super::{
    config::AccountingOut,
    outcome::{Counts, Outcome},
    sessions::Record,
};
use crate::radius::{
    attributes::StatusType,
    authenticator::verify_response,
    packet::{Code, MAX_PACKET_LEN, Packet},
    request::Request,
};

/// A place in the queue of requests not yet sent.
enum Waiting {
    /// A Start or Stop.
    Record(Record),
    /// The Interim-Update of this session waiting in `Client::interims`.
    Interim(String),
}

/// A request sent and not yet answered.
struct InFlight {
    bytes: Vec<u8>,
    authenticator: [u8; 16],
    /// Sends so far.
    sends: u32,
    /// When it is sent again (or given up).
    due: Instant,
}

/// The accounting client's socket and its requests.
pub struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    out: AccountingOut,
    in_flight: BTreeMap<u8, InFlight>,
    /// Requests not yet sent, in order; an Interim-Update by its session in `interims`.
    waiting: VecDeque<Waiting>,
    /// The waiting Interim-Update of each session (at most one: a newer one replaces it).
    interims: HashMap<String, Record>,
    next_id: u8,
    counts: Arc<Counts>,
}

/// The signed bytes of `r`.
fn encode(
    r: &Record,
    identifier: u8,
    out: &AccountingOut,
) -> Result<Vec<u8>, crate::radius::packet::BuildError> {
    let prefixes: Vec<IpNet> = r
        .framed_ipv4
        .map(|a: Ipv4Addr| IpNet::V4(Ipv4Net::from(a)))
        .into_iter()
        .collect();
    Request {
        status: Some(r.status),
        session_id: r.session_id.as_bytes(),
        user_name: r.user_name.as_bytes(),
        nas_identifier: out.config.nas_identifier.as_bytes(),
        prefixes: &prefixes,
        event_timestamp: Some(r.at),
        session_time: Some(r.session_time),
        input_octets: Some(r.input),
        output_octets: Some(r.output),
        message_authenticator: out.config.message_authenticator,
    }
    .encode(identifier, &out.secret)
}

impl Client {
    /// A socket on an ephemeral port of the server's family, connected to the server (the
    /// kernel then drops datagrams from any other address).
    pub fn new(out: AccountingOut, counts: Arc<Counts>) -> std::io::Result<Client> {
        let server = out.config.server;
        let any: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(any)?;
        socket.connect(server)?;
        Ok(Client {
            socket,
            server,
            out,
            in_flight: BTreeMap::new(),
            waiting: VecDeque::new(),
            interims: HashMap::new(),
            next_id: 0,
            counts,
        })
    }

    /// Requests sent and not answered, and requests not yet sent.
    pub fn pending(&self) -> (usize, usize) {
        (self.in_flight.len(), self.waiting.len())
    }

    /// Queues `records`; a waiting Interim-Update of the same session is replaced (the newer
    /// one carries its octets and more), in constant time, so a backlog stays one Interim per
    /// session.
    pub fn queue(&mut self, records: Vec<Record>) {
        for r in records {
            if r.status != StatusType::InterimUpdate {
                self.waiting.push_back(Waiting::Record(r));
                continue;
            }
            let id = r.session_id.clone();
            if self.interims.insert(id.clone(), r).is_some() {
                self.counts.add(Outcome::Superseded);
            } else {
                self.waiting.push_back(Waiting::Interim(id));
            }
        }
    }

    /// The next request to send.
    fn next_waiting(&mut self) -> Option<Record> {
        while let Some(w) = self.waiting.pop_front() {
            match w {
                Waiting::Record(r) => return Some(r),
                Waiting::Interim(id) => {
                    if let Some(r) = self.interims.remove(&id) {
                        return Some(r);
                    }
                }
            }
        }
        None
    }

    /// A free Identifier, if fewer than 256 requests are in flight.
    fn free_identifier(&mut self) -> Option<u8> {
        for _ in 0..=u8::MAX {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if !self.in_flight.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    fn send(&self, bytes: &[u8]) -> bool {
        match self.socket.send(bytes) {
            Ok(_) => true,
            Err(e) => {
                log::debug!("accounting out: cannot send to {}: {e}", self.server);
                self.counts.add(Outcome::SendFailed);
                false
            }
        }
    }

    /// Sends what waits, while Identifiers are free.
    pub fn pump(&mut self, now: Instant) {
        while !self.waiting.is_empty() {
            let Some(id) = self.free_identifier() else {
                return;
            };
            let Some(r) = self.next_waiting() else {
                return;
            };
            let bytes = match encode(&r, id, &self.out) {
                Ok(b) => b,
                Err(e) => {
                    log::warn!(
                        "accounting out: cannot write the {:?} of {}: {e}",
                        r.status,
                        r.user_name
                    );
                    self.counts.add(Outcome::Unsendable);
                    continue;
                }
            };
            let mut authenticator = [0; 16];
            authenticator.copy_from_slice(&bytes[4..20]);
            self.send(&bytes);
            self.counts.add(Outcome::Sent);
            self.in_flight.insert(
                id,
                InFlight {
                    bytes,
                    authenticator,
                    sends: 1,
                    due: now + self.out.config.backoff(1),
                },
            );
        }
    }

    /// Sends again what is due (the same bytes), or gives it up after the last attempt.
    pub fn retransmit(&mut self, now: Instant) {
        let due: Vec<u8> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.due <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            let Some(f) = self.in_flight.get(&id) else {
                continue;
            };
            if f.sends >= self.out.config.attempts {
                self.in_flight.remove(&id);
                self.counts.add(Outcome::GaveUp);
                continue;
            }
            self.send(&f.bytes);
            self.counts.add(Outcome::Retransmitted);
            let wait = self.out.config.backoff(f.sends + 1);
            if let Some(f) = self.in_flight.get_mut(&id) {
                f.sends += 1;
                f.due = now + wait;
            }
        }
    }

    /// When the next retransmission is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.in_flight.values().map(|f| f.due).min()
    }

    /// Waits up to `wait` for one datagram and takes it: a verified response ends its request.
    pub fn receive(&mut self, wait: Duration) {
        let wait = wait.max(Duration::from_millis(1));
        if self.socket.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        let mut buf = [0u8; MAX_PACKET_LEN];
        let n = match self.socket.recv(&mut buf) {
            Ok(n) => n,
            // Timed out, or an ICMP error for an earlier send: nothing to take.
            Err(_) => return,
        };
        self.take(&buf[..n]);
    }

    /// Takes one datagram from the server.
    fn take(&mut self, datagram: &[u8]) {
        let Ok(p) = Packet::parse(datagram) else {
            return self.counts.add(Outcome::Unexpected);
        };
        if p.code() != Code::AccountingResponse {
            return self.counts.add(Outcome::Unexpected);
        }
        let Some(f) = self.in_flight.get(&p.identifier()) else {
            return self.counts.add(Outcome::Unexpected);
        };
        if verify_response(&p, &f.authenticator, &self.out.secret) {
            self.in_flight.remove(&p.identifier());
            self.counts.add(Outcome::Accepted);
        } else {
            self.counts.add(Outcome::BadResponse);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::{
        accounting_out::config::AccountingOutConfig,
        attributes::{Accounting, SubscriberAttribute},
        authenticator::{Verdict, sign_response, verify_request},
        packet::Builder,
    };

    fn client(server: SocketAddr, secret: &[u8]) -> (Client, Arc<Counts>) {
        let config: AccountingOutConfig = toml::from_str(&format!(
            "server = \"{server}\"\nsecret_file = \"s\"\nnas_identifier = \"edge-1\"\n\
             timeout_secs = 1\nattempts = 3\n"
        ))
        .unwrap();
        let counts = Arc::new(Counts::default());
        let out = AccountingOut {
            config,
            secret: secret.to_vec(),
        };
        (Client::new(out, Arc::clone(&counts)).unwrap(), counts)
    }

    fn record(status: StatusType, input: u64) -> Record {
        Record {
            status,
            session_id: "1-alice".into(),
            user_name: "alice".into(),
            framed_ipv4: Some(Ipv4Addr::new(100, 64, 0, 1)),
            at: 1_800_000_000,
            session_time: 60,
            input,
            output: 9,
        }
    }

    fn answer(req: &[u8], secret: &[u8]) -> Vec<u8> {
        let auth: [u8; 16] = req[4..20].try_into().unwrap();
        let mut resp = Builder::new(Code::AccountingResponse, req[1], [0; 16]).finish();
        sign_response(&mut resp, &auth, secret);
        resp
    }

    #[test]
    fn retransmissions_repeat_the_bytes_until_a_verified_answer() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let (mut c, counts) = client(server.local_addr().unwrap(), b"k");
        c.queue(vec![record(StatusType::InterimUpdate, 5 << 32 | 7)]);
        let t0 = Instant::now();
        c.pump(t0);
        let mut buf = [0u8; 4096];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        let first = buf[..n].to_vec();
        let p = Packet::parse(&first).unwrap();
        assert!(matches!(
            verify_request(&p, b"k"),
            Verdict::Authentic { .. }
        ));
        let a = Accounting::read(&p, SubscriberAttribute::UserName).unwrap();
        assert_eq!((a.input_octets, a.output_octets), (5 << 32 | 7, 9));
        // Not due yet; then due: the same bytes again.
        c.retransmit(t0 + Duration::from_millis(500));
        c.retransmit(t0 + Duration::from_secs(1));
        let (n, _) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &first[..]);
        // An answer signed with the wrong secret is ignored and counted; the right one ends it.
        server.send_to(&answer(&first, b"wrong"), from).unwrap();
        c.receive(Duration::from_secs(1));
        assert_eq!(counts.get(Outcome::BadResponse), 1);
        assert_eq!(c.pending(), (1, 0));
        server.send_to(&answer(&first, b"k"), from).unwrap();
        c.receive(Duration::from_secs(1));
        assert_eq!(counts.get(Outcome::Accepted), 1);
        assert_eq!(c.pending(), (0, 0));
        // The same answer again matches nothing.
        server.send_to(&answer(&first, b"k"), from).unwrap();
        c.receive(Duration::from_secs(1));
        assert_eq!(counts.get(Outcome::Unexpected), 1);
        assert_eq!(counts.get(Outcome::Retransmitted), 1);
    }

    #[test]
    fn an_unanswered_request_is_given_up_after_its_attempts() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut c, counts) = client(server.local_addr().unwrap(), b"k");
        c.queue(vec![record(StatusType::Stop, 1)]);
        let t0 = Instant::now();
        c.pump(t0);
        // 1 s, then 2 s more: the third send; the next due time gives up.
        c.retransmit(t0 + Duration::from_secs(1));
        c.retransmit(t0 + Duration::from_secs(3));
        assert_eq!(c.pending(), (1, 0));
        c.retransmit(t0 + Duration::from_secs(7));
        assert_eq!(c.pending(), (0, 0));
        assert_eq!(counts.get(Outcome::Retransmitted), 2);
        assert_eq!(counts.get(Outcome::GaveUp), 1);
    }

    #[test]
    fn a_waiting_interim_is_replaced_by_its_sessions_newer_one() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut c, counts) = client(server.local_addr().unwrap(), b"k");
        c.queue(vec![
            record(StatusType::InterimUpdate, 1),
            record(StatusType::InterimUpdate, 2),
        ]);
        assert_eq!(c.pending(), (0, 1));
        assert_eq!(c.next_waiting().map(|r| r.input), Some(2));
        assert!(c.next_waiting().is_none());
        assert_eq!(counts.get(Outcome::Superseded), 1);
    }
}
