//! The admission rules for node reports: what a report must satisfy before it may earn
//! anything. Pure: the caller supplies the node, its history and the clock, so every rule is
//! tested on its own and the HTTP layer only maps the outcome to a status.

use crate::{
    settlement::nodes::{Node, Nodes},
    settlement::report::{EnergySource, MAX_FIGURE, Period, Report, quote},
};

/// Limits from the config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest period one report may cover, in seconds.
    pub max_period_secs: i64,
    /// How far in the future a period may end (clock skew between node and router).
    pub max_skew_secs: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_period_secs: 86_400,
            max_skew_secs: 300,
        }
    }
}

/// What admission needs to remember of one node: a constant few bytes however many reports
/// it has sent (the store holds the reports themselves).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The highest sequence number accepted.
    pub last_seq: Option<u64>,
    /// Signature bytes of the last accepted report, so its resubmission is recognised without
    /// a look-up (older ones are looked up in the store). Bytes, not hex text: a copy with a
    /// letter's case changed is the same report.
    pub last_signature: Option<[u8; 64]>,
    /// End of the latest accepted period: a node reports in time order, so a new period may
    /// not start before it.
    pub last_end: Option<i64>,
}

impl History {
    fn overlaps(&self, p: Period) -> bool {
        self.last_end.is_some_and(|end| p.start < end)
    }

    /// Records an accepted report (in memory; the store holds the durable copy).
    pub fn accept(&mut self, r: &Report, p: Period) {
        self.record(r.seq, r.signature_bytes().ok(), p);
    }

    /// Records an accepted report by its sequence number, signature and period (also what
    /// the store replays after a restart).
    pub fn record(&mut self, seq: u64, signature: Option<[u8; 64]>, p: Period) {
        if self.last_seq.is_none_or(|last| seq > last) {
            self.last_seq = Some(seq);
            self.last_signature = signature;
        }
        self.last_end = Some(self.last_end.map_or(p.end, |e| e.max(p.end)));
    }
}

/// Why a report was refused; `code` is what the HTTP answer and the metrics carry. Text from
/// the request is quoted short ([`crate::settlement::report::quote`]) before it gets here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// No node of that id is registered.
    #[error("node `{0}` is not registered")]
    UnknownNode(String),
    /// The body is not a readable version 2 report.
    #[error("the report cannot be read: {0}")]
    Malformed(String),
    /// The signature is not the node's over the canonical bytes.
    #[error("the signature does not verify with the node's registered key")]
    BadSignature,
    /// The sequence number does not rise.
    #[error("sequence number {got} is not above the last accepted, {last}")]
    StaleSequence { got: u64, last: u64 },
    /// The period is empty or reversed.
    #[error("the period ends before it starts, or is empty")]
    EmptyPeriod,
    /// The period is longer than allowed.
    #[error("the period lasts {secs} s, longer than the {max} s allowed")]
    PeriodTooLong { secs: i64, max: i64 },
    /// The period ends too far in the future.
    #[error("the period ends {ahead} s in the future (at most {skew} s of clock skew allowed)")]
    FuturePeriod { ahead: i64, skew: i64 },
    /// The period overlaps the node's last accepted one.
    #[error(
        "the period starts before the end of this node's last accepted period (reports must come in time order, without overlap)"
    )]
    OverlappingPeriod,
    /// An integer the store cannot hold exactly (SQLite INTEGER is an i64).
    #[error("{field} of {value} is above {max}, the largest figure the books can hold exactly", max = MAX_FIGURE)]
    OutOfRange { field: &'static str, value: u64 },
    /// More than the node's declared capacity could supply in the period.
    #[error(
        "{resource} of {claimed} exceeds the node's declared capacity for the period ({allowed})"
    )]
    ExceedsCapacity {
        resource: &'static str,
        claimed: u64,
        allowed: u128,
    },
    /// The figures contradict each other.
    #[error("the claims contradict each other: {0}")]
    Implausible(&'static str),
    #[error(
        "the period starts at {start}, before the time quid meters for this node (from {}): \
         a node can only report for time after it was registered and its subscriber's traffic \
         was metered",
        from.map_or("never: its subscriber is not in the books".to_owned(), |t| t.to_string())
    )]
    UnmeteredPeriod { start: i64, from: Option<i64> },
}

