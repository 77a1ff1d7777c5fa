//! The reflective module on the request path (method §2.8, §6.2 step 3):
//! draft → critique → revision, three upstream calls.
//!
//! The draft is the client's own request, not streamed. The critique asks
//! the same model for numbered suggestions, given the cluster's served rules
//! most similar to the query. The revision is the client's request again
//! (its sampling parameters, its stream flag) with the revision prompt as
//! its messages, and is streamed to the client through the usual relay when
//! the client asked to stream. Each step has its own timeout. When the draft
//! fails, the client gets that failure as a passthrough request would; when
//! the critique or the revision fails, the draft is the answer (UNO-Single
//! behaviour), streamed as one chunk if the client asked for a stream.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;
use uno_core::ApiError;
use uno_core::interaction::{Outcome, ResponseBody};
use uno_learn::prompts::{self, Lang};
use uno_llm::{Endpoint, Upstream};

use super::rewrite;
use crate::app::AppState;
use crate::proxy::headers::travels_upstream;
use crate::proxy::pending::{Ending, PendingInteraction};
use crate::proxy::relay::relay_stream;
use crate::proxy::whole::{WholeResponse, read_whole};

/// How many of the cluster's rules the critic is shown.
pub const CRITIC_RULES: usize = 5;

/// One reflective request.
pub struct Reflection<'a> {
    /// Shared state (upstream client).
    pub state: &'a AppState,
    /// The client's headers (those that travel go upstream on every call).
    pub headers: &'a HeaderMap,
    /// The upstream serving the client's model.
    pub upstream: &'a Upstream,
    /// The client's body.
    pub body: &'a Bytes,
    /// The client's model.
    pub model: &'a str,
    /// The query text.
    pub query: &'a str,
    /// The critic's lessons: the cluster's rules most like the query.
    pub rules: Vec<String>,
    /// Whether the client asked to stream.
    pub stream: bool,
    /// Whether a streaming client asked for a usage chunk.
    pub include_usage: bool,
    /// The limit of each step.
    pub step_timeout: Duration,
}

