//! Stopping: a final read so every counted packet is in the books, then, as `on_stop` says,
//! leave the programs attached and counting into the pinned maps, or detach and unpin them.

use log::info;

use crate::{config::OnStop, metering::snapshot::DaemonState};

use super::state::State;

impl State<'_> {
    /// Makes the final read and snapshot, then keeps or detaches the programs.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let result = self.stop_counting();
        self.stop_shipping();
        if let Some(out) = &self.accounting_out {
            out.stop();
        }
        result
    }

    /// Gives the shipper a few seconds to send what the last read sealed, then stops it
    /// (whatever is left stays in the outbox for the next start).
    fn stop_shipping(&mut self) {
        let Some(shipper) = &self.shipper else { return };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < deadline
            && self
                .books
                .store()
                .outbox_depth()
                .is_ok_and(|d| d.batches > 0)
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        shipper.stop();
    }

    /// The last read into the books, and the programs kept or detached.
    fn stop_counting(&mut self) -> anyhow::Result<()> {
        let state_dir = &self.config.daemon.state_dir;
        match self.config.daemon.on_stop {
            OnStop::Keep => {
                self.read_interval()?;
                self.retire_removed();
                self.snapshot(DaemonState::Stopped)?.write(state_dir)?;
                info!(
                    "stopped; the programs stay attached and keep counting into the maps pinned in {} (`quid detach` removes them)",
                    self.config.daemon.pin_dir.display()
                );
            }
            OnStop::Detach => {
                // Detach first, then read: every packet the programs saw is in the final totals.
                self.dp.detach_all()?;
                self.read_interval()?;
                self.retire_removed();
                self.snapshot(DaemonState::Stopped)?.write(state_dir)?;
                self.dp.unpin_all()?;
                info!(
                    "detached from {} interfaces and removed the pins; final totals in {}",
                    self.dp.attachments.len(),
                    state_dir.join(crate::metering::snapshot::FILE).display()
                );
            }
        }
        Ok(())
    }
}
