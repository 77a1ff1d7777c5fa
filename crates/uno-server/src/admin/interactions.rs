//! A tenant's interactions (newest first, paged by cursor) and one
//! interaction with its content and feedback.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uno_core::ApiError;
use uno_core::conversation::content_text;
use uno_store::admin::{FeedbackView, InteractionQuery, InteractionView, RatedFilter};
use uuid::Uuid;

use super::extract::{Path, Query};
use super::{bad_param, in_range, known_tenant, storage_error, store, time};
use crate::app::AppState;
use crate::proxy::reply::ErrorReply;

/// How long the listed `query` may be, in characters.
const QUERY_CHARS: usize = 200;

/// `rated=` values.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rated {
    Up,
    Down,
    Any,
    None,
}

/// The listing's query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    before: Option<Uuid>,
    user: Option<String>,
    rated: Option<Rated>,
}

/// A feedback row.
#[derive(Debug, Serialize)]
pub struct Feedback {
    id: Uuid,
    user: Option<String>,
    rating: Option<&'static str>,
    comment: Option<String>,
    expected_output: Option<String>,
    source: String,
    source_interaction_id: Option<Uuid>,
    created_at: String,
}

impl From<FeedbackView> for Feedback {
    fn from(f: FeedbackView) -> Self {
        Feedback {
            id: f.id,
            user: f.user,
            rating: match f.rating {
                Some(r) if r > 0 => Some("up"),
                Some(r) if r < 0 => Some("down"),
                _ => None,
            },
            comment: f.comment,
            expected_output: f.expected_output,
            source: f.source,
            source_interaction_id: f.source_interaction_id,
            created_at: time(f.created_at),
        }
    }
}

/// An interaction as listed.
#[derive(Debug, Serialize)]
pub struct Summary {
    id: Uuid,
    created_at: String,
    model: String,
    user: Option<String>,
    status: i32,
    outcome: String,
    stream: bool,
    path: Option<String>,
    cluster: Option<String>,
    snapshot: Option<i64>,
    total_ms: f64,
    upstream_ms: Option<f64>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    error: Option<String>,
    query: Option<String>,
    feedback: Vec<Feedback>,
}

/// A page: `next` is the cursor for the following one (`before=`), absent
/// on the last page.
#[derive(Debug, Serialize)]
pub struct Page {
    data: Vec<Summary>,
    next: Option<Uuid>,
}

/// The request's messages, when its content is retained and parses.
fn messages(request: Option<&str>) -> Vec<Value> {
    request
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|v| v.get("messages").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// The last user message, cut to [`QUERY_CHARS`] characters.
fn last_query(request: Option<&str>) -> Option<String> {
    let messages = messages(request);
    let last = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    let text = content_text(last.get("content")?);
    Some(text.chars().take(QUERY_CHARS).collect())
}

impl Summary {
    fn from_view(v: InteractionView) -> Summary {
        Summary {
            query: last_query(v.request.as_deref()),
            id: v.id,
            created_at: time(v.created_at),
            model: v.model,
            user: v.user,
            status: v.status,
            outcome: v.outcome,
            stream: v.stream,
            path: v.path,
            cluster: v.cluster,
            snapshot: v.snapshot,
            total_ms: v.total_ms,
            upstream_ms: v.upstream_ms,
            prompt_tokens: v.prompt_tokens,
            completion_tokens: v.completion_tokens,
            error: v.error,
            feedback: v.feedback.into_iter().map(Feedback::from).collect(),
        }
    }
}

/// `GET …/interactions?limit=&before=&user=&rated=`.
pub async fn list(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<Page>, ErrorReply> {
    let limit = in_range("limit", params.limit.unwrap_or(50), 1, 200)?;
    let store = store(&state)?;
    known_tenant(store, &tenant).await?;
    let query = InteractionQuery {
        limit: limit + 1,
        before: params.before,
        user: params.user,
        rated: params.rated.map(|r| match r {
            Rated::Up => RatedFilter::Up,
            Rated::Down => RatedFilter::Down,
            Rated::Any => RatedFilter::Any,
            Rated::None => RatedFilter::None,
        }),
    };
    let Some(mut rows) = store
        .list_interactions(&tenant, &query)
        .await
        .map_err(storage_error)?
    else {
        return Err(bad_param(
            "before",
            format!("tenant {tenant:?} has no interaction to page from (before= must be an id from a previous page)"),
        )
        .into());
    };
    // One row more than asked says whether there is a next page.
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more.then(|| rows.last().map(|r| r.id)).flatten();
    Ok(Json(Page {
        data: rows.into_iter().map(Summary::from_view).collect(),
        next,
    }))
}

/// One interaction in full.
#[derive(Debug, Serialize)]
pub struct Detail {
    #[serde(flatten)]
    summary: Summary,
    content_retained: bool,
    messages: Vec<Value>,
    response: Option<String>,
    draft: Option<String>,
    critique: Option<String>,
}

/// `GET …/interactions/{id}`: another tenant's id is a 404, as an unknown
/// one.
pub async fn one(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, Uuid)>,
) -> Result<Json<Detail>, ErrorReply> {
    let view = store(&state)?
        .interaction_view(&tenant, id)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| {
            ApiError::not_found(format!("tenant {tenant:?} has no interaction {id}"))
                .with_param("id")
        })?;
    let content_retained = view.request.is_some();
    let messages = messages(view.request.as_deref());
    let (response, draft, critique) = (
        view.response.clone(),
        view.draft.clone(),
        view.critique.clone(),
    );
    Ok(Json(Detail {
        summary: Summary::from_view(view),
        content_retained,
        messages,
        response,
        draft,
        critique,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listed_query_is_the_last_user_turn_cut_to_200_characters() {
        let long = "x".repeat(300);
        let request = serde_json::json!({"messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": long}]},
        ]})
        .to_string();
        assert_eq!(last_query(Some(&request)).map(|q| q.len()), Some(200));
        assert_eq!(last_query(Some("not json")), None);
        assert_eq!(last_query(None), None);
    }
}
