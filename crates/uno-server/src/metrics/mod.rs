//! `GET /metrics`: Prometheus text exposition.

use axum::response::{IntoResponse, Response};

/// Serves the metrics page.
pub async fn serve_metrics() -> Response {
    ([("content-type", "text/plain; version=0.0.4")], "").into_response()
}