impl Rejection {
    /// The machine-readable reason: the HTTP answer's `reason` and the metrics label.
    pub fn code(&self) -> &'static str {
        self.reason().as_str()
    }

    /// The kind of rejection, without its details.
    pub fn reason(&self) -> Reason {
        match self {
            Rejection::UnknownNode(_) => Reason::UnknownNode,
            Rejection::Malformed(_) => Reason::Malformed,
            Rejection::BadSignature => Reason::BadSignature,
            Rejection::StaleSequence { .. } => Reason::StaleSequence,
            Rejection::EmptyPeriod => Reason::EmptyPeriod,
            Rejection::PeriodTooLong { .. } => Reason::PeriodTooLong,
            Rejection::FuturePeriod { .. } => Reason::FuturePeriod,
            Rejection::OverlappingPeriod => Reason::OverlappingPeriod,
            Rejection::OutOfRange { .. } => Reason::OutOfRange,
            Rejection::ExceedsCapacity { .. } => Reason::ExceedsCapacity,
            Rejection::UnmeteredPeriod { .. } => Reason::UnmeteredPeriod,
            Rejection::Implausible(_) => Reason::Implausible,
        }
    }
}

/// Why a report was refused, as a closed set: every code the intake answers and counts comes
/// from here, so a code cannot be misspelt in one place and not another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    UnknownNode,
    Malformed,
    BadSignature,
    StaleSequence,
    EmptyPeriod,
    PeriodTooLong,
    FuturePeriod,
    OverlappingPeriod,
    OutOfRange,
    ExceedsCapacity,
    UnmeteredPeriod,
    Implausible,
}

impl Reason {
    /// Every reason, for metrics that must exist before the first rejection.
    pub const ALL: [Reason; 12] = [
        Reason::UnknownNode,
        Reason::Malformed,
        Reason::BadSignature,
        Reason::StaleSequence,
        Reason::EmptyPeriod,
        Reason::PeriodTooLong,
        Reason::FuturePeriod,
        Reason::OverlappingPeriod,
        Reason::OutOfRange,
        Reason::ExceedsCapacity,
        Reason::UnmeteredPeriod,
        Reason::Implausible,
    ];

    /// The code as it appears in answers, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownNode => "unknown_node",
            Reason::Malformed => "malformed",
            Reason::BadSignature => "bad_signature",
            Reason::StaleSequence => "stale_sequence",
            Reason::EmptyPeriod => "empty_period",
            Reason::PeriodTooLong => "period_too_long",
            Reason::FuturePeriod => "future_period",
            Reason::OverlappingPeriod => "overlapping_period",
            Reason::OutOfRange => "out_of_range",
            Reason::ExceedsCapacity => "exceeds_capacity",
            Reason::UnmeteredPeriod => "unmetered_period",
            Reason::Implausible => "implausible",
        }
    }
}

/// The outcome for a report that passed every rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// New: record it, then acknowledge.
    Accept(Period),
    /// Exactly the report already accepted under this sequence number: answer as recorded.
    AlreadyRecorded,
}

/// The first rules: the node is registered, the report readable and signed by the node's key.
/// Only what passes here may cost the node anything (its rate budget, a store look-up).
pub fn authenticate<'a>(r: &Report, nodes: &'a Nodes) -> Result<(&'a Node, Period), Rejection> {
    let node = nodes
        .by_id
        .get(&r.node)
        .ok_or_else(|| Rejection::UnknownNode(quote(&r.node)))?;
    let period = r
        .period()
        .map_err(|e| Rejection::Malformed(e.to_string()))?;
    let verified = r
        .verify(&node.key)
        .map_err(|e| Rejection::Malformed(e.to_string()))?;
    if !verified {
        return Err(Rejection::BadSignature);
    }
    Ok((node, period))
}

