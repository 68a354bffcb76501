//! What the fleet's books hold, read back: each router's shipping state (for
//! `quid cluster status` and the lag), a subscriber's usage summed over routers, and the
//! reports held once with every router's copy.

use quid_common::{DIR_CLASS_PAIRS, SubscriberCounters};

use super::{SharedError, SharedStore, count};
use crate::store::{tiers::COUNTERS, usage::unflat};

/// One router's shipping state in the shared store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouterState {
    pub router: String,
    /// The last outbox batch applied.
    pub last_seq: i64,
    /// Its usage is in the shared store up to here (unix seconds).
    pub covered_until: i64,
    /// When it last shipped (unix seconds, its clock).
    pub shipped_at: i64,
    /// Batches and (subscriber, hour) rows it has shipped.
    pub batches: i64,
    pub usage_rows: i64,
}

/// A subscriber's usage in the shared store: per router, and summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedUsage {
    /// Each router's counts over the range, by router id.
    pub by_router: Vec<(String, SubscriberCounters)>,
    /// The sum over routers.
    pub total: SubscriberCounters,
}

impl SharedStore {
    /// Every router that ever shipped, by id.
    pub async fn routers(&self) -> Result<Vec<RouterState>, SharedError> {
        let rows = self
            .client
            .query(
                "SELECT router, last_seq, covered_until, shipped_at, batches, usage_rows
                 FROM quid_routers ORDER BY router",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| RouterState {
                router: r.get(0),
                last_seq: r.get(1),
                covered_until: r.get(2),
                shipped_at: r.get(3),
                batches: r.get(4),
                usage_rows: r.get(5),
            })
            .collect())
    }

    /// `subscriber`'s usage in the hours starting in `[from, to)`, per router and summed.
    pub async fn usage(
        &self,
        subscriber: &str,
        from: i64,
        to: i64,
    ) -> Result<SharedUsage, SharedError> {
        let sums = COUNTERS.map(|c| format!("sum({c})::text")).join(", ");
        let cols = COUNTERS.join(", ");
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT router, {sums} FROM (
                       SELECT router, start, {cols} FROM quid_usage_hour WHERE subscriber = $1
                       UNION ALL
                       SELECT router, start, {cols} FROM quid_usage_delta WHERE subscriber = $1
                     ) u WHERE start >= $2 AND start < $3
                     GROUP BY router ORDER BY router"
                ),
                &[&subscriber, &from, &to],
            )
            .await?;
        let mut out = SharedUsage::default();
        for r in &rows {
            let mut v = [0u64; 2 * DIR_CLASS_PAIRS];
            for (i, x) in v.iter_mut().enumerate() {
                let n = count(r.get::<_, &str>(i + 1))?;
                *x = u64::try_from(n).unwrap_or(u64::MAX);
            }
            let c = unflat(&v);
            out.total.add(&c);
            out.by_router.push((r.get(0), c));
        }
        Ok(out)
    }

    /// Reports held (each once), and how many of them some router holds a different copy of
    /// (a node that signed two reports under one number).
    pub async fn report_counts(&self) -> Result<(u64, u64), SharedError> {
        let r = self
            .client
            .query_one(
                "SELECT (SELECT count(*) FROM quid_reports),
                   (SELECT count(DISTINCT (c.node, c.seq)) FROM quid_report_copies c
                      JOIN quid_reports r ON r.node = c.node AND r.seq = c.seq
                     WHERE c.signature <> r.signature)",
                &[],
            )
            .await?;
        let n = |i| r.get::<_, i64>(i).cast_unsigned();
        Ok((n(0), n(1)))
    }
}
