//! Reading a request body under the configured size limit.

use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use uno_core::ApiError;

use crate::connection::body::BodyReadTimeout;

/// The whole body, or 413 when it exceeds `limit`, 408 when it arrived too
/// slowly (see [`crate::connection::body`]), or 400 when the client broke
/// off while sending it.
pub async fn read_limited(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let too_large = std::error::Error::source(&err)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        // The timeout sits a few layers down (axum's error, the limit's,
        // axum's again): walk the chain.
        let mut sources = std::iter::successors(std::error::Error::source(&err), |e| e.source());
        if too_large {
            ApiError::payload_too_large(limit)
        } else if let Some(timeout) = sources.find_map(|s| s.downcast_ref::<BodyReadTimeout>()) {
            ApiError::request_timeout(timeout.to_string())
        } else {
            ApiError::bad_request(format!("could not read the request body: {err}"))
        }
    })
}
