//! Rendering the exposition once per interval: gathers the daemon's state (lookup generation,
//! map usage, attachments, intake counts, balances and contributions from the store) and puts
//! the rendered text where `/metrics` serves it.

use log::error;

use crate::metering::snapshot::Snapshot;

use super::state::State;

impl State<'_> {
    /// Renders the exposition from the books and `snap` for the next scrapes.
    pub fn publish(&mut self, snap: &Snapshot) {
        self.status.generation = self.registry.active();
        self.status.maps = self.registry.map_usage(self.dp.sizes);
        self.status.attachments = self
            .dp
            .attachments
            .iter()
            .map(|a| {
                // Attached means the kernel has the link on the interface of that name now.
                let attached = nix::net::if_::if_nametoindex(a.name.as_str())
                    .is_ok_and(|i| self.dp.attached_to(&a.name, i));
                (a.name.clone(), a.role.to_string(), a.mode.clone(), attached)
            })
            .collect();
        self.status.reports = self
            .intake
            .as_ref()
            .and_then(|i| i.lock().ok().map(|i| i.counts.clone()));
        self.status.audits = self.audits.as_ref().and_then(|b| {
            b.lock().ok().map(|b| crate::metrics::audits::AuditStatus {
                nodes: b.figures(),
                refusals: b.refusals.clone(),
            })
        });
        let store = self.books.store();
        // Each read stands alone, and a bad balance row skips only its subscriber: one broken
        // figure never freezes everyone else's.
        match store.running_balances() {
            Ok((balances, bad)) => {
                if !bad.is_empty() && bad.len() != self.status.bad_balances {
                    error!(
                        "balances of {} are not exact integers and are left out of the \
                         metrics: recompute them from the ledger",
                        bad.join(", ")
                    );
                }
                self.status.bad_balances = bad.len();
                self.status.balances = balances;
            }
            Err(e) => error!("cannot read balances for the metrics: {e}"),
        }
        self.status.pending = self.books.pending_debits();
        match (store.ledger_head(), store.last_checkpoint()) {
            (Ok((head_seq, _)), Ok(last)) => {
                self.status.anchor = crate::metrics::status::LedgerAnchor {
                    head_seq,
                    checkpoint: last.map(|c| (c.checkpoint.ledger_seq, c.checkpoint.at)),
                };
            }
            (Err(e), _) | (_, Err(e)) => {
                error!("cannot read the ledger head for the metrics: {e}");
            }
        }
        match store.contributions() {
            Ok(c) => self.status.contributions = c,
            Err(e) => error!("cannot read contributions for the metrics: {e}"),
        }
        // The store's size, rows per tier and roll-up lag: one page-count pragma, the counts
        // the commits keep, and each tier's oldest row.
        match store.file_bytes() {
            Ok(b) => self.status.store_bytes = b,
            Err(e) => error!("cannot read the store's size for the metrics: {e}"),
        }
        let mut rows = Vec::new();
        for tier in crate::store::Tier::ALL {
            match store.tier_rows(tier) {
                Ok(n) => rows.push((tier.as_str(), n)),
                Err(e) => error!("cannot count the {} usage rows: {e}", tier.as_str()),
            }
        }
        self.status.store_rows = rows;
        match self.clock.now_i64() {
            Ok(now) => match store.rollup_lag(now, &self.config.store.keep) {
                Ok(lag) => self.status.rollup_lag = lag,
                Err(e) => error!("cannot read the roll-up lag for the metrics: {e}"),
            },
            Err(e) => error!("cannot read the clock for the roll-up lag: {e}"),
        }
        // The outbox's depth, read here where the metrics are rendered (not by the shipper,
        // which may be waiting on a silent network).
        if let Some(c) = &self.status.cluster {
            match store.outbox_depth() {
                Ok(d) => c.outbox(&d),
                Err(e) => error!("cannot read the outbox's depth for the metrics: {e}"),
            }
        }
        let records: Vec<&crate::store::Record> = self.books.records().collect();
        let text = self.exposition.render(
            &records,
            &snap.interfaces,
            &self.status,
            self.config.metrics.subscribers,
        );
        if let Ok(mut e) = self.published.write() {
            *e = text.into();
        }
    }
}
