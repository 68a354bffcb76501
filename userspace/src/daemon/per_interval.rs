//! What the daemon does once per interval, in order: read the counters into the books, retry
//! a postponed table change, settle the reports the books now cover, issue last month's
//! statements, then write the totals snapshot and render the exposition from it.

use log::{error, info};
use quid_common::{DIR_DOWNLOAD, DIR_UPLOAD};

use crate::{
    kernel::counters,
    ledger::statement_issue::{self, IssueError},
    metering::{interval::IntervalSummary, snapshot::DaemonState},
};

use crate::settlement::matching::StorageProof;

use super::state::State;

/// The time each interval may spend folding month digests: a day at a million subscribers
/// (about 120 batches) folds over a few dozen intervals.
const FOLD_BUDGET_MS: u64 = 200;

impl State<'_> {
    /// One interval's work; every step's failure is logged and retried next interval.
    pub fn on_interval(&mut self) {
        let secs = self.config.daemon.interval_secs;
        match self.read_interval() {
            Ok(summary) => {
                log_summary(&summary, secs);
                self.retire_removed();
                self.feed_accounting_out();
                if self.reload_pending {
                    self.reload("postponed until the store took writes again");
                }
            }
            Err(e) => error!(
                "reading the counters failed (the kernel keeps them; will retry next interval): {e:#}"
            ),
        }
        self.settle();
        self.issue_statements();
        self.fold_month_digests();
        self.roll_up();
        self.checkpoint();
        match self.snapshot(DaemonState::Running) {
            Ok(snap) => {
                if let Err(e) = snap.write(&self.config.daemon.state_dir) {
                    error!("cannot write the totals snapshot: {e}");
                }
                self.publish(&snap);
            }
            Err(e) => error!("cannot read the interface counters: {e:#}"),
        }
    }

    /// Hands the books' running totals to the accounting client (its own thread).
    fn feed_accounting_out(&self) {
        let Some(out) = &self.accounting_out else {
            return;
        };
        match self.clock.now() {
            Ok(now) => out.feed(self.books.records(), now),
            Err(e) => error!("accounting out: no tally this interval: {e}"),
        }
    }

    /// Settles the reports the books now cover.
    fn settle(&mut self) {
        let Some(intake) = &self.intake else { return };
        let Ok(nodes) = intake.lock().map(|i| i.nodes()) else {
            return;
        };
        // Challenges nobody answered fail before their periods are judged.
        if let Some(audits) = &self.audits {
            let swept = self
                .clock
                .now_ms()
                .map_err(|e| e.to_string())
                .and_then(|now| match audits.lock() {
                    Ok(mut book) => book.sweep(now).map_err(|e| e.to_string()),
                    Err(_) => Err("the audit book is unavailable".to_owned()),
                });
            if let Err(e) = swept {
                error!("storage audits: the schedule could not advance (will retry): {e}");
            }
        }
        match self.books.settle(
            &nodes,
            &self.config.settlement,
            if self.audits.is_some() {
                StorageProof::Audits
            } else {
                StorageProof::Declared
            },
        ) {
            Ok(settled) => {
                for s in settled {
                    info!(
                        "report {}#{} of {} {}: reported {} grid bytes, metered {}; credit {} µcr{}",
                        s.node,
                        s.seq,
                        s.subscriber,
                        s.outcome,
                        s.reported,
                        s.measured,
                        s.credit,
                        s.storage_reduction.map_or(String::new(), |r| format!(
                            "; storage {} byte-seconds credited ({})",
                            s.storage_credited,
                            r.as_str()
                        ))
                    );
                }
            }
            Err(e) => error!("settling reports failed (will retry next interval): {e:#}"),
        }
    }

    /// Rolls usage up into the coarser tiers after settlement, one bounded batch per interval
    /// (a backlog, e.g. after a migration, is worked off over the following intervals).
    fn roll_up(&mut self) {
        match self.books.roll_up(&self.config.store.keep) {
            Ok(p) if p.rows > 0 => info!(
                "rolled up {} usage rows{}",
                p.rows,
                if p.done { "" } else { " (more next interval)" }
            ),
            Ok(_) => {}
            Err(e) => error!("rolling usage up failed (will retry next interval): {e:#}"),
        }
    }

    /// Folds closed days into the month digests within a time budget (before the roll-up, so
    /// no hour rolls into a day unfolded); a backlog continues next interval.
    fn fold_month_digests(&mut self) {
        let budget = std::time::Duration::from_millis(FOLD_BUDGET_MS);
        match crate::planner::month_fold::fold(self.books.store(), budget) {
            Ok(p) if p.days > 0 => info!(
                "month digests: {} day(s) folded ({} subscribers){}",
                p.days,
                p.subscribers,
                if p.caught_up {
                    ""
                } else {
                    " (more next interval)"
                }
            ),
            Ok(_) => {}
            Err(e) => error!("folding the month digests failed (will retry next interval): {e:#}"),
        }
        let keep = &self.config.store.keep;
        match self
            .clock
            .now_i64()
            .map_err(anyhow::Error::from)
            .and_then(|now| {
                Ok(crate::planner::month_fold::drop_expired(
                    self.books.store(),
                    now,
                    keep.daily_secs,
                )?)
            }) {
            Ok(0) => {}
            Ok(n) => info!("month digests: {n} expired digests dropped"),
            Err(e) => error!("dropping expired month digests failed (will retry): {e:#}"),
        }
    }

    /// Issues the statements of the month just ended, once (with an operator key).
    fn issue_statements(&mut self) {
        let Some(key_path) = &self.config.settlement.operator_key else {
            return;
        };
        // A month's statements hold its last period's debit, which the first interval commit
        // after the boundary writes: wait for it (a failed read delays it to the next one).
        let month_start = self
            .clock
            .now()
            .and_then(|now| crate::ledger::period::SettlementPeriod::Monthly.bounds(now));
        if let (Ok((start, _)), Some(pending)) = (month_start, self.books.pending_period())
            && pending < start
        {
            return;
        }
        let issued = self
            .clock
            .now_i64()
            .map_err(IssueError::from)
            .and_then(|now| {
                statement_issue::issue_due(
                    self.books.store(),
                    self.books.records().map(|r| r.id.as_str()),
                    key_path,
                    &self.config.daemon.state_dir,
                    now,
                )
            });
        match issued {
            Ok(None) => {}
            Ok(Some(i)) => info!(
                "issued {} statements for {} in {}",
                i.count,
                i.period,
                i.dir.display()
            ),
            Err(e) => error!("{e}"),
        }
    }
}

