//! The application: shared state and the route table, composed in one place.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use uno_core::config::Config;
use uno_core::interaction::InteractionSink;
use uno_llm::{InvalidUpstream, UpstreamClient};

use crate::auth::Authenticator;
use crate::context::request_context;
use crate::routes;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    upstream: UpstreamClient,
    auth: Authenticator,
    sink: Arc<dyn InteractionSink>,
    max_body_bytes: usize,
}

impl AppState {
    /// Builds the state from configuration; `sink` receives every logged
    /// interaction.
    pub fn new(config: &Config, sink: Arc<dyn InteractionSink>) -> Result<Self, InvalidUpstream> {
        Ok(AppState {
            inner: Arc::new(Inner {
                upstream: UpstreamClient::new(config)?,
                auth: Authenticator::new(&config.auth),
                sink,
                max_body_bytes: config.server.max_body_bytes,
            }),
        })
    }

    /// The pooled upstream client.
    pub fn upstream(&self) -> &UpstreamClient {
        &self.inner.upstream
    }

    /// The key checker.
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// Where interaction records go.
    pub fn sink(&self) -> &Arc<dyn InteractionSink> {
        &self.inner.sink
    }

    /// The request body limit.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }
}

/// The full route table. The OpenAI routes sit under `/v1` exactly as the
/// provider has them, behind the request-context layer; anything else is an
/// OpenAI-shaped 404 or 405.
pub fn build_router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(routes::chat::chat_completions))
        .route("/v1/embeddings", post(routes::embeddings::embeddings))
        .route("/v1/models", get(routes::models::list_models))
        .route(
            "/v1/models/{*id}",
            get(routes::models::get_model).delete(routes::models::delete_model),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ));
    Router::new()
        .route("/health", get(routes::misc::health))
        .merge(v1)
        .fallback(routes::misc::not_found)
        .method_not_allowed_fallback(routes::misc::method_not_allowed)
        .with_state(state)
}
