//! Live bindings in the running daemon: a table file laid under the bindings, and each batch
//! of binding requests applied to the kernel maps at once, then answered.

use log::{info, warn};

use crate::{
    bindings::{
        request::{Applied, BindingRequest, Outcome, Refusal},
        set::Live,
    },
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
        let (changed, gone) = live.changes_since(bindings.live());
        let change = self.install(table)?;
        if let Some((bindings, _)) = &mut self.bindings {
            bindings.adopt(index, live);
        }
        self.books.store_mut().put_bindings(&changed, &gone)?;
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
        bindings.begin_batch();
        let current = self.registry.table();
        let mut outcomes: Vec<Result<Outcome, Refusal>> = batch
            .iter()
            .map(|r| bindings.apply(&r.event, current))
            .collect();
        let changed = outcomes
            .iter()
            .any(|o| matches!(o, Ok(Outcome::Bound | Outcome::Released)));
        if changed {
            let rows = bindings.relayer(current);
            if let Err(e) = self.install_prefixes(rows) {
                warn!(
                    "{} binding requests not applied, the kernel maps are unchanged: {e:#}",
                    batch.len()
                );
                if let Some((bindings, _)) = &mut self.bindings {
                    bindings.undo();
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
        // Packets count by the new table since the flip, so the answers went first; the
        // generation they left is brought up to date once the grace period has passed.
        if let Err(e) = self.registry.catch_up(&mut self.dp) {
            warn!(
                "the kernel's second generation could not be brought up to date (the next change rewrites it whole): {e:#}"
            );
        }
        self.refresh_binding_counts();
    }

    /// Gives the subscribers at `rows` (positions in the installed table) new prefixes: the
    /// kernel change, then those subscribers' books and the sessions in one commit.
    /// The sessions are stored after the kernel change: a daemon restarted in between finds
    /// the older sessions, and the source's next word (the NAS retransmits what it has no
    /// answer for) brings them up to date.
    fn install_prefixes(&mut self, rows: Vec<(usize, Vec<ipnet::IpNet>)>) -> anyhow::Result<()> {
        let positions: Vec<usize> = rows.iter().map(|(i, _)| *i).collect();
        self.registry.apply_prefixes(&mut self.dp, rows)?;
        let (changed, ended) = match &self.bindings {
            Some((bindings, _)) => bindings.batch_changes(),
            None => Default::default(),
        };
        self.books
            .reprefix(self.registry.table(), &positions, (&changed, &ended))?;
        Ok(())
    }

    /// Takes up the sessions the last daemon stored (`rows`, read once at start), before
    /// the first table is installed.
    pub fn restore_bindings(&mut self, rows: Vec<crate::store::StoredSession>) {
        if let Some((bindings, _)) = &mut self.bindings {
            if !rows.is_empty() {
                info!("taking up {} live bindings the last run stored", rows.len());
            }
            bindings.restore(Live::from_stored(rows));
        }
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
