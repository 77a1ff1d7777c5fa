//! `POST /v1/chat/completions`, plain and streamed.

use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method};
use uno_core::interaction::{Outcome, ResponseBody};
use uno_core::wire::ChatRequestView;
use uno_llm::{Endpoint, collect_body};

use super::forward::{body_error, model_not_found};
use crate::app::AppState;
use crate::body::read_limited;
use crate::context::RequestContext;
use crate::headers::{copy_from_upstream, travels_upstream};
use crate::pending::{Ending, PendingInteraction};
use crate::relay::RelayBody;
use crate::reply::ErrorReply;

/// The header that names the end user, when the body's `user` does not.
pub const END_USER_HEADER: &str = "x-uno-user";

/// Forwards a chat completion: the client's bytes go upstream unchanged, the
/// answer comes back as it arrives, and the exchange is logged.
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(context): Extension<RequestContext>,
    request: Request,
) -> Result<Response, ErrorReply> {
    // The request is taken whole: the header map is then borrowed, never
    // cloned, on its way upstream.
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let bytes = read_limited(body, &headers, state.max_body_bytes()).await?;
    let view = ChatRequestView::parse(&bytes)?;
    let stream = view.is_stream();
    let upstream = state
        .upstream()
        .select(&view.model)
        .ok_or_else(|| model_not_found(&view.model))?;
    let end_user = headers
        .get(END_USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(view.user.as_deref())
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    drop(view);

    // Remembered only where feedback can be posted (a store is configured).
    if state.persistence().is_some() {
        state.recent().insert(context.id, context.tenant.clone());
    }
    let mut pending = PendingInteraction::new(
        state.sink().clone(),
        context,
        end_user,
        bytes.clone(),
        stream,
    );
    pending.upstream_sent(Instant::now());
    let sent = state
        .upstream()
        .send_filtered(
            upstream,
            Method::POST,
            upstream.endpoint(Endpoint::ChatCompletions),
            &headers,
            travels_upstream,
            bytes,
        )
        .await;
    let upstream_response = match sent {
        Ok(response) => response,
        Err(err) => {
            let error = err.to_api_error();
            pending.finish(Ending {
                status: error.status,
                outcome: Outcome::Failed,
                response: ResponseBody::None,
                first_byte: None,
                error: Some(err.to_string()),
            });
            return Err(error.into());
        }
    };

    let (parts, upstream_body) = upstream_response.response.into_parts();
    let is_event_stream = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));

    if stream && parts.status.is_success() && is_event_stream {
        let relay = RelayBody::new(
            upstream_body,
            state.upstream().read_timeout(),
            parts.status.as_u16(),
            pending,
        );
        let mut response = Response::new(Body::new(relay));
        *response.status_mut() = parts.status;
        let out = response.headers_mut();
        copy_from_upstream(&parts.headers, out);
        out.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Tells nginx-style proxies in front of uno not to buffer the stream.
        out.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok(response);
    }

    let whole = match collect_body(upstream_body, state.upstream().read_timeout()).await {
        Ok(whole) => whole,
        Err(err) => {
            let error = body_error(&upstream_response.upstream, err);
            pending.finish(Ending {
                status: error.status,
                outcome: Outcome::Partial,
                response: ResponseBody::None,
                first_byte: None,
                error: Some(error.message.clone()),
            });
            return Err(error.into());
        }
    };
    let success = parts.status.is_success();
    pending.finish(Ending {
        status: parts.status.as_u16(),
        outcome: if success {
            Outcome::Completed
        } else {
            Outcome::Failed
        },
        response: ResponseBody::Complete(whole.clone()),
        first_byte: Some(Instant::now()),
        error: (!success).then(|| format!("upstream answered {}", parts.status)),
    });
    let mut response = Response::new(Body::from(whole));
    *response.status_mut() = parts.status;
    copy_from_upstream(&parts.headers, response.headers_mut());
    Ok(response)
}
