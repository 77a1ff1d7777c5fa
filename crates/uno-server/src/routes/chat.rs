//! `POST /v1/chat/completions`, plain and streamed, with learned experience
//! applied (method §6.2): the request is planned against the tenant's
//! active snapshot, then forwarded untouched, with the cluster's rule block
//! in its system message (primary), or through draft, critique and revision
//! (reflective). Every answer carries `x-uno-snapshot`, `x-uno-cluster` and
//! `x-uno-path`, and its log record says the same.

use std::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method};
use uno_core::ApiError;
use uno_core::digest::RequestDigest;
use uno_core::interaction::{Outcome, ResponseBody, ServePath};
use uno_core::wire::ChatRequestView;
use uno_llm::{Endpoint, Upstream, collect_body};

use super::forward::model_not_found;
use crate::app::AppState;
use crate::experience::reflective::{CRITIC_RULES, Reflection};
use crate::experience::route::{self, Action};
use crate::experience::{Stamp, rewrite};
use crate::ownership::{self, Settled};
use crate::proxy::body::read_limited;
use crate::proxy::context::{RequestContext, ServedAs};
use crate::proxy::headers::{copy_from_upstream, travels_upstream};
use crate::proxy::pending::{Ending, PendingInteraction};
use crate::proxy::relay::relay_stream;
use crate::proxy::reply::{ErrorReply, error_response};
use crate::proxy::whole::body_error;

/// The header that names the end user, when the body's `user` does not.
pub const END_USER_HEADER: &str = "x-uno-user";

/// Serves a chat completion: plans it against the tenant's experience,
/// serves it by the plan, and logs the exchange.
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(mut context): Extension<RequestContext>,
    request: Request,
) -> Result<Response, ErrorReply> {
    // The request is taken whole: the header map is then borrowed, never
    // cloned, on its way upstream.
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let bytes = read_limited(body, &headers, state.max_body_bytes()).await?;
    let view = ChatRequestView::parse(&bytes)?;
    let stream = view.is_stream();
    let include_usage = view
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
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
    // Before anything is planned, forwarded or logged: another tenant's
    // id is refused here, and the plan sees the id that will be logged.
    let settled = ownership::settle(&state, &mut context).await?;
    let experience = state.experience();
    let mut plan = route::plan(
        experience.snapshots.get(&context.tenant),
        &experience.policy,
        &context.tenant,
        context.id,
        &headers,
        &view,
    );
    let model = matches!(plan.action, Action::Reflective { .. }).then(|| view.model.to_string());
    // Taken now, from this parse and while the bytes are in cache, when the
    // exchange will be logged to a store (see uno_core::digest).
    let digest = state.persistence().is_some().then(|| {
        RequestDigest::new(
            &context.tenant,
            &view.model,
            view.messages.iter().map(|m| (m.role.as_ref(), m.text())),
        )
    });
    drop(view);

    // The primary body is built before anything is logged, so that a body
    // that cannot be rewritten is served, and logged, as passthrough.
    let mut forwarded = bytes.clone();
    if let Action::Primary = plan.action {
        let block = plan.routed_cluster().map_or("", |c| c.block.as_str());
        match rewrite::with_block(&bytes, block) {
            Ok(body) => forwarded = body,
            Err(err) => {
                tracing::warn!(%err, "serving passthrough instead of primary");
                plan.trace.path = Some(ServePath::Passthrough);
                plan.action = Action::Forward;
            }
        }
    }
    let stamp = Stamp {
        snapshot: plan.snapshot.as_ref().map(|s| s.version_header.clone()),
        cluster: plan.routed_cluster().and_then(|c| c.id_header.clone()),
        path: plan.trace.path,
    };

    let mut pending = PendingInteraction::new(
        state.sink().clone(),
        context,
        end_user,
        bytes.clone(),
        digest,
        stream,
        plan.trace.clone(),
    );
    if settled == Settled::Retry {
        pending.replaces_earlier();
    }
    let served = match plan.action {
        Action::Forward | Action::Primary => {
            forward(&state, &headers, upstream, forwarded, stream, pending).await
        }
        Action::Reflective {
            ref routed,
            ref query,
        } => {
            let rules = plan
                .routed_cluster()
                .map(|c| c.rules_like(&routed.vector, CRITIC_RULES))
                .unwrap_or_default();
            Reflection {
                state: &state,
                headers: &headers,
                upstream,
                body: &bytes,
                model: model.as_deref().unwrap_or_default(),
                query,
                rules,
                stream,
                include_usage,
                step_timeout: state.experience().step_timeout,
            }
            .serve(pending)
            .await
        }
    };
    let mut response = served.unwrap_or_else(|error| error_response(&error));
    stamp.apply(&mut response);
    if let Settled::Reassigned(id) = settled {
        response.extensions_mut().insert(ServedAs(id));
    }
    Ok(response)
}

/// Forwards `body`, relaying the answer as it arrives; the exchange is
/// logged however it ends.
async fn forward(
    state: &AppState,
    headers: &HeaderMap,
    upstream: &Upstream,
    body: Bytes,
    stream: bool,
    mut pending: PendingInteraction,
) -> Result<Response, ApiError> {
    pending.upstream_sent(Instant::now());
    let sent = state
        .upstream()
        .send_filtered(
            upstream,
            Method::POST,
            upstream.endpoint(Endpoint::ChatCompletions),
            headers,
            travels_upstream,
            body,
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
            return Err(error);
        }
    };

    let (parts, upstream_body) = upstream_response.response.into_parts();
    let is_event_stream = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));

    if stream && parts.status.is_success() && is_event_stream {
        return Ok(relay_stream(state, &parts, upstream_body, pending));
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
            return Err(error);
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
