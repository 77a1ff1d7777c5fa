//! Health, and OpenAI-shaped answers for routes uno does not have.

use axum::response::{IntoResponse, Response};
use http::{Method, Uri};
use uno_core::ApiError;

use crate::reply::error_response;

/// Liveness for load balancers and orchestrators: answers without touching
/// the upstream.
pub async fn health() -> Response {
    ([("content-type", "application/json")], r#"{"status":"ok"}"#).into_response()
}

/// 404 for unknown paths, in the shape SDKs parse.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(&ApiError::not_found(format!(
        "uno has no route {method} {}; OpenAI routes live under /v1 (for example POST /v1/chat/completions)",
        uri.path()
    )))
}

/// 405 for a known path with the wrong method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error_response(&ApiError::method_not_allowed(format!(
        "{} does not accept {method}",
        uri.path()
    )))
}
