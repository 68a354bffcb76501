//! `GET /metrics`: serves the exposition rendered at the end of the last interval, as it is, so
//! a scrape never renders, reads the books or walks a kernel map; only the `process_*` series
//! are read at the scrape (a few small `/proc/self` files), so they stay current even when the
//! loop stalls.

use std::sync::{Arc, RwLock};

use axum::{http::header, routing::get};

/// The text `/metrics` serves; the daemon replaces it once per interval.
pub type Published = Arc<RwLock<String>>;

/// `GET /metrics`, read-only: every other method is answered 405.
pub fn router(exposition: Published) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let mut text = exposition.read().map(|e| e.clone()).unwrap_or_default();
            text += &super::process::render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
        }),
    )
}
