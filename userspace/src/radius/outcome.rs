//! What became of each datagram at the accounting port, counted for
//! `quid_radius_requests_total{outcome}`.

use std::sync::atomic::{AtomicU64, Ordering};

/// One datagram's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Bound or released, then answered.
    Applied,
    /// Newer, but the session already holds exactly this: answered, nothing moved.
    Unchanged,
    /// Older than what its session reported, after its Stop, or past the replay window:
    /// answered, nothing changed.
    Replayed,
    /// The same request again (source, identifier, authenticator): answered again, or dropped
    /// while the first copy is being applied.
    Retransmission,
    /// The subscriber attribute names nobody in the table: answered, nothing bound.
    UnknownSubscriber,
    /// The daemon refused the binding for good (a prefix the table file gives someone else):
    /// answered, nothing bound.
    Refused,
    /// The daemon could not apply it now (kernel tables full, store unavailable): not
    /// answered, so the NAS sends it again.
    Unavailable,
    /// Too many sessions followed: not answered.
    SessionsFull,
    /// From an address no `[[radius.client]]` covers: dropped.
    UnknownClient,
    /// Not a RADIUS packet (lengths): dropped.
    Malformed,
    /// A RADIUS packet other than an Accounting-Request: dropped.
    NotAccounting,
    /// Request Authenticator wrong (wrong secret or forged): dropped.
    BadAuthenticator,
    /// Message-Authenticator wrong, or missing where required: dropped.
    BadMessageAuthenticator,
    /// Authentic, but its attributes are malformed or missing: dropped.
    BadAttributes,
}

impl Outcome {
    /// Every outcome, in the order of the metric's series.
    pub const ALL: [Outcome; 14] = [
        Outcome::Applied,
        Outcome::Unchanged,
        Outcome::Replayed,
        Outcome::Retransmission,
        Outcome::UnknownSubscriber,
        Outcome::Refused,
        Outcome::Unavailable,
        Outcome::SessionsFull,
        Outcome::UnknownClient,
        Outcome::Malformed,
        Outcome::NotAccounting,
        Outcome::BadAuthenticator,
        Outcome::BadMessageAuthenticator,
        Outcome::BadAttributes,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Replayed => "replayed",
            Outcome::Retransmission => "retransmission",
            Outcome::UnknownSubscriber => "unknown_subscriber",
            Outcome::Refused => "refused",
            Outcome::Unavailable => "unavailable",
            Outcome::SessionsFull => "sessions_full",
            Outcome::UnknownClient => "unknown_client",
            Outcome::Malformed => "malformed",
            Outcome::NotAccounting => "not_accounting",
            Outcome::BadAuthenticator => "bad_authenticator",
            Outcome::BadMessageAuthenticator => "bad_message_authenticator",
            Outcome::BadAttributes => "bad_attributes",
        }
    }
}

impl Labelled for Outcome {
    const ALL: &'static [Outcome] = &Outcome::ALL;

    fn label(self) -> &'static str {
        Outcome::label(self)
    }
}

/// An outcome a metric counts by its label.
pub trait Labelled: Copy + PartialEq + 'static {
    /// Every outcome, in the order of the metric's series.
    const ALL: &'static [Self];
    /// The metric label.
    fn label(self) -> &'static str;
}

/// Running totals per outcome, shared by a RADIUS endpoint's task and the metrics.
#[derive(Debug)]
pub struct OutcomeCounts<O: Labelled> {
    counts: Box<[AtomicU64]>,
    _outcome: std::marker::PhantomData<O>,
}

impl<O: Labelled> Default for OutcomeCounts<O> {
    fn default() -> Self {
        OutcomeCounts {
            counts: O::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            _outcome: std::marker::PhantomData,
        }
    }
}

impl<O: Labelled> OutcomeCounts<O> {
    fn index(outcome: O) -> usize {
        O::ALL.iter().position(|&o| o == outcome).unwrap_or(0)
    }

    /// Counts one event.
    pub fn add(&self, outcome: O) {
        self.counts[Self::index(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// The total of `outcome` so far.
    pub fn get(&self, outcome: O) -> u64 {
        self.counts[Self::index(outcome)].load(Ordering::Relaxed)
    }
}

/// The accounting listener's counts.
pub type Counts = OutcomeCounts<Outcome>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_counter_and_label() {
        let c = Counts::default();
        for (i, o) in Outcome::ALL.iter().enumerate() {
            for _ in 0..=i {
                c.add(*o);
            }
        }
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(c.get(*o), i as u64 + 1, "{o:?}");
        }
        let mut labels: Vec<_> = Outcome::ALL.iter().map(|o| o.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Outcome::ALL.len());
    }
}
