//! Live bindings in the running daemon: a table file laid under the bindings, and each batch
//! of binding requests applied to the kernel maps at once, then answered.

use log::{info, warn};

use crate::{
    bindings::request::{Applied, BindingRequest, Outcome, Refusal},
    kernel::subscriber_maps as registry,
    subscribers::table::Table,
};

use super::state::State;

/// At most this many requests are applied in one kernel change: a burst of RADIUS Starts after
/// a BNG reboot is taken in a few changes, and no answer waits behind thousands of others.
const MAX_BATCH: usize = 4096;

impl State<'_> {
    /// Installs a table file, with the live bindings laid over it when a source runs.
    pub fn install_file(&mut self, file: Table) -> anyhow::Result<registry::Change> {
        let Some((bindings, _)) = &self.bindings else {
            return self.install(file);
        };
        let (table, index, live, ended) = bindings.overlay(file);
        let change = self.install(table)?;
        if let Some((bindings, _)) = &mut self.bindings {
            bindings.adopt(index, live);
        }
        for (session, why) in ended {
            warn!("{session} ended by the new subscriber table: {why}");
            self.count_binding(session.source, why.outcome());
        }
        self.refresh_binding_counts();
        Ok(change)
    }

    /// Applies `first` and every request queued behind it (up to [`MAX_BATCH`]) in one kernel
    /// change, then answers each: a requester hears back once packets count by its binding.
    pub fn on_bindings(&mut self, first: BindingRequest) {
        let Some((bindings, requests)) = &mut self.bindings else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let before = bindings.live().clone();
        let current = self.registry.table();
        let mut outcomes: Vec<Result<Outcome, Refusal>> = batch
            .iter()
            .map(|r| bindings.apply(&r.event, current))
            .collect();
        let changed = outcomes
            .iter()
            .any(|o| matches!(o, Ok(Outcome::Bound | Outcome::Released)));
        if changed {
            let (table, rows) = bindings.relayer(current, &before);
            if let Err(e) = self.install_prefixes(table, &rows) {
                warn!(
                    "{} binding requests not applied, the kernel maps are unchanged: {e:#}",
                    batch.len()
                );
                if let Some((bindings, _)) = &mut self.bindings {
                    bindings.restore(before);
                }
                for o in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *o = Err(Refusal::NotInstalled(format!("{e:#}")));
                }
            }
        }
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            let session = request.event.session();
            let counted = match &outcome {
                Ok(o) => *o,
                Err(why) => {
                    info!("binding refused for {session}: {why}");
                    why.outcome()
                }
            };
            self.count_binding(session.source, counted);
            if let Some(reply) = request.reply {
                let _ = reply.send(outcome.map(|o| Applied {
                    changed: matches!(o, Outcome::Bound | Outcome::Released),
                }));
            }
        }
        self.refresh_binding_counts();
    }

    /// Installs a table that differs from the running one only in the prefixes of the
    /// subscribers at `rows`: the kernel change, and those subscribers' books.
    fn install_prefixes(&mut self, table: Table, rows: &[usize]) -> anyhow::Result<()> {
        let (change, baselines) = self.registry.apply(&mut self.dp, table)?;
        debug_assert!(change.added.is_empty() && change.removed.is_empty() && baselines.is_empty());
        self.books.reprefix(self.registry.table(), rows)?;
        Ok(())
    }

    fn count_binding(&mut self, source: crate::bindings::request::BindingSource, outcome: Outcome) {
        if let Some(c) = &mut self.status.bindings {
            c.count(source, outcome);
        }
    }

    /// Brings the live-session figures of the metrics up to date.
    fn refresh_binding_counts(&mut self) {
        if let (Some((bindings, _)), Some(c)) = (&self.bindings, &mut self.status.bindings) {
            for source in crate::bindings::request::BindingSource::ALL {
                c.active.insert(source, bindings.active(source));
            }
        }
    }
}
