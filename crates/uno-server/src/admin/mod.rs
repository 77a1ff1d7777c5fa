//! The admin API (`/admin/v1/…`), behind its own key, and its OpenAPI
//! document (`/admin/openapi.json`, public).
//!
//! One file per resource; this one holds the key check, the route table and
//! the helpers every handler shares (the store, error mapping, times).
//! Every bad input is an OpenAI-shaped 4xx: malformed parameters 400 (the
//! [`extract`] wrappers), unknown tenants, interactions, snapshots and rules
//! 404, conflicts 409; a database that is away is a 503. Changes are
//! recorded in the audit log with the actor `admin-api`.

mod clusters;
mod export;
mod extract;
mod interactions;
mod learned;
mod openapi;
mod routing;
mod rules;
mod snapshots;
mod stats;
mod tenants;
mod worker;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post};
use uno_core::{ApiError, ErrorKind};

use crate::app::AppState;
use crate::auth::{bearer, key_digest};
use crate::proxy::reply::error_response;

/// Who the audit log names for changes made through this API.
const ACTOR: &str = "admin-api";

/// Refuses requests without the admin key. With no admin key configured
/// the admin API does not exist (404), so it cannot be probed.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.admin_key() else {
        return error_response(&ApiError::not_found(
            "the admin API is disabled; set admin.key (UNO_ADMIN_KEY) to enable it",
        ));
    };
    let given = bearer(request.headers()).map(key_digest);
    if given.as_ref() != Some(expected) {
        return error_response(&ApiError::unauthorized(
            "the admin API needs `Authorization: Bearer <admin key>` (admin.key, not a client key)",
        ));
    }
    next.run(request).await
}

fn store(state: &AppState) -> Result<&uno_store::Store, ApiError> {
    state
        .persistence()
        .map(|p| &p.store)
        .ok_or_else(|| ApiError::unavailable("the admin API needs a database (database.url)"))
}

fn storage_error(err: uno_store::StoreError) -> ApiError {
    if err.is_unavailable() {
        ApiError::unavailable(format!("{err}; retry when the database is back"))
    } else {
        tracing::error!(%err, "admin API: store error");
        ApiError::internal(err.to_string())
    }
}

/// A 409: the request is well-formed but the state does not allow it.
fn conflict(message: impl Into<String>) -> ApiError {
    ApiError {
        status: 409,
        message: message.into(),
        kind: ErrorKind::InvalidRequest,
        code: Some("conflict"),
        param: None,
    }
}

/// A 400 naming the offending parameter.
fn bad_param(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).with_param(param)
}

/// 404 unless the store knows `tenant` (keys, interactions, snapshots or
/// learning logs), so a typo in a tenant id is not an empty 200.
async fn known_tenant(store: &uno_store::Store, tenant: &str) -> Result<(), ApiError> {
    if store.tenant_exists(tenant).await.map_err(storage_error)? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "no tenant {tenant:?}: it has no keys, interactions or snapshots (GET /admin/v1/tenants lists them)"
        ))
        .with_param("tenant"))
    }
}

/// Unix microseconds as RFC 3339 UTC, the admin API's one time format.
fn time(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Checks that `value` is within `min..=max`, naming `param` otherwise.
fn in_range(param: &str, value: u32, min: u32, max: u32) -> Result<u32, ApiError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(bad_param(
            param,
            format!("{param} must be between {min} and {max}, got {value}"),
        ))
    }
}

/// The admin routes: `/admin/v1/…` behind [`require_admin`], and the
/// OpenAPI document without it.
pub fn router(state: AppState) -> Router<AppState> {
    let t = "/admin/v1/tenants/{tenant}";
    let guarded = Router::new()
        .route("/admin/v1/tenants", get(tenants::list))
        .route(t, delete(tenants::delete_tenant))
        .route(&format!("{t}/users/{{user}}"), delete(tenants::delete_user))
        .route(
            &format!("{t}/keys"),
            get(tenants::list_keys).post(tenants::create_key),
        )
        .route(&format!("{t}/keys/{{id}}"), delete(tenants::revoke_key))
        .route(&format!("{t}/interactions"), get(interactions::list))
        .route(&format!("{t}/interactions/{{id}}"), get(interactions::one))
        .route(&format!("{t}/clusters"), get(clusters::list))
        .route(&format!("{t}/snapshots"), get(snapshots::list))
        .route(&format!("{t}/snapshots/diff"), get(snapshots::diff))
        .route(
            &format!("{t}/snapshots/rollback"),
            post(snapshots::rollback),
        )
        .route(&format!("{t}/snapshots/{{version}}"), get(snapshots::one))
        .route(
            &format!("{t}/snapshots/{{version}}/activate"),
            post(snapshots::activate),
        )
        .route(
            &format!("{t}/rules/{{rule_id}}/{{action}}"),
            post(rules::set_override),
        )
        .route(&format!("{t}/export/{{kind}}"), get(export::export))
        .route(&format!("{t}/learned"), get(learned::learned))
        .route(&format!("{t}/route"), post(routing::route))
        .route("/admin/v1/worker", get(worker::status))
        .route("/admin/v1/stats/traffic", get(stats::traffic))
        .route("/admin/v1/stats/feedback", get(stats::feedback))
        .route_layer(axum::middleware::from_fn_with_state(state, require_admin));
    Router::new()
        .route("/admin/openapi.json", get(openapi::document))
        .merge(guarded)
}
