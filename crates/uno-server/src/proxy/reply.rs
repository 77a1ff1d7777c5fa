//! Turning uno's own errors into HTTP responses.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header::CONTENT_TYPE};
use uno_core::ApiError;

/// An [`ApiError`] as an axum response, so handlers can use `?`.
#[derive(Debug)]
pub struct ErrorReply(pub ApiError);

impl From<ApiError> for ErrorReply {
    fn from(error: ApiError) -> Self {
        ErrorReply(error)
    }
}

impl IntoResponse for ErrorReply {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

/// The OpenAI-shaped response for `error`.
pub fn error_response(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(Body::from(error.to_json_bytes()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
