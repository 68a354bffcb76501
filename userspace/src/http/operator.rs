//! The operator API, for a NOC's or billing system's tools on another host: table reload,
//! ledger adjustments and signed statements. Every request needs the operator token
//! (`Authorization: Bearer TOKEN`). Nodes never hold it: their reports are authenticated by
//! their signatures alone, on the report listener.
//!
//! Why a token file and not a Unix socket: these actions must reach the router over the
//! network, which a socket cannot; on the router itself the CLI already works through the file
//! permissions of the store. The token is kept hashed in memory, compared in constant time,
//! and refused at start if the file is readable by every user. Put the API on a management
//! address and turn on `[tls]` so the token never crosses a network in clear.

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Path as UrlPath, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use log::{info, warn};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::{mpsc, oneshot};

use crate::{
    ledger::{chain::NewEntry, statement::StatementError},
    store::Store,
    subscribers::reload_result::ReloadResult,
};

/// `[operator]`: the operator API (off unless `listen` is set).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Where the API listens (a management address); "" turns it off.
    #[serde(default)]
    pub listen: String,
    /// The file holding the token (`quid operator token` writes one); relative paths are
    /// relative to the config file.
    #[serde(default)]
    pub token_file: PathBuf,
}

/// Shortest token accepted: 128 bits written as hex.
pub const MIN_TOKEN_CHARS: usize = 32;

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("operator.token_file is not set: the operator API needs a token")]
    NotSet,
    #[error("operator.token_file {0}: cannot read it: {1}")]
    Read(PathBuf, std::io::Error),
    #[error(
        "operator.token_file {0} is readable by every user (mode {1:o}): chmod 0640 it, owned by root:quid"
    )]
    WorldReadable(PathBuf, u32),
    #[error(
        "operator.token_file {0}: the token is {1} characters; use at least {MIN_TOKEN_CHARS} (quid operator token writes one)"
    )]
    Short(PathBuf, usize),
}

/// The operator token, as its SHA-256 (the token itself is not kept).
#[derive(Clone)]
pub struct Token([u8; 32]);

impl Token {
    /// Reads the token file: one line, at least [`MIN_TOKEN_CHARS`], not world-readable.
    pub fn load(path: &Path) -> Result<Token, TokenError> {
        if path.as_os_str().is_empty() {
            return Err(TokenError::NotSet);
        }
        let meta = std::fs::metadata(path).map_err(|e| TokenError::Read(path.into(), e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            return Err(TokenError::WorldReadable(path.into(), mode));
        }
        let text = std::fs::read_to_string(path).map_err(|e| TokenError::Read(path.into(), e))?;
        let token = text.trim();
        if token.len() < MIN_TOKEN_CHARS {
            return Err(TokenError::Short(path.into(), token.len()));
        }
        Ok(Token(Sha256::digest(token.as_bytes()).into()))
    }

    /// Whether `presented` is the token (constant time in its content).
    pub fn matches(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        h.ct_eq(&self.0).into()
    }
}

/// A fresh random token, 256 bits as hex.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

/// What the API asks of the daemon's main loop.
pub enum Control {
    /// Reload the table (and nodes) file now; answer with the result.
    Reload(oneshot::Sender<ReloadResult>),
}

/// Requests per action and outcome, for the metrics.
pub type Counts = Arc<Mutex<BTreeMap<(&'static str, &'static str), u64>>>;

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    /// Replaced when the token file is reloaded (SIGHUP), so a token rotates without a restart.
    pub token: Arc<std::sync::RwLock<Token>>,
    /// Requests to the daemon's main loop (reload).
    pub control: mpsc::Sender<Control>,
    /// The API's own connection to the store (opened once: opening checks the whole file).
    pub store: Arc<Mutex<Store>>,
    /// The key statements are signed with, if one is configured.
    pub operator_key: Option<PathBuf>,
    /// Requests per (action, outcome), for the metrics.
    pub counts: Counts,
    /// The time adjustments are dated with.
    pub clock: crate::clock::Clock,
}

impl Api {
    fn count(&self, action: &'static str, outcome: &'static str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry((action, outcome)).or_default() += 1;
        }
    }

    /// Counts `refusal` under `action` and answers it.
    fn refuse(&self, action: &'static str, (status, reason, message): Refusal) -> Response {
        self.count(action, reason);
        refused(status, reason, message)
    }
}

