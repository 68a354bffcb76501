//! What a binding source asks the daemon, and the answer it gets once the change is in the
//! kernel maps.

use std::fmt;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

/// Where a binding came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BindingSource {
    /// RADIUS accounting from a BNG or PPPoE concentrator.
    Radius,
    /// A DHCP server's leases.
    Dhcp,
}

impl BindingSource {
    /// Every source, in the order metrics list them.
    pub const ALL: [BindingSource; 2] = [BindingSource::Radius, BindingSource::Dhcp];

    /// The name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BindingSource::Radius => "radius",
            BindingSource::Dhcp => "dhcp",
        }
    }
}

/// One session of one source. RADIUS: `<NAS-IP-Address or NAS-Identifier>/<Acct-Session-Id>`;
/// DHCP: the lease's address (Kea keys a lease by it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    pub source: BindingSource,
    pub id: String,
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} session {}", self.source.as_str(), self.id)
    }
}

/// What a source asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingEvent {
    /// `subscriber` (an id of the table) holds `prefixes` from now on. A Bind for a session
    /// that exists replaces its prefixes (Interim-Update, a renewed lease); a prefix another
    /// session holds moves to this one: the newest claim wins, as a dynamic address handed to
    /// someone else is theirs.
    Bind {
        session: SessionKey,
        subscriber: String,
        prefixes: Vec<IpNet>,
    },
    /// The session ended (Accounting-Stop, a lease expired or released): its prefixes are free.
    Release { session: SessionKey },
}

impl BindingEvent {
    /// The session the event is about.
    pub fn session(&self) -> &SessionKey {
        match self {
            BindingEvent::Bind { session, .. } | BindingEvent::Release { session } => session,
        }
    }
}

/// Why a binding was not applied. Nothing of a refused event is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("subscriber `{0}` is not in the subscriber table; add it (prefixes `dynamic`)")]
    UnknownSubscriber(String),
    #[error(
        "{prefix} is listed for subscriber `{owner}` in the subscriber table; a live binding \
         cannot take a listed prefix (remove it from the table, or fix the pool)"
    )]
    ConflictsWithTable { prefix: IpNet, owner: String },
    #[error("bad prefix: {0}")]
    BadPrefix(String),
    #[error("{count} prefixes in one session; at most {max} are taken")]
    TooManyPrefixes { count: usize, max: usize },
    #[error("{0} live sessions already; the binding is refused (raise [bindings] max_sessions)")]
    TooManySessions(usize),
    #[error("the kernel maps or the books cannot take the change: {0}")]
    NotInstalled(String),
    #[error("the daemon is stopping or cannot be reached")]
    Unavailable,
}

impl Refusal {
    /// The outcome metrics count it under.
    pub fn outcome(&self) -> Outcome {
        match self {
            Refusal::UnknownSubscriber(_) => Outcome::UnknownSubscriber,
            Refusal::ConflictsWithTable { .. } => Outcome::ConflictsWithTable,
            Refusal::BadPrefix(_) | Refusal::TooManyPrefixes { .. } => Outcome::BadPrefix,
            Refusal::TooManySessions(_) => Outcome::TooManySessions,
            Refusal::NotInstalled(_) | Refusal::Unavailable => Outcome::NotInstalled,
        }
    }
}

/// What became of an event, as metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A Bind applied: a new session, or new prefixes for one.
    Bound,
    /// A Bind that changed nothing (an Interim-Update or a renewal with the same prefixes).
    Unchanged,
    /// A Release applied.
    Released,
    /// A Release of a session quid does not hold (never bound, or released already).
    UnknownSession,
    UnknownSubscriber,
    ConflictsWithTable,
    BadPrefix,
    TooManySessions,
    NotInstalled,
}

impl Outcome {
    /// Every outcome, in the order metrics list them.
    pub const ALL: [Outcome; 9] = [
        Outcome::Bound,
        Outcome::Unchanged,
        Outcome::Released,
        Outcome::UnknownSession,
        Outcome::UnknownSubscriber,
        Outcome::ConflictsWithTable,
        Outcome::BadPrefix,
        Outcome::TooManySessions,
        Outcome::NotInstalled,
    ];

    /// The label value in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Bound => "bound",
            Outcome::Unchanged => "unchanged",
            Outcome::Released => "released",
            Outcome::UnknownSession => "unknown_session",
            Outcome::UnknownSubscriber => "unknown_subscriber",
            Outcome::ConflictsWithTable => "conflicts_with_table",
            Outcome::BadPrefix => "bad_prefix",
            Outcome::TooManySessions => "too_many_sessions",
            Outcome::NotInstalled => "not_installed",
        }
    }
}

/// An applied event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Whether the kernel maps changed (false for a repeat of what holds already).
    pub changed: bool,
}

/// The daemon's answer, sent once the change is in the kernel maps.
pub type BindingReply = Result<Applied, Refusal>;

/// A request: the event, and where to answer (`None`: nobody waits).
#[derive(Debug)]
pub struct BindingRequest {
    pub event: BindingEvent,
    pub reply: Option<oneshot::Sender<BindingReply>>,
}

/// How many requests may wait for the daemon before a source waits too.
const QUEUE: usize = 4096;

/// The handle a source sends its events through (cheap to clone).
#[derive(Debug, Clone)]
pub struct BindingSender(mpsc::Sender<BindingRequest>);

/// A sender for the sources and the daemon's end of the queue.
pub fn channel() -> (BindingSender, mpsc::Receiver<BindingRequest>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (BindingSender(tx), rx)
}

impl BindingSender {
    /// Queues `event` behind every event queued before it, waiting only for room in the
    /// queue, and returns where its answer will come: a source that must keep its events in
    /// order (RADIUS) queues in order and awaits the answers apart. A closed queue answers
    /// at once (the receiver reads a dropped sender: [`Refusal::Unavailable`]).
    pub async fn queue(&self, event: BindingEvent) -> oneshot::Receiver<BindingReply> {
        let (reply, answer) = oneshot::channel();
        let request = BindingRequest {
            event,
            reply: Some(reply),
        };
        // On a closed queue the request, and with it the reply's sender, is dropped here.
        let _ = self.0.send(request).await;
        answer
    }

    /// Sends `event` and waits until it is applied (or refused): for a source on a plain
    /// thread (not on the async runtime).
    pub fn send_blocking(&self, event: BindingEvent) -> BindingReply {
        let (reply, answer) = oneshot::channel();
        let request = BindingRequest {
            event,
            reply: Some(reply),
        };
        self.0
            .blocking_send(request)
            .map_err(|_| Refusal::Unavailable)?;
        answer.blocking_recv().map_err(|_| Refusal::Unavailable)?
    }
}