impl Reflection<'_> {
    /// Serves the request; `pending` is logged however it ends, with the
    /// draft and the critique.
    pub async fn serve(self, mut pending: PendingInteraction) -> Result<Response, ApiError> {
        let client = match rewrite::object(self.body) {
            Ok(client) => client,
            Err(err) => return Err(fail(pending, ApiError::bad_request(err.to_string()))),
        };
        pending.upstream_sent(Instant::now());
        let draft = match self.whole("draft", rewrite::draft_body(&client)).await {
            Ok(draft) => draft,
            Err(error) => return Err(fail(pending, error)),
        };
        if !draft.status.is_success() {
            return Ok(finish_whole(pending, draft));
        }
        let draft_json: Value = serde_json::from_slice(&draft.body).unwrap_or(Value::Null);
        let Some(draft_text) = rewrite::completion_text(&draft_json).map(str::to_owned) else {
            tracing::warn!("the draft has no text to critique; answering with it");
            return Ok(self.answer_with_draft(pending, draft, &draft_json));
        };
        pending.reflection(Some(draft_text.clone()), None);

        let lang = Lang::of(self.query);
        let critic = prompts::critic(lang, self.query, &draft_text, &self.rules);
        let critique = match self
            .whole("critique", rewrite::critique_body(self.model, &critic))
            .await
        {
            Ok(reply) if reply.status.is_success() => {
                let json: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
                rewrite::completion_text(&json)
                    .map(str::to_owned)
                    .filter(|c| !c.trim().is_empty())
            }
            Ok(reply) => {
                tracing::warn!(
                    status = reply.status.as_u16(),
                    "the critique failed; answering with the draft"
                );
                None
            }
            Err(error) => {
                tracing::warn!(%error.message, "the critique failed; answering with the draft");
                None
            }
        };
        let Some(critique) = critique else {
            return Ok(self.answer_with_draft(pending, draft, &draft_json));
        };
        pending.reflection(Some(draft_text.clone()), Some(critique.clone()));

        let revision = prompts::revision(lang, self.query, &draft_text, &critique);
        let revision_body = rewrite::revision_body(&client, &revision);
        let sent = self.state.upstream().send_filtered(
            self.upstream,
            Method::POST,
            self.upstream.endpoint(Endpoint::ChatCompletions),
            self.headers,
            travels_upstream,
            revision_body,
        );
        let response = match tokio::time::timeout(self.step_timeout, sent).await {
            Ok(Ok(response)) if response.response.status().is_success() => response,
            Ok(Ok(response)) => {
                tracing::warn!(
                    status = response.response.status().as_u16(),
                    "the revision failed; answering with the draft"
                );
                return Ok(self.answer_with_draft(pending, draft, &draft_json));
            }
            Ok(Err(err)) => {
                tracing::warn!(%err, "the revision failed; answering with the draft");
                return Ok(self.answer_with_draft(pending, draft, &draft_json));
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.step_timeout, "the revision timed out; answering with the draft");
                return Ok(self.answer_with_draft(pending, draft, &draft_json));
            }
        };
        let is_event_stream = response
            .response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if self.stream && is_event_stream {
            let (parts, body) = response.response.into_parts();
            return Ok(relay_stream(self.state, &parts, body, pending));
        }
        match within(self.step_timeout, read_whole(self.state, response)).await {
            Ok(revised) => Ok(finish_whole(pending, revised)),
            Err(error) => {
                tracing::warn!(%error.message, "the revision broke off; answering with the draft");
                Ok(self.answer_with_draft(pending, draft, &draft_json))
            }
        }
    }

    /// Sends one non-streamed step and reads its answer, within the step
    /// timeout.
    async fn whole(&self, step: &str, body: Bytes) -> Result<WholeResponse, ApiError> {
        let state = self.state;
        let call = async {
            let response = state
                .upstream()
                .send_filtered(
                    self.upstream,
                    Method::POST,
                    self.upstream.endpoint(Endpoint::ChatCompletions),
                    self.headers,
                    travels_upstream,
                    body,
                )
                .await
                .map_err(|err| err.to_api_error())?;
            read_whole(state, response).await
        };
        within(self.step_timeout, call).await.map_err(|mut error| {
            error.message = format!("reflective {step}: {}", error.message);
            error
        })
    }

    /// The draft as the answer: as received, or as a stream of one chunk
    /// when the client asked to stream.
    fn answer_with_draft(
        &self,
        pending: PendingInteraction,
        draft: WholeResponse,
        draft_json: &Value,
    ) -> Response {
        if !self.stream {
            return finish_whole(pending, draft);
        }
        let events = rewrite::completion_as_sse(draft_json, self.include_usage);
        pending.finish(Ending {
            status: 200,
            outcome: Outcome::Completed,
            response: ResponseBody::Stream(vec![events.clone()]),
            first_byte: Some(Instant::now()),
            error: None,
        });
        let mut response = Response::new(Body::from(events));
        let h = response.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

/// `call`, or a 504 after `limit`.
async fn within<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(ApiError::gateway_timeout(format!(
            "no answer within {limit:?}; raise learn.reflective_step_timeout_ms if the model is slow"
        )))
    })
}

/// Logs `pending` as failed with `error` and hands the error back.
fn fail(pending: PendingInteraction, error: ApiError) -> ApiError {
    pending.finish(Ending {
        status: error.status,
        outcome: Outcome::Failed,
        response: ResponseBody::None,
        first_byte: None,
        error: Some(error.message.clone()),
    });
    error
}

/// Logs and returns a whole upstream answer, as passthrough would.
fn finish_whole(pending: PendingInteraction, whole: WholeResponse) -> Response {
    let success = whole.status.is_success();
    pending.finish(Ending {
        status: whole.status.as_u16(),
        outcome: if success {
            Outcome::Completed
        } else {
            Outcome::Failed
        },
        response: ResponseBody::Complete(whole.body.clone()),
        first_byte: Some(Instant::now()),
        error: (!success).then(|| format!("upstream answered {}", whole.status)),
    });
    whole.into_response()
}
