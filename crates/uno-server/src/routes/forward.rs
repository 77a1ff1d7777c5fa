//! Shared steps of the routes that forward a request and return the
//! upstream's whole answer unchanged (embeddings, models, upstream errors).

use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use uno_core::ApiError;

use crate::app::AppState;
use crate::proxy::headers::travels_upstream;
pub use crate::proxy::whole::read_whole;

/// Sends a request (with the client's headers that travel upstream) and
/// returns the upstream's whole answer, whatever the status.
pub async fn forward_whole(
    state: &AppState,
    upstream: &uno_llm::Upstream,
    method: http::Method,
    uri: http::Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let response = state
        .upstream()
        .send_filtered(upstream, method, uri, headers, travels_upstream, body)
        .await
        .map_err(|err| err.to_api_error())?;
    Ok(read_whole(state, response).await?.into_response())
}

/// The 404 for a model no upstream serves.
pub fn model_not_found(model: &str) -> ApiError {
    ApiError::not_found(format!(
        "no upstream serves the model {model:?}; add it to an upstream's `models` list, \
         or configure an upstream with an empty list to serve every other model"
    ))
    .with_code("model_not_found")
    .with_param("model")
}
