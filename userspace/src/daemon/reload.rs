//! Live changes without a restart: the subscriber table (kernel and books together, or not at
//! all), the nodes file and the operator token. A bad file never replaces a good one.

use log::{error, info, warn};

use crate::{
    kernel::subscriber_maps as registry,
    subscribers::{reload_result::ReloadResult, table::Table},
};

use super::state::{State, stamp};

impl State<'_> {
    /// Reloads the table and the nodes file, as asked by a signal or the operator API.
    pub fn reload_files(&mut self, why: &str) -> ReloadResult {
        let result = self.reload(why);
        self.reload_nodes();
        result
    }

    /// Rereads the operator token file (rotation); a bad file keeps the current token.
    pub fn reload_token(&mut self) {
        let Some(token) = &self.token else { return };
        match crate::http::operator::Token::load(&self.config.operator.token_file) {
            Ok(t) => {
                if let Ok(mut current) = token.write() {
                    *current = t;
                    info!("reloaded the operator token");
                }
            }
            Err(e) => warn!("operator token reload refused, the current token stays: {e}"),
        }
    }

    /// Reloads the nodes file; a bad file leaves the registered nodes untouched.
    pub fn reload_nodes(&mut self) {
        self.nodes_stamp = stamp(&self.config.reports.nodes);
        let Some(intake) = &self.intake else { return };
        match crate::settlement::nodes::Nodes::load(&self.config.reports.nodes) {
            Ok(nodes) => {
                let n = nodes.by_id.len();
                let max_period = self.config.reports.max_period_secs;
                if let Err(e) = self.config.tariff.check(Some(&nodes), max_period) {
                    warn!("nodes file reload refused, the registered nodes are unchanged: {e}");
                    return;
                }
                match intake.lock().map(|mut i| i.set_nodes(nodes)) {
                    Ok(Ok(())) => info!("reloaded the nodes file: {n} nodes"),
                    Ok(Err(e)) => {
                        warn!("nodes file reload refused, the registered nodes are unchanged: {e}")
                    }
                    Err(_) => warn!("nodes file reload refused: the intake is unavailable"),
                }
            }
            Err(errors) => {
                warn!("nodes file reload refused, the registered nodes are unchanged: {errors}")
            }
        }
    }

    /// Reloads the table file; a bad file leaves the running table untouched.
    pub fn reload(&mut self, why: &str) -> ReloadResult {
        self.reloads += 1;
        self.table_stamp = stamp(&self.config.subscribers.file);
        let mut result = ReloadResult {
            seq: self.reloads,
            at_unix: 0,
            ok: false,
            errors: Vec::new(),
            change: registry::Change::default(),
        };
        // The kernel and the books change together: with a store that cannot take the books'
        // side (disk full), the change waits, and is retried after the next good commit.
        let writable = self.clock.now().map_err(|e| e.to_string()).and_then(|now| {
            result.at_unix = now;
            self.books
                .store()
                .check_writable(now)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = writable {
            self.reload_pending = true;
            self.status.reloads_failed += 1;
            self.status.last_reload_ok = false;
            result.errors = vec![format!(
                "the store cannot be written ({e}); the change is applied once it can"
            )];
            warn!("reload ({why}) postponed, the running table is unchanged: {e}");
            return result;
        }
        self.reload_pending = false;
        match Table::load(
            &self.config.subscribers.file,
            &self.config.subscribers.table_format(),
            self.config.subscribers.allow_empty,
        ) {
            Err(errors) => {
                self.status.reloads_failed += 1;
                self.status.last_reload_ok = false;
                result.errors = errors.0.iter().map(|e| e.to_string()).collect();
                warn!("reload ({why}) refused, the running table is unchanged: {errors}");
            }
            Ok(table) => match self.install_file(table) {
                Ok(change) => {
                    self.status.reloads_ok += 1;
                    self.status.last_reload_ok = true;
                    info!(
                        "reloaded ({why}): {} added, {} removed, {} changed, {} subscribers in all",
                        change.added.len(),
                        change.removed.len(),
                        change.changed.len(),
                        self.registry.table().subscribers.len()
                    );
                    result.ok = true;
                    result.change = change;
                }
                Err(e) => {
                    self.status.reloads_failed += 1;
                    self.status.last_reload_ok = false;
                    result.errors = vec![format!("{e:#}")];
                    warn!("reload ({why}) failed, the running table is unchanged: {e:#}");
                }
            },
        }
        if let Err(e) = result.write(&self.config.daemon.state_dir) {
            error!("cannot write the reload result: {e}");
        }
        result
    }

    /// Reloads whichever watched file changed since it was last read.
    pub fn reload_changed_files(&mut self) {
        if stamp(&self.config.subscribers.file) != self.table_stamp {
            self.reload("the table file changed");
        }
        if self.intake.is_some() && stamp(&self.config.reports.nodes) != self.nodes_stamp {
            self.reload_nodes();
        }
    }
}
