//! `POST /admin/v1/tenants/{tenant}/route`: how the tenant's active
//! snapshot would serve a text or a conversation (the routing text, every
//! cluster's distance and threshold, the path, and the block or the
//! critic's rules), explained by the proxy's own routing code
//! ([`crate::experience::explain`]). Behind the dashboard and `uno route`.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value};

use super::extract::{self, Path};
use super::{conflict, known_tenant, storage_error, store};
use crate::app::AppState;
use crate::experience::explain::{ExplainError, Explanation, explain_request, request_from};
use crate::proxy::reply::ErrorReply;

/// Explains the routing of the body's `text` or `messages` (with any other
/// chat request field routing reads: `tools`, `response_format`, …) under
/// the tenant's active snapshot as stored (what proxies serve once they
/// have loaded it) and this server's `[learn]` serving settings.
pub async fn route(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    extract::Json(body): extract::Json<Map<String, Value>>,
) -> Result<Json<Explanation>, ErrorReply> {
    let request = request_from(body)?;
    let store = store(&state)?;
    known_tenant(store, &tenant).await?;
    let snapshot = store.snapshot(&tenant, None).await.map_err(storage_error)?;
    let policy = &state.experience().policy;
    match explain_request(snapshot.as_ref(), policy, &tenant, &request) {
        Ok(explanation) => Ok(Json(explanation)),
        Err(ExplainError::BadRequest(error)) => Err(error.into()),
        Err(err @ ExplainError::Load(_)) => Err(conflict(err.to_string()).into()),
    }
}
