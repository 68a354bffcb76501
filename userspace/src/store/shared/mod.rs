//! The shared settlement store of several routers, on PostgreSQL (any version from 13; the SQL
//! it relies on is listed in `docs/many-routers.md`). Each router ships its sealed outbox
//! batches here (`ship.rs`), applied exactly once under (router id, sequence); what the fleet
//! metered is read back summed over routers (`reads.rs`). The schema is versioned and brought
//! up to date at connect (`migrations.rs`).
//!
//! Like the rest of the store, this is the only place with SQL for it; the connection is
//! private to it.

mod fold;
mod migrations;
mod reads;
mod ship;
mod tables;

use std::{sync::Arc, time::Duration};

use tokio_postgres::{Client, NoTls, config::SslMode};

use crate::cluster::config::{RouterId, SharedConfig};

pub use reads::{RouterState, SharedUsage};
pub use ship::Shipped;
pub use tables::StoredTable;

/// How long a connection attempt may take before the router gives up on it (and retries).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the shared store.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error(
        "shared store {url}: cannot connect: {detail} (the router keeps counting into its outbox \
         and retries)"
    )]
    Connect { url: String, detail: String },
    #[error("shared store: {}", causes(.0))]
    Sql(#[from] tokio_postgres::Error),
    #[error("shared store: cannot read the password: {0}")]
    Password(std::io::Error),
    #[error(
        "shared store: router id {router} is already shipped to by another store (its \
         identity {theirs:#x}, this store's {ours:#x}): give every router its own \
         store.router_id; a router whose books were replaced needs a new id too"
    )]
    IdentityTaken {
        router: RouterId,
        theirs: i64,
        ours: i64,
    },
    #[error(
        "shared store schema is version {found}, newer than this quid knows ({known}): upgrade \
         quid on this router before it ships again"
    )]
    Newer { found: i32, known: i32 },
    #[error("shared store: {0}")]
    Damaged(String),
    /// The local store (the outbox) failed.
    #[error(transparent)]
    Local(#[from] crate::store::StoreError),
}

/// A connection to the shared store, as one router.
pub struct SharedStore {
    client: Client,
    router: RouterId,
}

impl SharedStore {
    /// Connects (with TLS when `tls` is given: the server must present a certificate that
    /// chains to it and names the host), then brings the schema up to date. Runs on a tokio
    /// runtime, which drives the connection.
    pub async fn connect(
        cfg: &SharedConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<SharedStore, SharedError> {
        let mut pg = cfg.url.settings();
        if let Some(p) = cfg.password().map_err(SharedError::Password)? {
            pg.password(p);
        }
        pg.connect_timeout(CONNECT_TIMEOUT);
        pg.application_name(format!("quid {}", cfg.router_id));
        let connect = |e: tokio_postgres::Error| SharedError::Connect {
            url: cfg.url.to_string(),
            detail: causes(&e),
        };
        let client = match tls {
            Some(tls) => {
                pg.ssl_mode(SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
                let (client, conn) = pg.connect(tls).await.map_err(connect)?;
                tokio::spawn(conn);
                client
            }
            None => {
                let (client, conn) = pg.connect(NoTls).await.map_err(connect)?;
                tokio::spawn(conn);
                client
            }
        };
        let mut store = SharedStore {
            client,
            router: cfg.router_id.clone(),
        };
        migrations::bring_up_to_date(&mut store.client).await?;
        Ok(store)
    }

    /// Whether the connection has closed (the server went away): connect again.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The router this connection ships for.
    pub fn router(&self) -> &RouterId {
        &self.router
    }
}

/// An error with every cause under it ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer").
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        next = cause.source();
    }
    text
}

/// A numeric column read as text, parsed as an unsigned count.
fn count(text: &str) -> Result<u128, SharedError> {
    text.parse()
        .map_err(|_| SharedError::Damaged(format!("{text:?} is not a count")))
}
