//! What became of each request the accounting client sent and each datagram it received,
//! counted for `quid_radius_accounting_out_total{outcome}`.

use crate::radius::outcome::{Labelled, OutcomeCounts};

/// One event of the accounting client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A request sent for the first time.
    Sent,
    /// A request sent again with the same Identifier and authenticator (no answer yet).
    Retransmitted,
    /// An Accounting-Response whose Response Authenticator verifies: the request is done.
    Accepted,
    /// A response that does not verify (wrong secret, forged, for another request): ignored.
    BadResponse,
    /// A datagram from another address, not a RADIUS Accounting-Response, or for no request
    /// in flight: ignored.
    Unexpected,
    /// No valid answer after every attempt: given up (the next Interim-Update carries the
    /// same cumulative octets and more).
    GaveUp,
    /// An Interim-Update still waiting to be sent was replaced by a newer one of its session.
    Superseded,
    /// The socket refused to send (retried as a retransmission).
    SendFailed,
    /// The request could not be written (a subscriber id longer than RADIUS allows).
    Unsendable,
}

impl Outcome {
    /// Every outcome, in the order of the metric's series.
    pub const ALL: [Outcome; 9] = [
        Outcome::Sent,
        Outcome::Retransmitted,
        Outcome::Accepted,
        Outcome::BadResponse,
        Outcome::Unexpected,
        Outcome::GaveUp,
        Outcome::Superseded,
        Outcome::SendFailed,
        Outcome::Unsendable,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retransmitted => "retransmitted",
            Outcome::Accepted => "accepted",
            Outcome::BadResponse => "bad_response",
            Outcome::Unexpected => "unexpected",
            Outcome::GaveUp => "gave_up",
            Outcome::Superseded => "superseded",
            Outcome::SendFailed => "send_failed",
            Outcome::Unsendable => "unsendable",
        }
    }
}

impl Labelled for Outcome {
    const ALL: &'static [Outcome] = &Outcome::ALL;

    fn label(self) -> &'static str {
        Outcome::label(self)
    }
}

/// The accounting client's counts.
pub type Counts = OutcomeCounts<Outcome>;
