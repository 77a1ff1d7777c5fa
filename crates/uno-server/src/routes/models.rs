//! `GET /v1/models` and `GET /v1/models/{id}`.
//!
//! With one upstream, both are forwarded unchanged. With several, the list is
//! the union of every upstream's list (first upstream wins on a duplicate id),
//! so that a client sees every model it can use through uno.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Uri};
use uno_core::ApiError;
use uno_llm::{Endpoint, PathSegment};

use super::forward::{forward_whole, model_not_found, read_whole};
use crate::app::AppState;
use crate::proxy::headers::travels_upstream;
use crate::proxy::reply::ErrorReply;

/// Lists the models of every upstream.
pub async fn list_models(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ErrorReply> {
    let upstreams = state.upstream().upstreams();
    if let [only] = upstreams {
        let uri = only.endpoint(Endpoint::Models);
        return Ok(forward_whole(&state, only, Method::GET, uri, &headers, Bytes::new()).await?);
    }

    let fetches = upstreams.iter().map(|upstream| {
        let state = &state;
        let headers = &headers;
        async move {
            let uri = upstream.endpoint(Endpoint::Models);
            let response = state
                .upstream()
                .send_filtered(
                    upstream,
                    Method::GET,
                    uri,
                    headers,
                    travels_upstream,
                    Bytes::new(),
                )
                .await
                .map_err(|err| err.to_api_error())?;
            let whole = read_whole(state, response).await?;
            if !whole.status.is_success() {
                return Err(ApiError::bad_gateway(format!(
                    "upstream {:?} answered {} to GET /models",
                    upstream.name(),
                    whole.status
                )));
            }
            serde_json::from_slice::<serde_json::Value>(&whole.body).map_err(|err| {
                ApiError::bad_gateway(format!(
                    "upstream {:?} sent a model list that is not JSON: {err}",
                    upstream.name()
                ))
            })
        }
    });
    let results = futures_util::future::join_all(fetches).await;

    let mut seen = std::collections::HashSet::new();
    let mut data = Vec::new();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(list) => {
                let models = list.get("data").and_then(|d| d.as_array()).cloned();
                for model in models.unwrap_or_default() {
                    let id = model.get("id").and_then(|i| i.as_str()).map(str::to_owned);
                    if id.is_none_or(|id| seen.insert(id)) {
                        data.push(model);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "an upstream's model list is missing from /v1/models");
                first_error.get_or_insert(error);
            }
        }
    }
    if data.is_empty()
        && let Some(error) = first_error
    {
        return Err(error.into());
    }
    let body = serde_json::json!({ "object": "list", "data": data });
    let mut response = Response::new(Body::from(body.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Describes one model, asking the upstream that serves it.
pub async fn get_model(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ErrorReply> {
    model_request(state, Method::GET, &uri, headers).await
}

/// Deletes a fine-tuned model at the upstream that serves it, as the OpenAI
/// SDKs' `models.delete` does.
pub async fn delete_model(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ErrorReply> {
    model_request(state, Method::DELETE, &uri, headers).await
}

async fn model_request(
    state: AppState,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
) -> Result<Response, ErrorReply> {
    let (id, segment) = model_id(uri.path())?;
    let upstream = state
        .upstream()
        .select(&id)
        .ok_or_else(|| model_not_found(&id))?;
    let uri = upstream
        .model_uri(&segment)
        .map_err(|problem| ApiError::bad_request(format!("model id {id:?}: {problem}")))?;
    Ok(forward_whole(&state, upstream, method, uri, &headers, Bytes::new()).await?)
}

/// The model id of a `/v1/models/{id}` path, read from the path exactly as
/// the client sent it (percent-decoded once, here), and the one upstream
/// path segment it becomes. Ids with `/` (Hugging Face style, `org/model`)
/// are accepted whether the client wrote the slash or `%2F`, and reach the
/// upstream as one segment (`org%2Fmodel`).
pub fn model_id(path: &str) -> Result<(String, PathSegment), ApiError> {
    let tail = path.strip_prefix(MODELS_PREFIX).unwrap_or_default();
    PathSegment::from_request_path(tail).map_err(|problem| {
        ApiError::bad_request(format!(
            "the model id in the path {problem}; send the id as the upstream lists it in GET /v1/models"
        ))
        .with_code("invalid_model_id")
        .with_param("model")
    })
}

/// Where the id starts in a `/v1/models/{id}` path.
const MODELS_PREFIX: &str = "/v1/models/";

#[cfg(test)]
mod tests {
    use super::model_id;

    #[test]
    fn the_id_is_the_path_after_the_prefix_as_one_segment() {
        let (id, segment) = model_id("/v1/models/meta-llama/Llama-3.1-8B").unwrap();
        assert_eq!(id, "meta-llama/Llama-3.1-8B");
        assert_eq!(segment.as_str(), "meta-llama%2FLlama-3.1-8B");
        let error = model_id("/v1/models/..%2Ffiles%2Ffile-abc123").unwrap_err();
        assert_eq!(error.status, 400);
        assert_eq!(error.code, Some("invalid_model_id"));
    }
}
