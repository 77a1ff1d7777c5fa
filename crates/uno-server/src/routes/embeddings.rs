//! `POST /v1/embeddings`: validated, then forwarded unchanged.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, Method};
use uno_core::wire::EmbeddingsRequestView;
use uno_llm::Endpoint;

use super::forward::{forward_whole, model_not_found};
use crate::app::AppState;
use crate::proxy::body::read_limited;
use crate::proxy::reply::ErrorReply;

/// Forwards an embeddings request to the upstream serving its model.
pub async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ErrorReply> {
    let bytes = read_limited(body, &headers, state.max_body_bytes()).await?;
    let view = EmbeddingsRequestView::parse(&bytes)?;
    let upstream = state
        .upstream()
        .select(&view.model)
        .ok_or_else(|| model_not_found(&view.model))?;
    drop(view);
    let uri = upstream.endpoint(Endpoint::Embeddings);
    Ok(forward_whole(&state, upstream, Method::POST, uri, &headers, bytes).await?)
}
