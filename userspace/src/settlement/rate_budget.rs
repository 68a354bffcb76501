//! The intake's rate budgets, so that nobody can spend another's: work for a request that
//! does not authenticate (unknown node, unreadable, bad signature) is charged to its source
//! address (an IPv6 /64 counts as one address); a node's own budget is charged only once its
//! signature verifies, so forgeries naming a node cannot lock the node out.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    time::Instant,
};

/// A rate budget: `rate` requests a second sustained, `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Tokens added per second.
    pub rate: f64,
    /// Most tokens saved up.
    pub burst: f64,
}

/// A token bucket of a [`Budget`].
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Tokens now, after refilling since the last use.
    fn refill(&mut self, budget: Budget, now: Instant) -> f64 {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * budget.rate)
            .min(budget.burst);
        self.at = now;
        self.tokens
    }
}

/// Most source addresses with a bucket: beyond it, new addresses share one overflow bucket,
/// so a spray of addresses cannot grow the table.
const MAX_SOURCES: usize = 4096;

/// Where unauthenticated work is charged: the address, or its /64 for IPv6 (one subscriber
/// line usually holds a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The per-node and per-source buckets of the intake.
#[derive(Debug)]
pub struct RateBudgets {
    per_node: Budget,
    per_source: Budget,
    nodes: HashMap<String, Bucket>,
    /// Unauthenticated work per source; `None` is the overflow bucket.
    sources: HashMap<Option<IpAddr>, Bucket>,
}

impl RateBudgets {
    /// Full buckets for everyone, refilled at `per_node` and `per_source`.
    pub fn new(per_node: Budget, per_source: Budget) -> RateBudgets {
        RateBudgets {
            per_node,
            per_source,
            nodes: HashMap::new(),
            sources: HashMap::new(),
        }
    }

    /// Takes a token from a registered node's bucket (only after its signature verified:
    /// only registered nodes get a bucket, so random ids cannot grow the table).
    pub fn allow_node(&mut self, node: &str) -> bool {
        let now = Instant::now();
        let budget = self.per_node;
        let b = self.nodes.entry(node.to_owned()).or_insert(Bucket {
            tokens: budget.burst,
            at: now,
        });
        if b.refill(budget, now) >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The bucket key for `source`: its own while the table has room, else the overflow one.
    fn source_slot(&mut self, source: IpAddr) -> Option<IpAddr> {
        let key = Some(source_key(source));
        if self.sources.contains_key(&key) || self.sources.len() < MAX_SOURCES {
            return key;
        }
        // Full: forget addresses whose bucket has refilled (they are owed nothing).
        let (budget, now) = (self.per_source, Instant::now());
        self.sources
            .retain(|k, b| k.is_none() || b.refill(budget, now) < budget.burst);
        if self.sources.len() < MAX_SOURCES {
            key
        } else {
            None
        }
    }

    /// Whether `source` has budget left for unauthenticated work (nothing is taken).
    pub fn source_has_budget(&mut self, source: IpAddr) -> bool {
        let slot = self.source_slot(source);
        let (budget, now) = (self.per_source, Instant::now());
        self.sources
            .get_mut(&slot)
            .is_none_or(|b| b.refill(budget, now) >= 1.0)
    }

    /// Charges one unauthenticated request to `source`.
    pub fn charge_source(&mut self, source: IpAddr) {
        let slot = self.source_slot(source);
        let (budget, now) = (self.per_source, Instant::now());
        let b = self.sources.entry(slot).or_insert(Bucket {
            tokens: budget.burst,
            at: now,
        });
        b.refill(budget, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}
