//! The admin API (`/admin/v1/…`), behind its own key.
//!
//! This part: deleting everything about an end user or a tenant.
//! Deletions are recorded in the audit log with their counts.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uno_core::ApiError;
use uno_store::DeletionReport;

use axum::Router;

use crate::app::AppState;
use crate::auth::{bearer, key_digest};
use crate::reply::{ErrorReply, error_response};

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
        ApiError::internal(err.to_string())
    }
}

/// `DELETE /admin/v1/tenants/{tenant}`: every interaction, feedback row and
/// key of the tenant.
pub async fn delete_tenant(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<DeletionReport>, ErrorReply> {
    let report = store(&state)?
        .delete_tenant(&tenant, "admin-api")
        .await
        .map_err(storage_error)?;
    Ok(Json(report))
}

/// `DELETE /admin/v1/tenants/{tenant}/users/{user}`: everything about one
/// end user of the tenant.
pub async fn delete_user(
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
) -> Result<Response, ErrorReply> {
    let report = store(&state)?
        .delete_user(&tenant, &user, "admin-api")
        .await
        .map_err(storage_error)?;
    Ok(Json(report).into_response())
}

/// The admin routes, behind [`require_admin`].
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/admin/v1/tenants/{tenant}",
            axum::routing::delete(delete_tenant),
        )
        .route(
            "/admin/v1/tenants/{tenant}/users/{user}",
            axum::routing::delete(delete_user),
        )
        .route_layer(axum::middleware::from_fn_with_state(state, require_admin))
}
