//! `POST /v1/feedback`: thumbs, comments and corrections on an interaction.
//!
//! The post is validated, its interaction checked to belong to the caller's
//! tenant (from memory for what this process served, else from the
//! database), and then queued for the log writer, so it is never lost while
//! the database is away. Posting again for the same (interaction, user)
//! updates the earlier feedback: the feedback id is derived from that pair.

use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use uno_core::feedback::{ExplicitFeedback, Rating, explicit_feedback_id};
use uno_core::{ApiError, InteractionId};

use crate::app::AppState;
use crate::metrics::RatingLabel;
use crate::proxy::body::read_limited;
use crate::proxy::context::RequestContext;
use crate::proxy::reply::ErrorReply;
use crate::routes::chat::END_USER_HEADER;

/// Longest end-user id accepted.
const MAX_USER_LEN: usize = 256;

/// The body of a feedback post.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    interaction_id: String,
    #[serde(default)]
    rating: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    expected_output: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// The answer to a feedback post.
#[derive(Debug, Serialize)]
struct FeedbackAccepted {
    feedback_id: String,
    interaction_id: String,
    status: &'static str,
}

/// Accepts feedback on one of the tenant's interactions.
pub async fn post_feedback(
    State(state): State<AppState>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ErrorReply> {
    let Some(persistence) = state.persistence() else {
        return Err(ApiError::unavailable(
            "feedback needs a database; start uno with database.url (DATABASE_URL) set",
        )
        .into());
    };
    let limit = state.feedback_max_text_bytes() * 2 + 4096;
    let bytes = read_limited(body, &headers, limit).await?;
    let request: FeedbackRequest = parse(&bytes)?;
    let feedback = validate(&state, &context, &headers, request)?;
    check_owner(&state, &context, feedback.interaction_id).await?;

    let rating = match feedback.rating {
        Some(Rating::Up) => RatingLabel::Up,
        Some(Rating::Down) => RatingLabel::Down,
        None => RatingLabel::None,
    };
    let response = FeedbackAccepted {
        feedback_id: feedback.id.to_string(),
        interaction_id: feedback.interaction_id.to_string(),
        status: "accepted",
    };
    persistence.log.submit_feedback(feedback).map_err(|_| {
        ApiError::unavailable("uno is overloaded and could not queue the feedback; retry shortly")
    })?;
    state.metrics().record_feedback(rating);
    Ok(axum::response::IntoResponse::into_response(Json(response)))
}

fn parse(bytes: &[u8]) -> Result<FeedbackRequest, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("request body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::bad_request(format!(
                "request body: {inner}; expected {{\"interaction_id\", \"rating\": \"up\"|\"down\", \"comment\", \"expected_output\", \"user\"}}"
            ))
        } else {
            ApiError::bad_request(format!("{path}: {inner}")).with_param(path)
        }
    })
}

fn validate(
    state: &AppState,
    context: &RequestContext,
    headers: &HeaderMap,
    request: FeedbackRequest,
) -> Result<ExplicitFeedback, ApiError> {
    let interaction_id: InteractionId = request.interaction_id.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "interaction_id must be the UUID uno returned in x-uno-interaction-id, got {:?}",
            request.interaction_id.chars().take(80).collect::<String>()
        ))
        .with_param("interaction_id")
    })?;
    let rating = match request.rating.as_deref() {
        None => None,
        Some("up") => Some(Rating::Up),
        Some("down") => Some(Rating::Down),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "rating must be \"up\" or \"down\", got {:?}",
                other.chars().take(40).collect::<String>()
            ))
            .with_param("rating"));
        }
    };
    let max = state.feedback_max_text_bytes();
    let text = |field: &'static str, value: Option<String>| -> Result<Option<String>, ApiError> {
        match value {
            Some(v) if v.len() > max => Err(ApiError::bad_request(format!(
                "{field} is {} bytes; the limit is {max} (feedback.max_text_bytes)",
                v.len()
            ))
            .with_param(field)
            .with_code("feedback_too_long")),
            Some(v) if v.trim().is_empty() => Ok(None),
            other => Ok(other),
        }
    };
    let comment = text("comment", request.comment)?;
    let expected_output = text("expected_output", request.expected_output)?;
    if rating.is_none() && comment.is_none() && expected_output.is_none() {
        return Err(ApiError::bad_request(
            "feedback needs at least one of rating, comment or expected_output",
        ));
    }
    let header_user = headers.get(END_USER_HEADER).and_then(|v| v.to_str().ok());
    let end_user = request
        .user
        .as_deref()
        .or(header_user)
        .unwrap_or("")
        .trim()
        .to_owned();
    if end_user.len() > MAX_USER_LEN {
        return Err(
            ApiError::bad_request(format!("user must be at most {MAX_USER_LEN} bytes"))
                .with_param("user"),
        );
    }
    Ok(ExplicitFeedback {
        id: explicit_feedback_id(&context.tenant, interaction_id, &end_user),
        tenant: context.tenant.to_string(),
        interaction_id,
        end_user,
        rating,
        comment,
        expected_output,
        at: SystemTime::now(),
    })
}

/// Confirms the interaction is the caller's. An interaction of another
/// tenant and an unknown one get the same 404, so ids leak nothing.
async fn check_owner(
    state: &AppState,
    context: &RequestContext,
    id: InteractionId,
) -> Result<(), ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "no interaction {id} for this API key; use the x-uno-interaction-id uno returned"
        ))
        .with_param("interaction_id")
    };
    if let Some(owner) = state.recent().tenant_of(id) {
        return if owner == context.tenant {
            Ok(())
        } else {
            Err(not_found())
        };
    }
    let Some(persistence) = state.persistence() else {
        return Err(not_found());
    };
    // Served by another replica moments ago, its row may still be on its
    // way (that replica's queue, or its journal when the database was slow
    // to take a batch): look a few times across about a second.
    const LOOKS: usize = 6;
    for attempt in 0..LOOKS {
        match persistence.store.interaction_tenant(id.0).await {
            Ok(Some(owner)) if *owner == *context.tenant => return Ok(()),
            Ok(Some(_)) => return Err(not_found()),
            Ok(None) if attempt + 1 < LOOKS => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(None) => return Err(not_found()),
            Err(err) => {
                tracing::warn!(%err, "cannot check a feedback's interaction");
                return Err(ApiError::unavailable(
                    "the database is unavailable, so this interaction cannot be checked; retry shortly",
                ));
            }
        }
    }
    Err(not_found())
}
