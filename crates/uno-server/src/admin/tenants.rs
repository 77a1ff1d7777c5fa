//! Tenants, their API keys, and deleting a tenant or one of its users.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use uno_core::ApiError;
use uno_store::DeletionReport;
use uno_store::keys::KeyInfo;
use uuid::Uuid;

use super::extract::{self, Path};
use super::{ACTOR, bad_param, known_tenant, storage_error, store, time};
use crate::app::AppState;
use crate::proxy::reply::ErrorReply;

/// One tenant in the overview.
#[derive(Debug, Serialize)]
pub struct Tenant {
    tenant: String,
    keys_active: u64,
    interactions: u64,
    last_interaction_at: Option<String>,
    snapshot_version: Option<i64>,
}

/// A list, as every admin listing returns it.
#[derive(Debug, Serialize)]
pub struct List<T> {
    data: Vec<T>,
}

/// `GET /admin/v1/tenants`: every tenant with keys, interactions, snapshots
/// or learning logs.
pub async fn list(State(state): State<AppState>) -> Result<Json<List<Tenant>>, ErrorReply> {
    let rows = store(&state)?
        .tenants_overview()
        .await
        .map_err(storage_error)?;
    Ok(Json(List {
        data: rows
            .into_iter()
            .map(|t| Tenant {
                tenant: t.tenant,
                keys_active: t.keys_active,
                interactions: t.interactions,
                last_interaction_at: t.last_interaction_at.map(time),
                snapshot_version: t.snapshot_version,
            })
            .collect(),
    }))
}

/// A key as listed: never the secret or its hash.
#[derive(Debug, Serialize)]
pub struct Key {
    id: Uuid,
    name: Option<String>,
    prefix: String,
    created_at: String,
    revoked_at: Option<String>,
}

impl From<KeyInfo> for Key {
    fn from(k: KeyInfo) -> Self {
        let rfc = |t: chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        Key {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            created_at: rfc(k.created_at),
            revoked_at: k.revoked_at.map(rfc),
        }
    }
}

/// `GET …/keys`: the tenant's keys, newest first.
pub async fn list_keys(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<List<Key>>, ErrorReply> {
    let store = store(&state)?;
    known_tenant(store, &tenant).await?;
    let keys = store
        .list_keys(Some(&tenant))
        .await
        .map_err(storage_error)?;
    Ok(Json(List {
        data: keys.into_iter().map(Key::from).collect(),
    }))
}

/// The body of `POST …/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    name: Option<String>,
}

/// The answer to `POST …/keys`: the only time the secret is shown.
#[derive(Debug, Serialize)]
pub struct CreatedKey {
    id: Uuid,
    key: String,
    tenant: String,
    name: Option<String>,
    prefix: String,
    created_at: String,
}

/// Tenant ids are free text, but not empty, not huge, and without control
/// characters (they end up in logs, metrics labels and file names).
fn valid_tenant(tenant: &str) -> Result<(), ApiError> {
    if tenant.is_empty() || tenant.len() > 128 || tenant.chars().any(char::is_control) {
        return Err(bad_param(
            "tenant",
            "a tenant id is 1 to 128 characters without control characters",
        ));
    }
    Ok(())
}

/// `POST …/keys`: a new key for the tenant (creating the tenant if new).
pub async fn create_key(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    extract::Json(body): extract::Json<NewKeyBody>,
) -> Result<(StatusCode, Json<CreatedKey>), ErrorReply> {
    valid_tenant(&tenant)?;
    if body
        .name
        .as_ref()
        .is_some_and(|name| name.len() > 200 || name.chars().any(char::is_control))
    {
        return Err(bad_param(
            "name",
            "a key name is at most 200 characters without control characters",
        )
        .into());
    }
    let new = store(&state)?
        .create_key_by(&tenant, body.name.as_deref(), ACTOR)
        .await
        .map_err(storage_error)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: new.info.id,
            key: new.secret,
            tenant: new.info.tenant,
            name: new.info.name,
            prefix: new.info.prefix,
            created_at: new
                .info
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }),
    ))
}

/// The answer to a revocation.
#[derive(Debug, Serialize)]
pub struct Revoked {
    id: Uuid,
    revoked: bool,
}

/// `DELETE …/keys/{id}`: revokes one of the tenant's keys. A key of another
/// tenant is a 404, as an unknown one; revoking twice is not an error.
pub async fn revoke_key(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, Uuid)>,
) -> Result<Json<Revoked>, ErrorReply> {
    let store = store(&state)?;
    let keys = store
        .list_keys(Some(&tenant))
        .await
        .map_err(storage_error)?;
    let Some(key) = keys.into_iter().find(|k| k.id == id) else {
        return Err(
            ApiError::not_found(format!("tenant {tenant:?} has no key {id}"))
                .with_param("id")
                .into(),
        );
    };
    if key.revoked_at.is_none() {
        store
            .revoke_key_by(&id.to_string(), ACTOR)
            .await
            .map_err(storage_error)?;
    }
    Ok(Json(Revoked { id, revoked: true }))
}

/// `DELETE /admin/v1/tenants/{tenant}`: every interaction, feedback row,
/// key, learning log, snapshot and rule override of the tenant.
pub async fn delete_tenant(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<DeletionReport>, ErrorReply> {
    let report = store(&state)?
        .delete_tenant(&tenant, ACTOR)
        .await
        .map_err(storage_error)?;
    Ok(Json(report))
}

/// `DELETE /admin/v1/tenants/{tenant}/users/{user}`: everything about one
/// end user of the tenant.
pub async fn delete_user(
    State(state): State<AppState>,
    Path((tenant, user)): Path<(String, String)>,
) -> Result<Json<DeletionReport>, ErrorReply> {
    let report = store(&state)?
        .delete_user(&tenant, &user, ACTOR)
        .await
        .map_err(storage_error)?;
    Ok(Json(report))
}
