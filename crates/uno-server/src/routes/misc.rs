//! Health, and OpenAI-shaped answers for routes uno does not have.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{Method, Uri};
use uno_core::ApiError;

use crate::app::AppState;
use crate::metrics::requests::{PathLabel, RouteLabel};
use crate::reply::error_response;

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
