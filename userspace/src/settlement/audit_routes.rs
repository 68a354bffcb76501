//! The audit routes on the reports listener: `POST /v1/audits/fill`, `/v1/audits/due` and
//! `/v1/audits/answer`, each a small JSON body signed with the node's key
//! (`quid_report::audit_request`). A request is verified before its body is read as JSON, then
//! the book (`audits.rs`) decides; the keyed chunks (the fill, and the judging of an answer)
//! are computed off the async runtime and outside the book's lock. Every refusal answers 4xx
//! with a machine-readable reason and is counted by it.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use quid_report::audit_request::{
    AnswerRequest, Due, DueRequest, FillRequest, NODE_HEADER, SIGNATURE_HEADER, verify,
};

use crate::{
    clock::Clock,
    settlement::audits::{AuditBook, Refusal, fill_chunks},
    settlement::nodes::{Node, Nodes},
    settlement::report::quote,
};

/// The largest audit request body (an answer is about 1.2 KiB).
pub const MAX_BODY_BYTES: usize = 4096;

/// What the routes share.
#[derive(Clone)]
pub struct AuditApi {
    pub book: Arc<Mutex<AuditBook>>,
    /// The registered nodes now (the intake's, which follow reloads of the nodes file).
    pub nodes: Arc<dyn Fn() -> Option<Arc<Nodes>> + Send + Sync>,
    pub clock: Clock,
}

/// The routes, with their body limit.
pub fn router(api: AuditApi) -> Router {
    Router::new()
        .route("/v1/audits/fill", post(fill))
        .route("/v1/audits/due", post(due))
        .route("/v1/audits/answer", post(answer))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

fn refused(r: &Refusal) -> Response {
    let status = match r {
        Refusal::UnknownNode(_) => StatusCode::FORBIDDEN,
        Refusal::BadSignature => StatusCode::UNAUTHORIZED,
        Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
        Refusal::Replayed { .. }
        | Refusal::Skewed { .. }
        | Refusal::NoOpenChallenge
        | Refusal::WrongChallenge => StatusCode::CONFLICT,
        Refusal::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        Refusal::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let mut response = (
        status,
        axum::Json(json!({"status": "refused", "reason": r.code(), "message": r.to_string()})),
    )
        .into_response();
    if let Refusal::Throttled { retry_ms, .. } = r {
        let secs = retry_ms.div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    } else if matches!(r, Refusal::Store(_)) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The node a request names, its signature checked over the body, and the body read as `T`
/// naming the same node; then the book's clock and replay checks. Returns the node and now.
fn authenticate<T: DeserializeOwned>(
    api: &AuditApi,
    headers: &HeaderMap,
    body: &[u8],
    node_of: impl Fn(&T) -> (&str, i64),
) -> Result<(Node, T, i64), Refusal> {
    let count = |r: Refusal| match api.book.lock() {
        Ok(mut b) => b.refuse(r),
        Err(_) => r,
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(id) = text(NODE_HEADER) else {
        return Err(count(Refusal::Malformed(format!(
            "the `{NODE_HEADER}` header is missing"
        ))));
    };
    let nodes = (api.nodes)().ok_or_else(|| Refusal::Store("no nodes registered".into()))?;
    let Some(node) = nodes.by_id.get(id) else {
        return Err(count(Refusal::UnknownNode(quote(id))));
    };
    if !text(SIGNATURE_HEADER).is_some_and(|s| verify(&node.key, body, s)) {
        return Err(count(Refusal::BadSignature));
    }
    let request: T =
        serde_json::from_slice(body).map_err(|e| count(Refusal::Malformed(e.to_string())))?;
    let (named, at_ms) = node_of(&request);
    if named != node.id {
        return Err(count(Refusal::Malformed(
            "the body names another node than the signature".into(),
        )));
    }
    let now_ms = api
        .clock
        .now_ms()
        .map_err(|e| Refusal::Store(e.to_string()))?;
    let mut book = api
        .book
        .lock()
        .map_err(|_| Refusal::Store("the audit book is unavailable".into()))?;
    book.admit(&node.id, node.storage_bytes, at_ms, now_ms)?;
    Ok((node.clone(), request, now_ms))
}

fn lock(api: &AuditApi) -> Result<std::sync::MutexGuard<'_, AuditBook>, Refusal> {
    api.book
        .lock()
        .map_err(|_| Refusal::Store("the audit book is unavailable".into()))
}

async fn blocking(f: impl FnOnce() -> Result<Response, Refusal> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(r)) => r,
        Ok(Err(r)) => refused(&r),
        Err(_) => refused(&Refusal::Store("the audit task failed".into())),
    }
}

async fn fill(State(api): State<AuditApi>, headers: HeaderMap, body: Bytes) -> Response {
    blocking(move || {
        let (node, r, now_ms) =
            authenticate::<FillRequest>(&api, &headers, &body, |r| (&r.node, r.at_ms))?;
        let key = lock(&api)?.fill(&node.id, r.from, r.count, now_ms)?;
        let bytes = fill_chunks(&key, r.from, r.count);
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response())
    })
    .await
}

async fn due(State(api): State<AuditApi>, headers: HeaderMap, body: Bytes) -> Response {
    blocking(move || {
        let (node, r, now_ms) =
            authenticate::<DueRequest>(&api, &headers, &body, |r| (&r.node, r.at_ms))?;
        let mut book = lock(&api)?;
        let (challenge, filled, total) = book.due(&node.id, r.held, now_ms)?;
        let answer = Due {
            challenge,
            filled,
            total,
            fill_bytes_per_sec: book.config().fill_bytes_per_sec,
        };
        Ok(axum::Json(answer).into_response())
    })
    .await
}

async fn answer(State(api): State<AuditApi>, headers: HeaderMap, body: Bytes) -> Response {
    blocking(move || {
        let (node, r, now_ms) =
            authenticate::<AnswerRequest>(&api, &headers, &body, |r| (&r.node, r.at_ms))?;
        let (challenge, key) = lock(&api)?.to_judge(&node.id, &r.answer, now_ms)?;
        // 16 chunks of keyed SHA-256: outside the lock, so other nodes go on meanwhile.
        let verdict = key.judge(&challenge, &r.answer, now_ms);
        lock(&api)?.close(&node.id, &challenge.nonce, verdict, now_ms)?;
        match verdict {
            quid_report::audit::Verdict::Passed => {
                Ok(axum::Json(json!({"status": "passed"})).into_response())
            }
            quid_report::audit::Verdict::Failed(f) => Err(Refusal::Failed(f)),
        }
    })
    .await
}
