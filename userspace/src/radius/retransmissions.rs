//! Retransmissions (RFC 5080 section 2.2.2): a request with the same source, identifier and
//! authenticator as one seen within the window is the NAS asking again. It is answered with
//! the same response and never applied twice; while the first copy is still being applied,
//! the copy is dropped (the first one's answer will come).

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
};

/// A request's identity on the wire.
pub type RequestId = (SocketAddr, u8, [u8; 16]);

/// What is known of a request seen before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Being applied: no answer yet.
    Pending,
    /// Answered with these bytes.
    Answered(Vec<u8>),
}

/// The requests of the last `window` seconds, at most `max`.
#[derive(Debug)]
pub struct Retransmissions {
    by_id: HashMap<RequestId, (u64, Seen)>,
    order: VecDeque<(u64, RequestId)>,
    window: u64,
    max: usize,
}

impl Retransmissions {
    /// An empty cache.
    pub fn new(window: u64, max: usize) -> Retransmissions {
        Retransmissions {
            by_id: HashMap::new(),
            order: VecDeque::new(),
            window,
            max,
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(at, id)) = self.order.front() {
            if now.saturating_sub(at) < self.window && self.order.len() <= self.max {
                break;
            }
            self.order.pop_front();
            if self.by_id.get(&id).is_some_and(|(t, _)| *t == at) {
                self.by_id.remove(&id);
            }
        }
    }

    /// What is known of `id`, if it was seen within the window.
    pub fn get(&mut self, id: &RequestId, now: u64) -> Option<&Seen> {
        self.expire(now);
        self.by_id.get(id).map(|(_, s)| s)
    }

    /// Records `id` as being applied.
    pub fn pending(&mut self, id: RequestId, now: u64) {
        self.by_id.insert(id, (now, Seen::Pending));
        self.order.push_back((now, id));
        self.expire(now);
    }

    /// Records the answer sent to `id` (it stays for the window from when it was seen).
    pub fn answered(&mut self, id: RequestId, response: Vec<u8>, now: u64) {
        match self.by_id.get_mut(&id) {
            Some((_, seen)) => *seen = Seen::Answered(response),
            None => {
                self.by_id.insert(id, (now, Seen::Answered(response)));
                self.order.push_back((now, id));
            }
        }
        self.expire(now);
    }

    /// Forgets `id` (it was not applied: its retransmission must be tried again).
    pub fn forget(&mut self, id: &RequestId) {
        self.by_id.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> RequestId {
        ("192.0.2.1:4000".parse().unwrap(), n, [n; 16])
    }

    #[test]
    fn a_request_is_remembered_for_the_window_only() {
        let mut r = Retransmissions::new(30, 100);
        assert_eq!(r.get(&id(1), 100), None);
        r.pending(id(1), 100);
        assert_eq!(r.get(&id(1), 101), Some(&Seen::Pending));
        r.answered(id(1), vec![5], 102);
        assert_eq!(r.get(&id(1), 129), Some(&Seen::Answered(vec![5])));
        assert_eq!(r.get(&id(1), 130), None);
        // Another source port or authenticator is another request.
        r.pending(id(2), 200);
        assert_eq!(
            r.get(&("192.0.2.1:4001".parse().unwrap(), 2, [2; 16]), 200),
            None
        );
        assert_eq!(
            r.get(&("192.0.2.1:4000".parse().unwrap(), 2, [3; 16]), 200),
            None
        );
        r.forget(&id(2));
        assert_eq!(r.get(&id(2), 200), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut r = Retransmissions::new(30, 2);
        for n in 0..5 {
            r.pending(id(n), 100);
        }
        assert_eq!(r.get(&id(0), 100), None);
        assert_eq!(r.get(&id(4), 100), Some(&Seen::Pending));
        assert!(r.by_id.len() <= 2);
    }
}
