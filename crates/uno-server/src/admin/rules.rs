//! Operators' rule overrides: approve (serve even below the minimum
//! support or share, and a rule held as a promotion), disable (never
//! serve), reset (support and the promotion hold decide again).
//!
//! The override is stored, so every later rebuild by the worker applies it,
//! and a new snapshot version derived from the active one, with the
//! override applied and the block rebuilt, is published and activated at
//! once, so the decision takes effect without waiting for the worker.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use uno_core::ApiError;
use uno_learn::overrides::{Overrides, apply_to_snapshot, rule_id};
use uno_store::admin::RuleState;

use super::extract::Path;
use super::snapshots::refresh_served;
use super::{ACTOR, known_tenant, storage_error, store};
use crate::app::AppState;
use crate::proxy::reply::ErrorReply;

/// What to do with the rule.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Approve,
    Disable,
    Reset,
}

impl Action {
    fn state(self) -> Option<RuleState> {
        match self {
            Action::Approve => Some(RuleState::Approved),
            Action::Disable => Some(RuleState::Disabled),
            Action::Reset => None,
        }
    }
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct Applied {
    rule_id: String,
    state: &'static str,
    cluster: String,
    text: String,
    served: bool,
    snapshot_version: i64,
}

/// `POST …/rules/{rule_id}/{approve|disable|reset}`.
pub async fn set_override(
    State(state): State<AppState>,
    Path((tenant, id, action)): Path<(String, String, Action)>,
) -> Result<Json<Applied>, ErrorReply> {
    let store = store(&state)?;
    known_tenant(store, &tenant).await?;
    let unknown = || {
        ApiError::not_found(format!(
            "tenant {tenant:?} has no rule {id:?} in its active snapshot (GET …/clusters lists rule ids)"
        ))
        .with_param("rule_id")
    };
    let active = store
        .snapshot(&tenant, None)
        .await
        .map_err(storage_error)?
        .ok_or_else(unknown)?;
    let (cluster, text) = active
        .clusters
        .iter()
        .find_map(|c| {
            c.rules
                .iter()
                .find(|r| rule_id(&c.id, &r.text) == id)
                .map(|r| (c.id.clone(), r.text.clone()))
        })
        .ok_or_else(unknown)?;
    let new_state = action.state();
    store
        .set_rule_override(&tenant, &id, &cluster, &text, new_state, ACTOR)
        .await
        .map_err(storage_error)?;
    let overrides = Overrides::load(store, &tenant)
        .await
        .map_err(storage_error)?;
    let mut derived = active.clone();
    apply_to_snapshot(&mut derived, &overrides, &state.experience().learn);
    let note = format!(
        "admin: {} rule {id}",
        new_state.map_or("reset", RuleState::as_str)
    );
    let version = match store
        .publish_snapshot(&derived, &note)
        .await
        .map_err(storage_error)?
    {
        Some(version) => version,
        // The derived content equals the newest version: serve that one.
        None => {
            let latest = store
                .list_snapshots(Some(&tenant))
                .await
                .map_err(storage_error)?
                .first()
                .map_or(active.version, |s| s.version);
            if latest != active.version {
                store
                    .activate_snapshot(&tenant, latest)
                    .await
                    .map_err(storage_error)?;
            }
            latest
        }
    };
    refresh_served(&state, store).await;
    let served = derived
        .clusters
        .iter()
        .find(|c| c.id == cluster)
        .and_then(|c| c.rules.iter().find(|r| r.text == text))
        .is_some_and(|r| r.served);
    Ok(Json(Applied {
        rule_id: id,
        state: new_state.map_or("default", RuleState::as_str),
        cluster,
        text,
        served,
        snapshot_version: version,
    }))
}
