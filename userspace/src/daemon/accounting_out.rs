//! The RADIUS accounting client's thread: fed each interval's running totals through a
//! channel (the interval never waits on the network or the billing server), it keeps the
//! sessions in the store and sends their Start, Interim-Update and Stop with retransmissions.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
        mpsc::{Receiver, SyncSender, TryRecvError, sync_channel},
    },
    time::{Duration, Instant},
};

use log::{error, info};
use quid_common::{DIR_DOWNLOAD, DIR_UPLOAD};

use crate::{
    kernel::counters,
    radius::accounting_out::{
        client::Client,
        config::AccountingOut,
        outcome::Counts,
        sessions::{Accountant, Meter, Tally},
    },
    store::{Record, Status, Store},
};

/// The longest the thread sleeps between looks at its channel and its retransmissions.
const TICK: Duration = Duration::from_millis(200);

/// The running client: its queue, its counts and the flag that stops it.
pub(super) struct AccountingOutThread {
    pub counts: Arc<Counts>,
    tallies: SyncSender<Tally>,
    stop: Arc<AtomicBool>,
}

impl AccountingOutThread {
    /// Starts the client on the store in `state_dir` (its own connection).
    pub fn start(out: AccountingOut, state_dir: PathBuf) -> anyhow::Result<AccountingOutThread> {
        let store = Store::connect(&state_dir)?;
        let stored = store.accounting_sessions()?;
        let interval = out.config.interval_secs;
        let counts = Arc::new(Counts::default());
        let client = Client::new(out, Arc::clone(&counts))?;
        // One tally waits at most: totals are cumulative, so a newer tally replaces an older.
        let (tallies, rx) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let run = Run {
            store,
            accountant: Accountant::new(stored, interval),
            client,
            rx,
            stop: Arc::clone(&stop),
        };
        std::thread::Builder::new()
            .name("quid-acct-out".into())
            .spawn(move || run.forever())?;
        Ok(AccountingOutThread {
            counts,
            tallies,
            stop,
        })
    }

    /// Hands the books' totals at `at` to the client; never blocks (a tally the client has
    /// not taken yet is simply not followed by this one).
    pub fn feed<'r>(&self, records: impl Iterator<Item = &'r Record>, at: u64) {
        let meters = records.map(meter).collect();
        let _ = self.tallies.try_send(Tally { at, meters });
    }

    /// Asks the thread to stop (sessions stay in the store for the next start).
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }
}

/// The address of a subscriber whose table row holds exactly one IPv4 /32.
fn framed_ipv4(prefixes: &str) -> Option<Ipv4Addr> {
    let mut it = prefixes.split_whitespace();
    let one = it.next()?;
    if it.next().is_some() {
        return None;
    }
    let one = one.strip_suffix("/32").unwrap_or(one);
    one.parse().ok()
}

fn meter(r: &Record) -> Meter {
    Meter {
        id: r.id.clone(),
        input: counters::direction(&r.total, DIR_UPLOAD).bytes,
        output: counters::direction(&r.total, DIR_DOWNLOAD).bytes,
        framed_ipv4: framed_ipv4(&r.prefixes),
        active: r.status != Status::Removed,
    }
}

/// The thread.
struct Run {
    store: Store,
    accountant: Accountant,
    client: Client,
    rx: Receiver<Tally>,
    stop: Arc<AtomicBool>,
}

impl Run {
    fn forever(mut self) {
        info!(
            "accounting out: {} sessions carried on from the last run",
            self.accountant.len()
        );
        while !self.stop.load(Relaxed) {
            match self.rx.try_recv() {
                Ok(tally) => self.take(&tally),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return,
            }
            let now = Instant::now();
            self.client.retransmit(now);
            self.client.pump(now);
            let wait = self
                .client
                .next_due()
                .map_or(TICK, |d| d.saturating_duration_since(now).min(TICK));
            self.client.receive(wait);
        }
    }

    /// Steps the sessions by `tally`, records which began and ended, queues the requests.
    fn take(&mut self, tally: &Tally) {
        let step = self.accountant.step(tally);
        if (!step.began.is_empty() || !step.ended.is_empty())
            && let Err(e) = self.store.put_accounting_sessions(&step.began, &step.ended)
        {
            // The requests go out all the same; after a restart before the next successful
            // write, a session may start again under a new Acct-Session-Id.
            error!("accounting out: cannot record the sessions in the store: {e}");
        }
        self.client.queue(step.records);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_single_ipv4_host_is_a_framed_address() {
        assert_eq!(
            framed_ipv4("100.64.0.1"),
            Some(Ipv4Addr::new(100, 64, 0, 1))
        );
        assert_eq!(
            framed_ipv4("100.64.0.1/32"),
            Some(Ipv4Addr::new(100, 64, 0, 1))
        );
        assert_eq!(framed_ipv4("100.64.0.0/30"), None);
        assert_eq!(framed_ipv4("100.64.0.1 2001:db8::/64"), None);
        assert_eq!(framed_ipv4("dynamic"), None);
        assert_eq!(framed_ipv4(""), None);
    }
}
