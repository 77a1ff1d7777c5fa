//! The route table: every path uno answers, and who answers it. Kept apart
//! from the state ([`crate::app`]) that every handler reads, so that the
//! handlers depend on the state and the table on the handlers, never back.

use axum::Router;
use axum::routing::{get, post};

use crate::app::AppState;
use crate::proxy::context::ContextLayer;
use crate::routes;

/// The full route table. The OpenAI routes sit under `/v1` exactly as the
/// provider has them, behind the request-context layer; anything else is an
/// OpenAI-shaped 404 or 405.
pub fn build_router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(routes::chat::chat_completions))
        .route("/v1/embeddings", post(routes::embeddings::embeddings))
        .route("/v1/models", get(routes::models::list_models))
        .route("/v1/feedback", post(routes::feedback::post_feedback))
        .route(
            "/v1/models/{*id}",
            get(routes::models::get_model).delete(routes::models::delete_model),
        )
        .route_layer(ContextLayer::new(state.clone()));
    // Everything outside /v1 is counted by a plain middleware (the context
    // layer counts /v1 itself, and the fallbacks count what no route took).
    let rest = Router::new()
        .route("/health", get(routes::misc::health))
        .route("/ready", get(routes::misc::ready))
        .route("/metrics", get(crate::metrics::page::serve_metrics))
        .merge(
            crate::admin::router(state.clone()).route_layer(axum::middleware::from_fn(
                crate::proxy::context::admin_context,
            )),
        )
        .merge(crate::ui::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::page::count_request,
        ));
    Router::new()
        .merge(v1)
        .merge(rest)
        .fallback(routes::misc::not_found)
        .method_not_allowed_fallback(routes::misc::method_not_allowed)
        .with_state(state)
}
