//! Shared steps of the routes that forward a request and return the
//! upstream's whole answer unchanged (embeddings, models, upstream errors).

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use uno_core::ApiError;
use uno_llm::{BodyError, UpstreamResponse, collect_body};

use crate::app::AppState;
use crate::headers::{copy_from_upstream, travels_upstream};

/// A fully read upstream answer.
pub struct WholeResponse {
    /// The upstream's status.
    pub status: StatusCode,
    /// The upstream's headers (unfiltered; filtered on the way out).
    pub headers: HeaderMap,
    /// The upstream's body.
    pub body: Bytes,
}

/// Reads the upstream's body under the read timeout.
pub async fn read_whole(
    state: &AppState,
    upstream: UpstreamResponse,
) -> Result<WholeResponse, ApiError> {
    let (parts, body) = upstream.response.into_parts();
    let body = collect_body(body, state.upstream().read_timeout())
        .await
        .map_err(|err| body_error(&upstream.upstream, err))?;
    Ok(WholeResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// The client-facing error for a body that could not be read.
pub fn body_error(upstream: &str, err: BodyError) -> ApiError {
    match err {
        BodyError::Timeout => ApiError::gateway_timeout(format!(
            "upstream {upstream:?} stopped sending its answer; raise http.read_timeout_ms if the model is slow"
        )),
        BodyError::Broken(detail) => ApiError::bad_gateway(format!(
            "upstream {upstream:?} broke off its answer: {detail}"
        )),
    }
}

impl WholeResponse {
    /// The answer as the client receives it: same status, same body, the
    /// upstream's headers less the connection-specific ones.
    pub fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        copy_from_upstream(&self.headers, response.headers_mut());
        response
    }
}

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
