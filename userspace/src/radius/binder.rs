//! What the listener needs from the daemon: a queue of binding changes, applied in the order
//! submitted, each answered once it is in the kernel maps.

use std::{future::Future, pin::Pin};

use super::sessions::Change;

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