/// The API's routes, all behind the token check.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/operator/reload", post(reload))
        .route("/v1/operator/adjust", post(adjust))
        .route(
            "/v1/operator/statements/{subscriber}/{period}",
            get(statement),
        )
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        .with_state(api)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn refused(status: StatusCode, reason: &str, message: impl std::fmt::Display) -> Response {
    answer(
        status,
        json!({"status": "refused", "reason": reason, "message": message.to_string()}),
    )
}

/// The action a path names, for the counts.
fn action_of(path: &str) -> &'static str {
    match path {
        "/v1/operator/reload" => "reload",
        "/v1/operator/adjust" => "adjust",
        p if p.starts_with("/v1/operator/statements/") => "statement",
        _ => "other",
    }
}

async fn authorize(State(api): State<Api>, req: Request, next: Next) -> Response {
    let action = action_of(req.uri().path());
    let presented = bearer(req.headers());
    let refusal = match presented {
        None => Some(("missing_credential", "send Authorization: Bearer TOKEN")),
        Some(t) if !api.token.read().is_ok_and(|k| k.matches(t)) => {
            Some(("bad_credential", "the token is not valid"))
        }
        Some(_) => None,
    };
    if let Some((reason, message)) = refusal {
        warn!("operator API: {action} refused ({reason})");
        let mut r = api.refuse(action, (StatusCode::UNAUTHORIZED, reason, message.into()));
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"quid\""),
        );
        return r;
    }
    next.run(req).await
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn reload(State(api): State<Api>) -> Response {
    let (tx, rx) = oneshot::channel();
    // The daemon's loop gone (stopping) or dropping the request: nothing changed.
    let answered = match api.control.send(Control::Reload(tx)).await {
        Ok(()) => rx.await.ok(),
        Err(_) => None,
    };
    let Some(result) = answered else {
        return api.refuse(
            "reload",
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "retry later".into(),
            ),
        );
    };
    let (status, outcome) = if result.ok {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::UNPROCESSABLE_ENTITY, "refused")
    };
    api.count("reload", outcome);
    info!("operator API: reload {outcome}");
    answer(status, json!(result))
}

/// The body of `POST /v1/operator/adjust`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    /// The subscriber's id.
    pub subscriber: String,
    /// Micro-credits; negative to debit.
    pub amount: i64,
    /// Why, kept in the ledger for both sides.
    pub reason: String,
}

async fn adjust(State(api): State<Api>, body: axum::body::Bytes) -> Response {
    let a: Adjustment = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return api.refuse(
                "adjust",
                (
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    format!("{e}; send {{\"subscriber\", \"amount\" (micro-credits), \"reason\"}}"),
                ),
            );
        }
    };
    if a.reason.trim().is_empty() || a.amount == 0 {
        return api.refuse(
            "adjust",
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "an adjustment needs a non-zero amount and a reason".into(),
            ),
        );
    }
    let clock = api.clock.clone();
    on_store(api, "adjust", move |store| {
        known(store, &a.subscriber)?;
        let at = clock.now_i64().map_err(|e| {
            warn!("operator API: adjustment not recorded: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{e}; not recorded"),
            )
        })?;
        store
            .append(&[NewEntry::adjustment(
                &a.subscriber,
                at,
                a.amount,
                a.reason.clone(),
            )])
            .map_err(|e| match e {
                // The balance would leave i64: nothing recorded, and a retry cannot help.
                crate::store::StoreError::Ledger(e) => {
                    warn!("operator API: adjustment refused: {e}");
                    (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "balance_out_of_range",
                        e.to_string(),
                    )
                }
                e => {
                    // Not recorded: the caller may retry the same adjustment.
                    warn!("operator API: adjustment not recorded: {e}");
                    unavailable("the adjustment was not recorded; retry later".into())
                }
            })?;
        info!(
            "operator API: adjusted {} by {} µcr ({})",
            a.subscriber, a.amount, a.reason
        );
        // Recorded now: a failed balance read must not invite a retry, which would adjust twice.
        let balance = store
            .balance(&a.subscriber)
            .inspect_err(|e| warn!("operator API: balance after the adjustment unread: {e}"))
            .ok()
            .flatten();
        // The usage debit not yet settled, so the answer shows what the subscriber will owe.
        let pending = store
            .pending_debit(&a.subscriber)
            .inspect_err(|e| warn!("operator API: pending debit unread: {e}"))
            .unwrap_or(0);
        let after = balance.and_then(|b| b.checked_add(pending));
        Ok(json!({
            "status": "adjusted",
            "balance": balance,
            "pending_debit": pending,
            "balance_after_pending": after,
        }))
    })
    .await
}