/// The rules for an authenticated report of `node`, at unix time `now`. `metered_from` is
/// the earliest time the books can back for the node (the later of when quid first saw it
/// registered and when its subscriber was first metered); `None` when its subscriber was
/// never metered.
pub fn check(
    r: &Report,
    node: &Node,
    period: Period,
    history: Option<&History>,
    now: i64,
    limits: Limits,
    metered_from: Option<i64>,
) -> Result<Admission, Rejection> {
    if let Some(h) = history {
        if h.last_seq == Some(r.seq) && h.last_signature == r.signature_bytes().ok() {
            return Ok(Admission::AlreadyRecorded);
        }
        if let Some(last) = h.last_seq
            && r.seq <= last
        {
            return Err(Rejection::StaleSequence { got: r.seq, last });
        }
    }
    // Checked before anything reads a figure as a number of the books: a u64 above i64::MAX
    // would be stored wrapped (u64::MAX as -1) and settle as if nothing had been claimed.
    for (field, value) in r.figures() {
        if value > MAX_FIGURE {
            return Err(Rejection::OutOfRange { field, value });
        }
    }
    let secs = period.seconds();
    if secs <= 0 {
        return Err(Rejection::EmptyPeriod);
    }
    if secs > limits.max_period_secs {
        return Err(Rejection::PeriodTooLong {
            secs,
            max: limits.max_period_secs,
        });
    }
    if period.end > now.saturating_add(limits.max_skew_secs) {
        return Err(Rejection::FuturePeriod {
            ahead: period.end.saturating_sub(now),
            skew: limits.max_skew_secs,
        });
    }
    if history.is_some_and(|h| h.overlaps(period)) {
        return Err(Rejection::OverlappingPeriod);
    }
    // Exact integer bounds: u32 x i64 x 10^6 and u64 x i64 both fit a u128.
    let d = u128::try_from(secs).map_err(|_| Rejection::EmptyPeriod)?;
    const MICRO: u128 = 1_000_000;
    for (resource, claimed, allowed) in [
        (
            "cpu_core_micros",
            r.cpu_core_micros,
            u128::from(node.cpu_cores) * d * MICRO,
        ),
        (
            "storage_byte_seconds",
            r.storage_byte_seconds,
            u128::from(node.storage_bytes) * d,
        ),
        (
            "energy_microjoules",
            r.energy_microjoules,
            // A version 3 report that names no energy source has no meter to claim from.
            if r.energy_source == Some(EnergySource::None) {
                0
            } else {
                u128::from(node.max_watts) * d * MICRO
            },
        ),
    ] {
        if u128::from(claimed) > allowed {
            return Err(Rejection::ExceedsCapacity {
                resource,
                claimed,
                allowed,
            });
        }
    }
    // CPU and energy against each other: a device whose energy meter (a plug, RAPL) saw
    // nothing in the period did no computing either. (Each is bounded by the declared
    // capacity above: cores x time, max_watts x time.)
    if r.cpu_core_micros > 0
        && r.energy_microjoules == 0
        && r.energy_source.is_some_and(|s| s != EnergySource::None)
    {
        return Err(Rejection::Implausible(
            "CPU time is claimed, but the energy meter saw no energy in the period",
        ));
    }
    // Grid bytes are stored and summed as i64: a claim beyond it would wrap in the store.
    if i64::try_from(r.grid_bytes_sent)
        .ok()
        .zip(i64::try_from(r.grid_bytes_received).ok())
        .and_then(|(a, b)| a.checked_add(b))
        .is_none()
    {
        return Err(Rejection::OutOfRange {
            field: "grid_bytes_sent + grid_bytes_received",
            value: r.grid_bytes_sent.saturating_add(r.grid_bytes_received),
        });
    }
    // Last: only a report that is right in every other way learns what the books metered.
    if metered_from.is_none_or(|from| period.start < from) {
        return Err(Rejection::UnmeteredPeriod {
            start: period.start,
            from: metered_from,
        });
    }
    Ok(Admission::Accept(period))
}

