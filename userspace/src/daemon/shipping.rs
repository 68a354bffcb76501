//! The shipper: moves the sealed outbox batches and the admitted reports from this router's
//! store to the shared store, on a thread of its own, so that metering, interval commits and
//! report answers never wait on the network. While the database is unreachable the outbox
//! grows (the metrics show it) and the shipper retries with a growing pause; once it answers,
//! the backlog goes out in shipments of up to `[store] ship_rows` rows, oldest first.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use log::{error, info, warn};

use super::table_follower::TableFollower;

use crate::{
    clock::Clock,
    cluster::{config::SharedConfig, stats::ShipStats},
    store::{
        Store,
        shared::{SharedError, SharedStore, Shipped},
    },
};

/// Pause between looks at an empty outbox.
const POLL: Duration = Duration::from_millis(500);
/// The longest pause between attempts while the database does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// How often shipped rows are folded into the hourly rows (by whichever router gets there).
const FOLD_EVERY: Duration = Duration::from_secs(30);
/// How often the shared tables are compared with the files.
const TABLES_EVERY: Duration = Duration::from_secs(2);
/// The longest a connection attempt plus claim, or one shipment, may take: a link that went
/// silent (no reset, no answer) must not hold the shipper, whose step is then retried.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The running shipper: its figures and the flag that stops it.
pub(super) struct Shipper {
    pub stats: Arc<ShipStats>,
    stop: Arc<AtomicBool>,
}

impl Shipper {
    /// Starts shipping from the store in `state_dir` (its own connection) to `cfg`'s database.
    pub fn start(
        cfg: SharedConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
        state_dir: PathBuf,
        tables: TableFollower,
        clock: Clock,
    ) -> anyhow::Result<Shipper> {
        let store = Store::connect(&state_dir)?;
        let identity = i64::try_from(store.store_identity()?).unwrap_or(i64::MAX);
        let stats = Arc::new(ShipStats {
            router: cfg.router_id.to_string(),
            ..ShipStats::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let run = Run {
            cfg,
            tls,
            store,
            identity,
            keys: std::collections::HashMap::new(),
            tables,
            clock,
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
        };
        std::thread::Builder::new()
            .name("quid-ship".into())
            .spawn(move || run.forever())?;
        Ok(Shipper { stats, stop })
    }

    /// Asks the shipper to stop after its current step (what it has not shipped stays in the
    /// outbox for the next start).
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }
}

/// The shipper's thread.
struct Run {
    cfg: SharedConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    store: Store,
    identity: i64,
    /// The local store's subscriber keys, as far as the shipper has needed them.
    keys: std::collections::HashMap<i64, String>,
    tables: TableFollower,
    clock: Clock,
    stats: Arc<ShipStats>,
    stop: Arc<AtomicBool>,
}

/// Why a step did not ship.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Shared(#[from] SharedError),
    #[error("the shared store did not answer within {} s", STEP_TIMEOUT.as_secs())]
    Timeout,
}

/// `f`, or [`StepError::Timeout`] once it has taken [`STEP_TIMEOUT`].
async fn bounded<T>(f: impl Future<Output = Result<T, StepError>>) -> Result<T, StepError> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .unwrap_or(Err(StepError::Timeout))
}

impl Run {
    fn forever(mut self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return error!("the shipper cannot start (nothing is shipped): {e}"),
        };
        rt.block_on(async move {
            let mut db: Option<(SharedStore, Shipped)> = None;
            let mut pause = Duration::from_secs(1);
            let mut said_down = false;
            let mut followed = std::time::Instant::now() - TABLES_EVERY;
            let mut folded = std::time::Instant::now();
            while !self.stop.load(Relaxed) {
                if db.as_ref().is_none_or(|(s, _)| s.is_closed()) {
                    match bounded(self.connect()).await {
                        Ok(c) => {
                            info!(
                                "shared store reached: router {} has shipped up to batch {}",
                                self.cfg.router_id, c.1.last_seq
                            );
                            db = Some(c);
                            said_down = false;
                            pause = Duration::from_secs(1);
                        }
                        Err(e) => {
                            self.down(&e, &mut said_down);
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(MAX_BACKOFF);
                            continue;
                        }
                    }
                }
                let Some((shared, cursor)) = db.as_mut() else {
                    continue;
                };
                if followed.elapsed() >= TABLES_EVERY {
                    followed = std::time::Instant::now();
                    let follow = async { Ok(self.tables.follow(shared).await?) };
                    if let Err(e) = bounded(follow).await {
                        self.down(&e, &mut said_down);
                        db = None;
                        continue;
                    }
                }
                if folded.elapsed() >= FOLD_EVERY {
                    folded = std::time::Instant::now();
                    let fold = async { Ok(shared.fold().await?) };
                    match bounded(fold).await {
                        Ok(n) => log::debug!("folded shipped usage into {n} hourly rows"),
                        // Another router folding at the same moment may deadlock with this
                        // one; the database ends one of the two, and the next fold retries.
                        Err(e) => warn!("folding shipped usage failed (retried later): {e}"),
                    }
                }
                match bounded(self.step(shared, cursor)).await {
                    Ok(true) => {}
                    Ok(false) => tokio::time::sleep(POLL).await,
                    Err(e) => {
                        self.down(&e, &mut said_down);
                        db = None;
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(MAX_BACKOFF);
                    }
                }
            }
        });
    }

    /// Connects, claims the router id for this store, and drops what the shared store
    /// already holds.
    async fn connect(&self) -> Result<(SharedStore, Shipped), StepError> {
        let mut shared = SharedStore::connect(&self.cfg, self.tls.clone()).await?;
        let cursor = shared.cursor(self.identity).await?;
        self.store
            .drop_shipped(cursor.last_seq)
            .map_err(SharedError::from)?;
        self.shipped(&cursor);
        self.stats.database_up.store(true, Relaxed);
        Ok((shared, cursor))
    }

    /// Ships one shipment, if there is anything to ship (`Ok(false)`: nothing was waiting).
    async fn step(
        &mut self,
        shared: &mut SharedStore,
        cursor: &mut Shipped,
    ) -> Result<bool, StepError> {
        let now = self.clock.now_i64().unwrap_or(0);
        let Some(done) = shared
            .ship_next(
                &self.store,
                self.identity,
                cursor,
                self.cfg.ship_rows,
                &mut self.keys,
                now,
            )
            .await?
        else {
            return Ok(false);
        };
        self.stats.shipped_batches.fetch_add(done.batches, Relaxed);
        self.stats.shipped_rows.fetch_add(done.rows, Relaxed);
        self.stats.shipped_reports.fetch_add(done.reports, Relaxed);
        self.stats.database_up.store(true, Relaxed);
        self.shipped(&done);
        *cursor = done;
        Ok(true)
    }

    /// Records how far the shared store holds this router's usage.
    fn shipped(&self, s: &Shipped) {
        self.stats.shipped_until.store(s.covered_until, Relaxed);
    }

    /// A failed attempt: counted, said once until the database answers again.
    fn down(&self, e: &StepError, said: &mut bool) {
        self.stats.failures.fetch_add(1, Relaxed);
        self.stats.database_up.store(false, Relaxed);
        if !*said {
            error!(
                "shipping to the shared store failed; counting and reports go on into the \
                 outbox, and shipping retries: {e}"
            );
            *said = true;
        }
    }
}
