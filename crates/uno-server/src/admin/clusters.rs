//! The clusters of a tenant's active snapshot: how each mode was decided
//! (gap, validation, lift), its rules with provenance, support and any
//! operator override, and its served traffic, treated against holdout.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use uno_core::snapshot::{ClusterExperience, Gap, Lift, Validation};
use uno_learn::overrides::rule_id;
use uno_store::lift::ClusterRatings;
use uuid::Uuid;

use super::extract::{Path, Query};
use super::{in_range, known_tenant, storage_error, store};
use crate::app::AppState;
use crate::proxy::reply::ErrorReply;

/// The query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Days of served traffic the treated/holdout figures cover.
    days: Option<u32>,
}

/// One rule.
#[derive(Debug, Serialize)]
pub struct RuleOut {
    id: String,
    text: String,
    support: usize,
    sources: Vec<Uuid>,
    served: bool,
    #[serde(rename = "override")]
    override_state: Option<&'static str>,
    /// Share of the cluster's feedback users who support it.
    share: f64,
    /// Users who asked for a contradicting rule.
    contrary: usize,
    /// The contradicting rules.
    contradicts: Vec<String>,
    /// Why it waits for approval, when it is held.
    held: Option<String>,
}

/// Rated served interactions of one arm.
#[derive(Debug, Serialize)]
pub struct Arm {
    rated: u64,
    down: u64,
    down_rate: Option<f64>,
}

impl Arm {
    fn new(rated: u64, down: u64) -> Arm {
        Arm {
            rated,
            down,
            down_rate: (rated > 0).then(|| down as f64 / rated as f64),
        }
    }
}

/// One cluster.
#[derive(Debug, Serialize)]
pub struct ClusterOut {
    id: String,
    size: usize,
    lang: String,
    mode: &'static str,
    decision: String,
    gap: Gap,
    high_gap: bool,
    win_rate: Option<f64>,
    validation: Option<Validation>,
    lift: Option<Lift>,
    block: String,
    rules: Vec<RuleOut>,
    treated: Arm,
    holdout: Arm,
}

/// The listing.
#[derive(Debug, Serialize)]
pub struct Clusters {
    snapshot_version: Option<i64>,
    traffic_days: u32,
    data: Vec<ClusterOut>,
}

fn cluster_out(
    c: ClusterExperience,
    overrides: &[uno_store::admin::RuleOverride],
    ratings: &[ClusterRatings],
) -> ClusterOut {
    let rated = ratings.iter().find(|r| r.cluster_id == c.id);
    let rules = c
        .rules
        .iter()
        .map(|r| {
            let id = rule_id(&c.id, &r.text);
            let override_state = overrides
                .iter()
                .find(|o| o.rule_id == id)
                .map(|o| o.state.as_str());
            RuleOut {
                id,
                text: r.text.clone(),
                support: r.support,
                sources: r.sources.clone(),
                served: r.served,
                override_state,
                share: r.share,
                contrary: r.contrary,
                contradicts: r.contradicts.clone(),
                held: r.held.clone(),
            }
        })
        .collect();
    ClusterOut {
        size: c.size,
        lang: c.lang,
        mode: c.mode.as_str(),
        decision: c.decision,
        gap: c.gap,
        high_gap: c.high_gap,
        win_rate: c.validation.as_ref().map(|v| v.win_rate),
        validation: c.validation,
        lift: c.lift,
        block: c.block,
        rules,
        treated: Arm::new(
            rated.map_or(0, |r| r.treated_rated),
            rated.map_or(0, |r| r.treated_down),
        ),
        holdout: Arm::new(
            rated.map_or(0, |r| r.holdout_rated),
            rated.map_or(0, |r| r.holdout_down),
        ),
        id: c.id,
    }
}

/// `GET …/clusters?days=30`.
pub async fn list(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Clusters>, ErrorReply> {
    let days = in_range("days", params.days.unwrap_or(30), 1, 365)?;
    let store = store(&state)?;
    known_tenant(store, &tenant).await?;
    let Some(snapshot) = store.snapshot(&tenant, None).await.map_err(storage_error)? else {
        return Ok(Json(Clusters {
            snapshot_version: None,
            traffic_days: days,
            data: Vec::new(),
        }));
    };
    let since = chrono::Utc::now().timestamp_micros() - i64::from(days) * 86_400_000_000;
    let ratings = store
        .cluster_ratings(&tenant, since)
        .await
        .map_err(storage_error)?;
    let overrides = store.rule_overrides(&tenant).await.map_err(storage_error)?;
    Ok(Json(Clusters {
        snapshot_version: Some(snapshot.version),
        traffic_days: days,
        data: snapshot
            .clusters
            .into_iter()
            .map(|c| cluster_out(c, &overrides, &ratings))
            .collect(),
    }))
}
