//! Health, and OpenAI-shaped answers for routes uno does not have.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{Method, Uri};
use uno_core::ApiError;

use crate::app::AppState;
use crate::metrics::requests::{PathLabel, RouteLabel};
use crate::proxy::reply::error_response;

/// Requests no route took are counted here (no layer sees them).
fn count(state: &AppState, uri: &Uri, status: u16) {
    state
        .metrics()
        .requests
        .record(RouteLabel::of_path(uri.path()), status, PathLabel::None);
}

/// Liveness for load balancers and orchestrators: answers without touching
/// the upstream.
pub async fn health() -> Response {
    ([("content-type", "application/json")], r#"{"status":"ok"}"#).into_response()
}

/// Readiness: 200 when the database takes rows, 503 while it is
/// unreachable or not yet migrated. uno serves either way (logs go to the
/// journal, keys come from the config and the key cache), so a balancer
/// may keep sending traffic; the body says what state each part is in.
pub async fn ready(State(state): State<AppState>) -> Response {
    let down = state
        .metrics()
        .database_down
        .load(std::sync::atomic::Ordering::Relaxed);
    let stats = state.persistence().map(|p| p.log.stats().clone());
    let read = |f: fn(&uno_store::writer::WriterStats) -> u64| stats.as_deref().map_or(0, f);
    let body = serde_json::json!({
        "status": if down { "degraded" } else { "ready" },
        "database": if stats.is_none() { "none" } else if down { "unreachable" } else { "ready" },
        "journal_bytes": read(|s| s.journal_bytes.load(std::sync::atomic::Ordering::Relaxed)),
        "log_queue_depth": read(|s| s.queue_depth()),
    });
    let status = if down {
        http::StatusCode::SERVICE_UNAVAILABLE
    } else {
        http::StatusCode::OK
    };
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// 404 for unknown paths, in the shape SDKs parse.
pub async fn not_found(State(state): State<AppState>, method: Method, uri: Uri) -> Response {
    count(&state, &uri, 404);
    error_response(&ApiError::not_found(format!(
        "uno has no route {method} {}; OpenAI routes live under /v1 (for example POST /v1/chat/completions)",
        uri.path()
    )))
}

/// 405 for a known path with the wrong method.
pub async fn method_not_allowed(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
) -> Response {
    count(&state, &uri, 405);
    error_response(&ApiError::method_not_allowed(format!(
        "{} does not accept {method}",
        uri.path()
    )))
}