/// Applies every rule, in order, to `r` at unix time `now` (see [`check`] for `metered_from`).
pub fn admit(
    r: &Report,
    nodes: &Nodes,
    history: Option<&History>,
    now: i64,
    limits: Limits,
    metered_from: Option<i64>,
) -> Result<Admission, Rejection> {
    let (node, period) = authenticate(r, nodes)?;
    check(r, node, period, history, now, limits, metered_from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{settlement::nodes::Node, settlement::report::rfc3339};
    use ed25519_dalek::SigningKey;

    const NOW: i64 = 1_795_600_000;

    fn setup() -> (Nodes, SigningKey) {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let nodes = Nodes::from_iter([Node {
            id: "pi".into(),
            subscriber: "alice".into(),
            key: key.verifying_key(),
            cpu_cores: 4,
            storage_bytes: 1_000,
            max_watts: 10,
        }]);
        (nodes, key)
    }

    /// A signed one-hour report ending `end_ago` seconds before NOW.
    fn report(key: &SigningKey, seq: u64, end_ago: i64, edit: impl FnOnce(&mut Report)) -> Report {
        let mut r = Report {
            node: "pi".into(),
            seq,
            period_start: rfc3339(NOW - end_ago - 3600),
            period_end: rfc3339(NOW - end_ago),
            cpu_core_micros: 3_600_000_000,
            storage_byte_seconds: 1_000 * 3600,
            energy_microjoules: 36_000_000_000,
            energy_source: None,
            grid_bytes_sent: 10,
            grid_bytes_received: 20,
            signature: String::new(),
        };
        edit(&mut r);
        // An unreadable report cannot be signed: it gets a well-formed but wrong signature.
        if r.sign(key).is_err() {
            r.signature = "00".repeat(64);
        }
        r
    }

    /// The books have metered the node since a day before NOW.
    const FROM: i64 = NOW - 86_400;

    fn code(r: &Report, nodes: &Nodes, h: Option<&History>) -> &'static str {
        match admit(r, nodes, h, NOW, Limits::default(), Some(FROM)) {
            Ok(Admission::Accept(_)) => "accept",
            Ok(Admission::AlreadyRecorded) => "already_recorded",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn every_rule_refuses_what_it_should_and_nothing_else() {
        let (nodes, key) = setup();
        let mut h = History::default();
        let first = report(&key, 5, 7200, |_| {});
        assert_eq!(code(&first, &nodes, Some(&h)), "accept");
        h.accept(&first, first.period().unwrap());
        assert_eq!(code(&first, &nodes, Some(&h)), "already_recorded");

        let cases: Vec<(&str, Report)> = vec![
            (
                "unknown_node",
                report(&key, 6, 0, |r| r.node = "ghost".into()),
            ),
            ("bad_signature", {
                let mut r = report(&key, 6, 0, |_| {});
                r.energy_microjoules = 1;
                r
            }),
            (
                "bad_signature",
                report(&SigningKey::from_bytes(&[1u8; 32]), 6, 0, |_| {}),
            ),
            (
                "malformed",
                report(&key, 6, 0, |r| r.period_end = "yesterday".into()),
            ),
            ("stale_sequence", report(&key, 5, 0, |_| {})),
            ("stale_sequence", report(&key, 4, 0, |_| {})),
            (
                "empty_period",
                report(&key, 6, 0, |r| r.period_start = r.period_end.clone()),
            ),
            (
                "period_too_long",
                report(&key, 6, 0, |r| r.period_start = rfc3339(NOW - 2 * 86_400)),
            ),
            ("future_period", report(&key, 6, -3600, |_| {})),
            ("overlapping_period", report(&key, 6, 5400, |_| {})),
            (
                "out_of_range",
                report(&key, 6, 0, |r| r.grid_bytes_sent = u64::MAX),
            ),
            (
                "out_of_range",
                report(&key, 6, 0, |r| r.grid_bytes_received = 1 << 63),
            ),
            ("out_of_range", report(&key, 1 << 63, 0, |_| {})),
            (
                "exceeds_capacity",
                report(&key, 6, 0, |r| r.cpu_core_micros = 4 * 3_600_000_000 + 1),
            ),
            (
                "exceeds_capacity",
                report(&key, 6, 0, |r| r.energy_microjoules = 36_000_000_001),
            ),
            // Energy claimed by a version 3 report that names no source.
            (
                "exceeds_capacity",
                report(&key, 6, 0, |r| {
                    r.energy_source = Some(EnergySource::None);
                    r.energy_microjoules = 1;
                }),
            ),
            (
                "implausible",
                report(&key, 6, 0, |r| {
                    r.energy_source = Some(EnergySource::Shelly);
                    r.energy_microjoules = 0;
                }),
            ),
            (
                "out_of_range",
                report(&key, 6, 0, |r| r.grid_bytes_sent = u64::MAX),
            ),
            (
                "out_of_range",
                report(&key, 6, 0, |r| {
                    r.grid_bytes_sent = i64::MAX as u64;
                    r.grid_bytes_received = 1;
                }),
            ),
        ];
        for (want, r) in &cases {
            assert_eq!(code(r, &nodes, Some(&h)), *want, "{r:?}");
        }
        // Right at the limits is fine: full capacity, a period ending within the skew, and a
        // period that starts exactly where the accepted one ended.
        let edge = report(&key, 6, -300, |r| {
            r.period_start = rfc3339(NOW - 7200);
            r.period_end = rfc3339(NOW + 300);
            r.cpu_core_micros = 4 * 7500 * 1_000_000;
            r.storage_byte_seconds = 1_000 * 7500;
            r.energy_microjoules = 10 * 7500 * 1_000_000;
            // The grid figures must fit the books together, too.
            r.grid_bytes_sent = MAX_FIGURE;
            r.grid_bytes_received = 0;
        });
        assert_eq!(code(&edge, &nodes, Some(&h)), "accept");
        // Before the books metered the node (1969, 1970, a second early): refused, whatever
        // the node's history.
        for (start, end) in [(-3600, 0), (0, 3600), (FROM - 1, FROM + 3599)] {
            let old = report(&key, 6, 0, |r| {
                r.period_start = rfc3339(start);
                r.period_end = rfc3339(end);
            });
            assert_eq!(code(&old, &nodes, None), "unmetered_period", "{old:?}");
        }
        // A subscriber never metered backs no report at all.
        assert_eq!(
            admit(&edge, &nodes, Some(&h), NOW, Limits::default(), None)
                .unwrap_err()
                .code(),
            "unmetered_period"
        );
        // A copy of the accepted report with its signature in capitals is the same report.
        let mut shouted = first.clone();
        shouted.signature = first.signature.to_uppercase();
        assert_eq!(code(&shouted, &nodes, Some(&h)), "already_recorded");
        // Every reason the intake registers is one a real refusal above produced, by name:
        // a code spelt differently in the list and in the rule would show here.
        let mut reached: std::collections::BTreeSet<&str> = cases.iter().map(|(c, _)| *c).collect();
        reached.insert("unmetered_period");
        let registered: std::collections::BTreeSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(reached, registered);
    }
}
