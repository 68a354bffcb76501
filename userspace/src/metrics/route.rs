//! `GET /metrics`: serves the exposition rendered at the end of the last interval, as it is, so
//! a scrape never renders, reads the books or walks a kernel map; only the `process_*` series
//! are read at the scrape (a few small `/proc/self` files), so they stay current even when the
//! loop stalls.

use std::sync::{Arc, RwLock};

use axum::{
    body::{Body, Bytes},
    http::header,
    routing::get,
};

/// The text `/metrics` serves; the daemon replaces it once per interval. Held as shared
/// bytes so a scrape takes a reference, not a copy (the full exposition of 100,000
/// subscribers is over 100 MB).
pub type Published = Arc<RwLock<Bytes>>;

/// `GET /metrics`, read-only: every other method is answered 405.
pub fn router(exposition: Published) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let text = exposition.read().map(|e| e.clone()).unwrap_or_default();
            // Two chunks: the shared text as it is (no copy) and this scrape's process series.
            let process = Bytes::from(super::process::render());
            let chunks = [text, process].map(Ok::<_, std::convert::Infallible>);
            let body = Body::from_stream(futures_util::stream::iter(chunks));
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
        }),
    )
}
