//! The learning worker's state: each tenant's publish job and the learning
//! logs by stage.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{storage_error, store, time};
use crate::app::AppState;
use crate::proxy::reply::ErrorReply;

/// One tenant's publish job.
#[derive(Debug, Serialize)]
pub struct TenantJob {
    tenant: String,
    dirty: bool,
    ready_logs: u64,
    last_run_at: Option<String>,
    last_logs: Option<u64>,
    leased_until: Option<String>,
    lease_owner: Option<String>,
}

/// Learning logs by stage.
#[derive(Debug, Serialize)]
pub struct Logs {
    by_stage: BTreeMap<&'static str, u64>,
    pending: u64,
    failed: u64,
    total: u64,
}

/// The status.
#[derive(Debug, Serialize)]
pub struct Status {
    tenants: Vec<TenantJob>,
    logs: Logs,
}

/// `GET /admin/v1/worker`.
pub async fn status(State(state): State<AppState>) -> Result<Json<Status>, ErrorReply> {
    let store = store(&state)?;
    let tenants = store.worker_tenants().await.map_err(storage_error)?;
    let counts = store
        .learn_stage_counts(None)
        .await
        .map_err(storage_error)?;
    let by_stage: BTreeMap<&'static str, u64> = [
        ("distil", counts.distil),
        ("embed", counts.embed),
        ("novelty", counts.novelty),
        ("ready", counts.ready),
        ("failed", counts.failed),
    ]
    .into_iter()
    .collect();
    Ok(Json(Status {
        tenants: tenants
            .into_iter()
            .map(|t| TenantJob {
                tenant: t.tenant,
                dirty: t.dirty,
                ready_logs: t.ready,
                last_run_at: t.last_run_at.map(time),
                last_logs: t.last_logs,
                leased_until: t.leased_until.map(time),
                lease_owner: t.lease_owner,
            })
            .collect(),
        logs: Logs {
            total: by_stage.values().sum(),
            pending: counts.pending(),
            failed: counts.failed,
            by_stage,
        },
    }))
}
