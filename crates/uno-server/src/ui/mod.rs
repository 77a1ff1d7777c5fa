//! `GET /ui`: the dashboard page, its assets built into the binary.

use axum::Router;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;

/// The dashboard routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/ui", get(page))
}

async fn page() -> Response {
    Html("<!doctype html><title>uno</title>").into_response()
}
