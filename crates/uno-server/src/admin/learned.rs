//! What a tenant's experience gained and lost over the last days: the
//! active snapshot compared with the one that was newest before the window.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use uno_core::snapshot::{ClusterExperience, Mode, Snapshot, diff};

use super::extract::{Path, Query};
use super::{in_range, known_tenant, storage_error, store, time};
use crate::app::AppState;
use crate::proxy::reply::ErrorReply;

/// `?days=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    days: Option<u32>,
}

/// A rule gained or lost.
#[derive(Debug, Serialize)]
pub struct RuleChange {
    cluster: String,
    text: String,
    support: usize,
}

/// A cluster's mode before and after (`None`: the cluster did not exist).
#[derive(Debug, Serialize)]
pub struct ModeChange {
    cluster: String,
    from: Option<&'static str>,
    to: Option<&'static str>,
}

/// The summary.
#[derive(Debug, Serialize)]
pub struct Learned {
    since: String,
    days: u32,
    snapshots: Vec<i64>,
    baseline_version: Option<i64>,
    active_version: Option<i64>,
    rules_added: Vec<RuleChange>,
    rules_removed: Vec<RuleChange>,
    mode_changes: Vec<ModeChange>,
}

fn rule_change(cluster: &ClusterExperience, text: &str) -> RuleChange {
    RuleChange {
        cluster: cluster.id.clone(),
        support: cluster
            .rules
            .iter()
            .find(|r| r.text == text)
            .map_or(0, |r| r.support),
        text: text.to_owned(),
    }
}

/// Compares `old` (none: before anything was learned) with `new`.
fn changes(old: Option<&Snapshot>, new: &Snapshot, out: &mut Learned) {
    let empty = Snapshot {
        clusters: Vec::new(),
        ..new.clone()
    };
    let old = old.unwrap_or(&empty);
    let d = diff(old, new);
    for id in &d.added {
        let Some(c) = new.clusters.iter().find(|c| &c.id == id) else {
            continue;
        };
        out.rules_added
            .extend(c.served_rules().map(|r| rule_change(c, &r.text)));
        if c.mode != Mode::Passthrough {
            out.mode_changes.push(ModeChange {
                cluster: id.clone(),
                from: None,
                to: Some(c.mode.as_str()),
            });
        }
    }
    for id in &d.removed {
        let Some(c) = old.clusters.iter().find(|c| &c.id == id) else {
            continue;
        };
        out.rules_removed
            .extend(c.served_rules().map(|r| rule_change(c, &r.text)));
        if c.mode != Mode::Passthrough {
            out.mode_changes.push(ModeChange {
                cluster: id.clone(),
                from: Some(c.mode.as_str()),
                to: None,
            });
        }
    }
    for change in &d.changed {
        let (Some(before), Some(after)) = (
            old.clusters.iter().find(|c| c.id == change.id),
            new.clusters.iter().find(|c| c.id == change.id),
        ) else {
            continue;
        };
        out.rules_added
            .extend(change.rules_added.iter().map(|t| rule_change(after, t)));
        out.rules_removed
            .extend(change.rules_removed.iter().map(|t| rule_change(before, t)));
        if let Some((from, to)) = change.mode {
            out.mode_changes.push(ModeChange {
                cluster: change.id.clone(),
                from: Some(from.as_str()),
                to: Some(to.as_str()),
            });
        }
    }
}

/// `GET …/learned?days=7`.
pub async fn learned(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Learned>, ErrorReply> {
    let days = in_range("days", params.days.unwrap_or(7), 1, 365)?;
    let store = store(&state)?;
    known_tenant(store, &tenant).await?;
    let since = chrono::Utc::now().timestamp_micros() - i64::from(days) * 86_400_000_000;
    let infos = store
        .list_snapshots(Some(&tenant))
        .await
        .map_err(storage_error)?;
    let mut snapshots: Vec<i64> = infos
        .iter()
        .filter(|s| s.created_at >= since)
        .map(|s| s.version)
        .collect();
    snapshots.sort_unstable();
    let baseline_version = infos
        .iter()
        .filter(|s| s.created_at < since)
        .map(|s| s.version)
        .max();
    let active = store.snapshot(&tenant, None).await.map_err(storage_error)?;
    let mut out = Learned {
        since: time(since),
        days,
        snapshots,
        baseline_version,
        active_version: active.as_ref().map(|s| s.version),
        rules_added: Vec::new(),
        rules_removed: Vec::new(),
        mode_changes: Vec::new(),
    };
    if let Some(active) = &active {
        let baseline = match baseline_version {
            Some(v) => store
                .snapshot(&tenant, Some(v))
                .await
                .map_err(storage_error)?,
            None => None,
        };
        changes(baseline.as_ref(), active, &mut out);
    }
    Ok(Json(out))
}
