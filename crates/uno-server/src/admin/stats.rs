//! Traffic per hour and feedback per day, for one tenant or all: the
//! dashboard's charts.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::extract::Query;
use super::{in_range, known_tenant, storage_error, store, time};
use crate::app::AppState;
use crate::proxy::reply::ErrorReply;

/// `?tenant=&hours=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficParams {
    tenant: Option<String>,
    hours: Option<u32>,
}

/// One hour.
#[derive(Debug, Serialize)]
pub struct Hour {
    start: String,
    requests: u64,
    errors: u64,
    mean_total_ms: Option<f64>,
    mean_added_ms: Option<f64>,
    by_path: BTreeMap<String, u64>,
}

/// The traffic series.
#[derive(Debug, Serialize)]
pub struct Traffic {
    tenant: Option<String>,
    bucket_seconds: u32,
    data: Vec<Hour>,
}

/// 404 for a named tenant the store does not know.
async fn check_tenant(store: &uno_store::Store, tenant: Option<&str>) -> Result<(), ErrorReply> {
    if let Some(t) = tenant {
        known_tenant(store, t).await?;
    }
    Ok(())
}

/// `GET /admin/v1/stats/traffic?tenant=&hours=24`.
pub async fn traffic(
    State(state): State<AppState>,
    Query(params): Query<TrafficParams>,
) -> Result<Json<Traffic>, ErrorReply> {
    let hours = in_range("hours", params.hours.unwrap_or(24), 1, 720)?;
    let store = store(&state)?;
    check_tenant(store, params.tenant.as_deref()).await?;
    // The current hour counts as one of them.
    let since = chrono::Utc::now().timestamp_micros() - (i64::from(hours) - 1) * 3_600_000_000;
    let buckets = store
        .traffic_by_hour(params.tenant.as_deref(), since)
        .await
        .map_err(storage_error)?;
    Ok(Json(Traffic {
        tenant: params.tenant,
        bucket_seconds: 3600,
        data: buckets
            .into_iter()
            .map(|b| Hour {
                start: time(b.start),
                requests: b.requests,
                errors: b.errors,
                mean_total_ms: b.mean_total_ms,
                mean_added_ms: b.mean_added_ms,
                by_path: b.by_path,
            })
            .collect(),
    }))
}

/// `?tenant=&days=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackParams {
    tenant: Option<String>,
    days: Option<u32>,
}

/// One day.
#[derive(Debug, Serialize)]
pub struct Day {
    day: String,
    up: u64,
    down: u64,
    text: u64,
}

/// The feedback series.
#[derive(Debug, Serialize)]
pub struct FeedbackSeries {
    tenant: Option<String>,
    data: Vec<Day>,
}

/// `GET /admin/v1/stats/feedback?tenant=&days=30`.
pub async fn feedback(
    State(state): State<AppState>,
    Query(params): Query<FeedbackParams>,
) -> Result<Json<FeedbackSeries>, ErrorReply> {
    let days = in_range("days", params.days.unwrap_or(30), 1, 365)?;
    let store = store(&state)?;
    check_tenant(store, params.tenant.as_deref()).await?;
    let since = chrono::Utc::now().timestamp_micros() - (i64::from(days) - 1) * 86_400_000_000;
    let series = store
        .feedback_by_day(params.tenant.as_deref(), since)
        .await
        .map_err(storage_error)?;
    Ok(Json(FeedbackSeries {
        tenant: params.tenant,
        data: series
            .into_iter()
            .map(|d| Day {
                day: time(d.start).chars().take(10).collect(),
                up: d.up,
                down: d.down,
                text: d.text,
            })
            .collect(),
    }))
}
