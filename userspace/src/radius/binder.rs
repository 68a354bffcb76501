//! What the listener needs from the daemon: a queue of binding changes, applied in the order
//! submitted, each answered once it is in the kernel maps.

use std::{future::Future, pin::Pin};

use super::sessions::Change;
use crate::bindings::request::{BindingEvent, BindingSender, BindingSource, Refusal, SessionKey};

/// How the daemon answered one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// In the kernel maps now (or nothing had to change).
    Applied,
    /// The subscriber is not in the table: nothing bound.
    UnknownSubscriber,
    /// Refused for good (why): nothing bound; retrying would not help.
    Refused(String),
    /// Not applied now (why): the NAS should retry.
    Unavailable(String),
}

/// The answer to come for one submitted change.
pub type PendingReply = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// The daemon's binding queue.
pub trait Binder: Send + Sync + 'static {
    /// Queues `change` behind every change submitted before it (waiting only for room in the
    /// queue); the returned future resolves once the daemon has applied it.
    fn submit(&self, change: Change) -> impl Future<Output = PendingReply> + Send;
}

/// The daemon's own queue: a change becomes a RADIUS [`BindingEvent`].
impl Binder for BindingSender {
    async fn submit(&self, change: Change) -> PendingReply {
        let key = |id| SessionKey {
            source: BindingSource::Radius,
            id,
        };
        let event = match change {
            Change::Bind {
                session,
                subscriber,
                prefixes,
            } => BindingEvent::Bind {
                session: key(session),
                subscriber,
                prefixes,
            },
            Change::Release { session } => BindingEvent::Release {
                session: key(session),
            },
        };
        let answer = self.queue(event).await;
        Box::pin(async move {
            match answer.await {
                Ok(Ok(_)) => Reply::Applied,
                Ok(Err(Refusal::UnknownSubscriber(_))) => Reply::UnknownSubscriber,
                // Retrying may succeed once sessions end or the books can write again.
                Ok(Err(
                    r @ (Refusal::TooManySessions(_)
                    | Refusal::NotInstalled(_)
                    | Refusal::Unavailable),
                )) => Reply::Unavailable(r.to_string()),
                Ok(Err(
                    r @ (Refusal::ConflictsWithTable { .. }
                    | Refusal::BadPrefix(_)
                    | Refusal::TooManyPrefixes { .. }),
                )) => Reply::Refused(r.to_string()),
                Err(_) => Reply::Unavailable(Refusal::Unavailable.to_string()),
            }
        })
    }
}