impl State<'_> {
    /// Signs a checkpoint of the ledger's head when none was signed for
    /// `[settlement] checkpoint_seconds` and the head moved since, or there is none yet (which
    /// seals the chain of a store written by an older quid on the first start with a key).
    fn checkpoint(&mut self) {
        let Some(key_path) = &self.config.settlement.operator_key else {
            return;
        };
        let every = crate::store::secs(self.config.settlement.checkpoint_seconds);
        let store = self.books.store();
        let due = match (
            self.clock.now_i64(),
            store.last_checkpoint(),
            store.ledger_head(),
        ) {
            (Ok(now), Ok(last), Ok((head, _))) => match last {
                None => Some(now),
                Some(c) => (c.checkpoint.ledger_seq != head
                    && now.saturating_sub(c.checkpoint.at) >= every)
                    .then_some(now),
            },
            (Err(e), _, _) => return error!("no checkpoint: {e}"),
            (_, Err(e), _) | (_, _, Err(e)) => {
                return error!("no checkpoint (will retry next interval): {e}");
            }
        };
        let Some(now) = due else { return };
        let signed = crate::settlement::node_client::read_key(key_path)
            .and_then(|key| Ok(store.write_checkpoint(&key, now, None)?));
        match signed {
            Ok(s) => info!(
                "checkpoint {} signed: ledger entry {}",
                s.checkpoint.number, s.checkpoint.ledger_seq
            ),
            Err(e) => error!("no checkpoint (will retry next interval): {e:#}"),
        }
    }
}

/// Logs what the interval counted.
fn log_summary(s: &IntervalSummary, secs: u64) {
    let up = counters::direction(&s.delta, DIR_UPLOAD);
    let down = counters::direction(&s.delta, DIR_DOWNLOAD);
    info!(
        "last {secs}s: {} active subscribers; upload {} pkts {} B, download {} pkts {} B",
        s.active, up.packets, up.bytes, down.packets, down.bytes
    );
}
