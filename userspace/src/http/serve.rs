//! Serving HTTP with limits: at most `max_connections` at a time per listener and
//! `max_connections_per_ip` per client address, a deadline for the request head (and the TLS
//! handshake) and one for the whole request. A slow or flooding client ties up its own share,
//! never the listener: the report intake, the operator API and `/metrics` each have their own.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, http::StatusCode, response::IntoResponse};
use hyper_util::rt::{TokioIo, TokioTimer};
use log::{debug, warn};
use serde::Deserialize;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
};

/// `[http]`: limits shared by every listener (each listener counts its own connections).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimits {
    /// Open connections per listener; more are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections per client address and listener.
    #[serde(default = "default_per_ip")]
    pub max_connections_per_ip: usize,
    /// Seconds a client has to send a request head (and finish a TLS handshake); also how
    /// long an idle keep-alive connection stays open.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds for a whole request, body and answer included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            max_connections_per_ip: default_per_ip(),
            header_timeout_secs: default_header_timeout(),
            request_timeout_secs: default_request_timeout(),
        }
    }
}

fn default_max_connections() -> usize {
    1024
}

fn default_per_ip() -> usize {
    16
}

fn default_header_timeout() -> u64 {
    5
}

fn default_request_timeout() -> u64 {
    10
}

/// What one listener did, for the metrics.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed at once because the listener was full.
    pub refused_full: AtomicU64,
    /// Connections closed at once because their address had too many open.
    pub refused_per_ip: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_failed: AtomicU64,
    /// Requests answered 408 because they took longer than the request timeout.
    pub timed_out: AtomicU64,
}

/// Open connections per client address; a [`Slot`] gives its count back on drop.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

struct Slot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut m = self.0.lock().ok()?;
        let n = m.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.table.0.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until the task is dropped; `tls` makes it HTTPS only.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stats: Arc<ListenerStats>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                warn!("{name}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // A full listener closes new connections at once instead of queueing them: queued
        // connections would hold memory and descriptors, and clients retry anyway.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            stats.refused_full.fetch_add(1, Ordering::Relaxed);
            debug!(
                "{name}: refused {peer}: {} connections open",
                limits.max_connections
            );
            continue;
        };
        let Some(slot) = per_ip.take(peer.ip(), limits.max_connections_per_ip) else {
            stats.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            debug!("{name}: refused {peer}: too many connections from it");
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let (app, tls, stats) = (app.clone(), tls.clone(), stats.clone());
        tokio::spawn(async move {
            let header = Duration::from_secs(limits.header_timeout_secs);
            match tls {
                None => connection(stream, peer, app, limits, &stats).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => connection(s, peer, app, limits, &stats).await,
                        Ok(Err(e)) => {
                            stats.tls_failed.fetch_add(1, Ordering::Relaxed);
                            debug!("{name}: TLS handshake with {peer} failed: {e}");
                        }
                        Err(_) => {
                            stats.tls_failed.fetch_add(1, Ordering::Relaxed);
                            debug!("{name}: TLS handshake with {peer} timed out");
                        }
                    }
                }
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop((permit, slot));
        });
    }
}

/// One HTTP/1.1 connection: the head must arrive within the header timeout, each request
/// must be answered within the request timeout. Each request carries the peer's address
/// (`ConnectInfo`), which the report intake charges unauthenticated work to.
async fn connection<S>(
    io: S,
    peer: std::net::SocketAddr,
    app: Router,
    limits: HttpLimits,
    stats: &Arc<ListenerStats>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request_timeout = Duration::from_secs(limits.request_timeout_secs);
    let stats = stats.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut app = app.clone();
        let stats = stats.clone();
        async move {
            let mut req = req.map(Body::new);
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let call = tower::Service::call(&mut app, req);
            match tokio::time::timeout(request_timeout, call).await {
                Ok(Ok(response)) => Ok::<_, Infallible>(response),
                Ok(Err(never)) => match never {},
                Err(_) => {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    Ok(timed_out(request_timeout))
                }
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_secs))
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = conn.await {
        debug!("connection ended: {e}");
    }
}

fn timed_out(limit: Duration) -> axum::response::Response {
    let mut r = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({
            "status": "refused",
            "reason": "timeout",
            "message": format!("the request took longer than {} s; retry", limit.as_secs()),
        })),
    )
        .into_response();
    r.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    r
}
