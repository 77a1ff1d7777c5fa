//! The admin API's extractors: axum's `Path`, `Query` and `Json`, with
//! their rejections turned into OpenAI-shaped 400s that name the parameter,
//! so a bad request never answers with axum's plain-text error.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::request::Parts;
use serde::de::DeserializeOwned;
use uno_core::ApiError;

use crate::proxy::reply::ErrorReply;

/// Refuses an encoded NUL: no id, user or tenant contains one, and
/// Postgres refuses NUL in text, so it would otherwise surface as a 500.
fn refuse_nul(raw: &str) -> Result<(), ErrorReply> {
    if raw.contains("%00") {
        return Err(ErrorReply(ApiError::bad_request(
            "parameters must not contain NUL characters",
        )));
    }
    Ok(())
}

/// Path parameters, or a 400 saying which one is malformed.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ErrorReply;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        refuse_nul(parts.uri.path())?;
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|err: PathRejection| {
                ErrorReply(ApiError::bad_request(format!(
                    "invalid path parameter: {}",
                    err.body_text()
                )))
            })
    }
}

/// Query parameters, or a 400 saying what is wrong with them. Unknown
/// parameters are refused (the query types deny them), so a misspelt
/// filter does not silently return everything.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ErrorReply;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        refuse_nul(parts.uri.query().unwrap_or(""))?;
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|err: QueryRejection| {
                ErrorReply(ApiError::bad_request(format!(
                    "invalid query parameters: {}",
                    err.body_text()
                )))
            })
    }
}

/// A JSON body, or a 400 saying why it was not accepted. An empty body is
/// read as `{}`, so `POST …/keys` works without one.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ErrorReply;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|err| {
                ErrorReply(ApiError::bad_request(format!(
                    "cannot read the body: {err}"
                )))
            })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(Json).map_err(|err| {
            ErrorReply(ApiError::bad_request(format!(
                "the body is not the JSON expected: {err}"
            )))
        })
    }
}
