//! A tenant's snapshot versions: list, one in full, the diff of two,
//! activating one and rolling back to the one before.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use uno_core::ApiError;
use uno_core::snapshot::{Snapshot, diff as snapshot_diff};
use uno_store::snapshot_actions::SnapshotActionError;

use super::extract::{Path, Query};
use super::{ACTOR, conflict, in_range, known_tenant, storage_error, store, time};
use crate::app::AppState;
use crate::proxy::reply::ErrorReply;

/// One version as listed.
#[derive(Debug, Serialize)]
pub struct VersionOut {
    version: i64,
    created_at: String,
    active: bool,
    clusters: usize,
    rules: usize,
    modes: Modes,
    logs: usize,
    embedder_id: String,
    digest: String,
    reason: Option<String>,
}

/// Clusters per mode.
#[derive(Debug, Serialize)]
pub struct Modes {
    passthrough: usize,
    primary: usize,
    reflective: usize,
}

/// The listing's query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
}

/// A list.
#[derive(Debug, Serialize)]
pub struct List {
    data: Vec<VersionOut>,
}

/// A version of the tenant, or a 404 naming it.
async fn load(store: &uno_store::Store, tenant: &str, version: i64) -> Result<Snapshot, ApiError> {
    store
        .snapshot(tenant, Some(version))
        .await
        .map_err(super::storage_error)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "tenant {tenant:?} has no snapshot version {version}"
            ))
            .with_param("version")
        })
}

/// `GET …/snapshots?limit=50`: newest first.
pub async fn list(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<List>, ErrorReply> {
    let limit = in_range("limit", params.limit.unwrap_or(50), 1, 500)?;
    let store = store(&state)?;
    known_tenant(store, &tenant).await?;
    let infos = store
        .list_snapshots(Some(&tenant))
        .await
        .map_err(storage_error)?;
    let mut data = Vec::new();
    for info in infos.into_iter().take(limit as usize) {
        let Some(s) = store
            .snapshot(&tenant, Some(info.version))
            .await
            .map_err(storage_error)?
        else {
            continue;
        };
        let (passthrough, primary, reflective) = s.mode_counts();
        data.push(VersionOut {
            version: info.version,
            created_at: time(info.created_at),
            active: info.active,
            clusters: s.clusters.len(),
            rules: s.clusters.iter().map(|c| c.served_rules().count()).sum(),
            modes: Modes {
                passthrough,
                primary,
                reflective,
            },
            logs: s.logs,
            embedder_id: info.embedder_id,
            digest: info.digest,
            reason: (!info.note.is_empty()).then_some(info.note),
        });
    }
    Ok(Json(List { data }))
}

/// `GET …/snapshots/{version}`: the snapshot as published.
pub async fn one(
    State(state): State<AppState>,
    Path((tenant, version)): Path<(String, i64)>,
) -> Result<Json<Snapshot>, ErrorReply> {
    Ok(Json(load(store(&state)?, &tenant, version).await?))
}

/// The diff's query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {
    from: i64,
    to: i64,
}

/// One cluster's change.
#[derive(Debug, Serialize)]
pub struct ChangeOut {
    id: String,
    mode: Option<ModeChange>,
    rules_added: Vec<String>,
    rules_removed: Vec<String>,
}

/// A mode before and after.
#[derive(Debug, Serialize)]
pub struct ModeChange {
    from: &'static str,
    to: &'static str,
}

/// What changed from one version to another.
#[derive(Debug, Serialize)]
pub struct DiffOut {
    from: i64,
    to: i64,
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<ChangeOut>,
}

/// `GET …/snapshots/diff?from=V&to=W`.
pub async fn diff(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(params): Query<DiffParams>,
) -> Result<Json<DiffOut>, ErrorReply> {
    let store = store(&state)?;
    let old = load(store, &tenant, params.from).await?;
    let new = load(store, &tenant, params.to).await?;
    let d = snapshot_diff(&old, &new);
    Ok(Json(DiffOut {
        from: params.from,
        to: params.to,
        added: d.added,
        removed: d.removed,
        changed: d
            .changed
            .into_iter()
            .map(|c| ChangeOut {
                id: c.id,
                mode: c.mode.map(|(from, to)| ModeChange {
                    from: from.as_str(),
                    to: to.as_str(),
                }),
                rules_added: c.rules_added,
                rules_removed: c.rules_removed,
            })
            .collect(),
    }))
}

/// The answer to activation and rollback.
#[derive(Debug, Serialize)]
pub struct Active {
    active_version: i64,
    previous_version: Option<i64>,
}

/// Makes this replica serve the store's active versions now instead of at
/// its next poll; other replicas follow by NOTIFY or their poll.
pub(super) async fn refresh_served(state: &AppState, store: &uno_store::Store) {
    if let Err(err) = state.experience().snapshots.refresh(store).await {
        tracing::warn!(%err, "admin API: could not reload the active snapshots; the poll will");
    }
}

/// `POST …/snapshots/{version}/activate`.
pub async fn activate(
    State(state): State<AppState>,
    Path((tenant, version)): Path<(String, i64)>,
) -> Result<Json<Active>, ErrorReply> {
    let store = store(&state)?;
    let done = store
        .activate_as(ACTOR, &tenant, version)
        .await
        .map_err(refused)?;
    refresh_served(&state, store).await;
    Ok(Json(Active {
        active_version: done.version,
        previous_version: done.previous,
    }))
}

/// `POST …/snapshots/rollback`: activates the version before the active
/// one; 409 when there is no active version or nothing older.
pub async fn rollback(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<Active>, ErrorReply> {
    let store = store(&state)?;
    known_tenant(store, &tenant).await?;
    let done = store.rollback_as(ACTOR, &tenant).await.map_err(refused)?;
    refresh_served(&state, store).await;
    Ok(Json(Active {
        active_version: done.version,
        previous_version: done.previous,
    }))
}

/// A refused snapshot action as an API error: 404 for a version the
/// tenant lacks, 409 when there is nothing to roll back to.
fn refused(err: SnapshotActionError) -> ApiError {
    match err {
        SnapshotActionError::NoSuchVersion { .. } => {
            ApiError::not_found(err.to_string()).with_param("version")
        }
        SnapshotActionError::NoActive { .. } | SnapshotActionError::Oldest { .. } => {
            conflict(err.to_string())
        }
        SnapshotActionError::Store(err) => storage_error(err),
    }
}
