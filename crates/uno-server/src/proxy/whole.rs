//! Reading an upstream's whole answer (a non-streamed completion, an
//! upstream error, embeddings, models) under the read timeout, and giving
//! it to the client unchanged.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use uno_core::ApiError;
use uno_llm::{BodyError, UpstreamResponse, collect_body};

use crate::app::AppState;
use crate::proxy::headers::copy_from_upstream;

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