async fn statement(
    State(api): State<Api>,
    UrlPath((subscriber, period)): UrlPath<(String, String)>,
) -> Response {
    let Some(key_path) = api.operator_key.clone() else {
        return api.refuse(
            "statement",
            (
                StatusCode::CONFLICT,
                "no_operator_key",
                "settlement.operator_key is not set: statements cannot be signed".into(),
            ),
        );
    };
    on_store(api, "statement", move |store| {
        known(store, &subscriber)?;
        let s = store
            .statement(&subscriber, &period)
            .map_err(|e| statement_refusal(&subscriber, e))?;
        let key = crate::settlement::node_client::read_key(&key_path).map_err(|e| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "no_operator_key",
                format!("{e:#}"),
            )
        })?;
        Ok(json!(crate::ledger::statement::sign(s, &key)))
    })
    .await
}

/// Why an action was refused: status, reason, message.
type Refusal = (StatusCode, &'static str, String);

/// The answer to a statement that could not be made: a bad period is the request's fault
/// (400); a store that cannot be read is the server's (503, retry), as are books that cannot
/// be stated (500: edited outside quid; `quid ledger verify` says where).
fn statement_refusal(subscriber: &str, e: StatementError) -> Refusal {
    match e {
        StatementError::Store(_) => {
            warn!("operator API: no statement for {subscriber}: {e}");
            unavailable(format!("{e}"))
        }
        StatementError::OutOfRange { .. } | StatementError::BalanceDisagrees { .. } => {
            warn!("operator API: no statement for {subscriber}: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "books_inconsistent",
                e.to_string(),
            )
        }
        e => (StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    }
}

fn unavailable(message: String) -> Refusal {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        message,
    )
}

/// Refuses actions on a subscriber the books do not know (active or removed).
fn known(store: &Store, subscriber: &str) -> Result<(), Refusal> {
    match store.has_subscriber(subscriber) {
        Ok(true) => Ok(()),
        Ok(false) => Err((
            StatusCode::NOT_FOUND,
            "unknown_subscriber",
            "no such subscriber in the books".into(),
        )),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

/// Runs `work` on the API's store off the async workers (SQLite blocks), then counts and
/// answers its outcome: 200 with its JSON, or its refusal.
async fn on_store(
    api: Api,
    action: &'static str,
    work: impl FnOnce(&mut Store) -> Result<serde_json::Value, Refusal> + Send + 'static,
) -> Response {
    let store = api.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        let mut store = store.lock().map_err(|e| unavailable(e.to_string()))?;
        work(&mut store)
    })
    .await
    .unwrap_or_else(|e| Err(unavailable(e.to_string())));
    match done {
        Ok(body) => {
            api.count(action, "ok");
            answer(StatusCode::OK, body)
        }
        Err(refusal) => api.refuse(action, refusal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_must_be_private_and_long() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let token = new_token().unwrap();
        std::fs::write(&path, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Token::load(&path),
            Err(TokenError::WorldReadable(_, 0o644))
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let t = Token::load(&path).unwrap();
        assert!(t.matches(&token));
        assert!(!t.matches(&token[1..]));
        assert!(!t.matches(""));
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(Token::load(&path), Err(TokenError::Short(_, 5))));
        assert!(matches!(
            Token::load(Path::new("")),
            Err(TokenError::NotSet)
        ));
    }

    #[test]
    fn a_store_fault_is_a_503_and_only_a_bad_period_a_400() {
        let status = |e| statement_refusal("alice", e).0;
        let fault = std::io::Error::other("disk I/O error");
        assert_eq!(
            status(StatementError::Store(Box::new(fault))),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            statement_refusal("alice", StatementError::Store("x".into())).1,
            "store_unavailable"
        );
        assert_eq!(
            status(StatementError::Period("2026-13".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(StatementError::OutOfRange {
                subscriber: "alice".into(),
                what: "credits"
            }),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn only_a_bearer_header_carries_a_token() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
    }
}
