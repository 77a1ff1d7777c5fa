//! Reads for the admin API and the dashboard, and the operators' rule
//! overrides.
//!
//! Everything here is written once for both databases (see
//! [`crate::portable`]): times come back as Unix microseconds whatever the
//! column type, counts as `u64`. Every read is bounded by the caller (a page
//! size, a window), so an admin page never scans a tenant's whole history
//! into memory. Keys, snapshots, deletion and export have their own modules;
//! this one holds only what the admin views add.

use std::collections::BTreeMap;

use sqlx::Row;
use uuid::Uuid;

use crate::Store;
use crate::error::StoreError;
use crate::learn::micros;
use crate::lift::at_or_after;
use crate::portable::{begin_write, join_contents, now_micros, on_pool, sql};

/// One tenant as the overview lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantOverview {
    /// Tenant id.
    pub tenant: String,
    /// API keys not revoked.
    pub keys_active: u64,
    /// Interactions stored.
    pub interactions: u64,
    /// Newest interaction, Unix microseconds.
    pub last_interaction_at: Option<i64>,
    /// Active snapshot version.
    pub snapshot_version: Option<i64>,
}

/// Which interactions a listing keeps, by their explicit ratings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatedFilter {
    /// At least one explicit up.
    Up,
    /// At least one explicit down.
    Down,
    /// At least one explicit rating.
    Any,
    /// No explicit rating.
    None,
}

/// A page request for [`Store::list_interactions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionQuery {
    /// Rows at most (the caller bounds it).
    pub limit: u32,
    /// Only interactions older than this one (the previous page's last id).
    pub before: Option<Uuid>,
    /// Only this end user's.
    pub user: Option<String>,
    /// Only those rated so.
    pub rated: Option<RatedFilter>,
}

/// An interaction's metadata and content, as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionView {
    /// Id.
    pub id: Uuid,
    /// Received, Unix microseconds.
    pub created_at: i64,
    /// Model asked for.
    pub model: String,
    /// End user.
    pub user: Option<String>,
    /// HTTP status sent to the client.
    pub status: i32,
    /// `completed`, `failed`, `cancelled` or `partial`.
    pub outcome: String,
    /// Streamed or not.
    pub stream: bool,
    /// Serving path.
    pub path: Option<String>,
    /// Cluster routed to.
    pub cluster: Option<String>,
    /// Snapshot version that served it.
    pub snapshot: Option<i64>,
    /// Total latency, milliseconds.
    pub total_ms: f64,
    /// Upstream latency, milliseconds.
    pub upstream_ms: Option<f64>,
    /// Prompt tokens.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens.
    pub completion_tokens: Option<i64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// The request body (JSON text), when content is still retained.
    pub request: Option<String>,
    /// The answer text.
    pub response: Option<String>,
    /// The reflective module's draft.
    pub draft: Option<String>,
    /// The reflective module's critique.
    pub critique: Option<String>,
    /// Its feedback, oldest first.
    pub feedback: Vec<FeedbackView>,
}

/// One feedback row, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackView {
    /// Id.
    pub id: Uuid,
    /// Who gave it (`None` when unknown).
    pub user: Option<String>,
    /// +1 or -1.
    pub rating: Option<i32>,
    /// Free text (for implicit feedback: the follow-up turn).
    pub comment: Option<String>,
    /// The answer the user wanted.
    pub expected_output: Option<String>,
    /// `explicit` or `implicit`.
    pub source: String,
    /// For implicit feedback: the request that carried it.
    pub source_interaction_id: Option<Uuid>,
    /// Received, Unix microseconds.
    pub created_at: i64,
}

/// A tenant's publish job, as the worker status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerTenant {
    /// Tenant.
    pub tenant: String,
    /// A deletion asked for a rebuild.
    pub dirty: bool,
    /// Last rebuild, Unix microseconds.
    pub last_run_at: Option<i64>,
    /// Ready logs the last rebuild saw.
    pub last_logs: Option<u64>,
    /// Ready logs now.
    pub ready: u64,
    /// Lease of a worker rebuilding it now, Unix microseconds.
    pub leased_until: Option<i64>,
    /// Which worker holds the lease.
    pub lease_owner: Option<String>,
}

/// One hour of traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficBucket {
    /// Start, Unix microseconds (a whole hour).
    pub start: i64,
    /// Requests.
    pub requests: u64,
    /// Of those, answered with a status of 400 or more, or failed.
    pub errors: u64,
    /// Mean total latency, milliseconds.
    pub mean_total_ms: Option<f64>,
    /// Mean latency uno added (total minus upstream), milliseconds.
    pub mean_added_ms: Option<f64>,
    /// Requests by serving path (`passthrough`, `primary`, `reflective`,
    /// `holdout`; shadow paths count as passthrough, since the client got
    /// the untouched answer).
    pub by_path: BTreeMap<String, u64>,
}

/// One day of feedback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackDay {
    /// Start of the day (UTC), Unix microseconds.
    pub start: i64,
    /// Explicit ups.
    pub up: u64,
    /// Explicit downs.
    pub down: u64,
    /// Rows carrying text (comments, corrections, follow-up turns).
    pub text: u64,
}

/// An operator's decision about one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleState {
    /// Served even below the minimum support.
    Approved,
    /// Never served.
    Disabled,
}

impl RuleState {
    /// `approved` or `disabled`, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleState::Approved => "approved",
            RuleState::Disabled => "disabled",
        }
    }

    fn parse(text: &str) -> Option<RuleState> {
        match text {
            "approved" => Some(RuleState::Approved),
            "disabled" => Some(RuleState::Disabled),
            _ => None,
        }
    }
}

/// A stored override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOverride {
    /// The rule's id (see `uno_learn::overrides::rule_id`).
    pub rule_id: String,
    /// The cluster the rule was in when the override was set.
    pub cluster_id: String,
    /// The rule's text then, for people reading the table.
    pub rule_text: String,
    /// The decision.
    pub state: RuleState,
    /// Who set it.
    pub actor: String,
    /// When, Unix microseconds.
    pub updated_at: i64,
}

const HOUR_MICROS: i64 = 3_600_000_000;
const DAY_MICROS: i64 = 86_400_000_000;

/// Every tenant id the store knows of: those with keys, interactions,
/// snapshots or learning logs.
const TENANT_IDS: &str = "SELECT tenant_id FROM api_keys UNION SELECT tenant_id FROM interactions \
     UNION SELECT tenant_id FROM snapshots UNION SELECT tenant_id FROM learn_logs";

/// `SELECT` of the interaction columns [`interaction_from_row!`] reads,
/// content included, from interactions `i` with their contents `c` (see
/// [`join_contents`]); the caller adds its `WHERE`.
fn select_interactions(sqlite: bool) -> String {
    format!(
        "SELECT i.id, {created}, i.model, i.end_user, CAST(i.status AS INTEGER), \
         i.outcome, CASE WHEN i.streamed THEN 1 ELSE 0 END, i.path, i.cluster_id, i.snapshot_version, \
         i.total_ms, i.upstream_ms, i.prompt_tokens, i.completion_tokens, i.error, c.request, \
         c.response_text, c.draft, c.critique \
         FROM interactions i {contents}",
        created = micros(sqlite, "i.created_at"),
        contents = join_contents(sqlite, false),
    )
}

/// `AND` a condition keeping the interactions `i` that `filter` asks for,
/// by their explicit ratings.
fn rated_condition(filter: RatedFilter) -> String {
    let (exists, rating) = match filter {
        RatedFilter::Up => ("EXISTS", "f.rating = 1"),
        RatedFilter::Down => ("EXISTS", "f.rating = -1"),
        RatedFilter::Any => ("EXISTS", "f.rating IS NOT NULL"),
        RatedFilter::None => ("NOT EXISTS", "f.rating IS NOT NULL"),
    };
    format!(
        "AND {exists} (SELECT 1 FROM feedback f WHERE f.tenant_id = i.tenant_id \
         AND f.interaction_id = i.id AND f.kind = 'explicit' AND {rating})"
    )
}

macro_rules! interaction_from_row {
    ($r:expr) => {{
        let r = $r;
        InteractionView {
            id: r.try_get(0)?,
            created_at: r.try_get(1)?,
            model: r.try_get(2)?,
            user: r.try_get(3)?,
            status: r.try_get(4)?,
            outcome: r.try_get(5)?,
            stream: r.try_get::<i32, _>(6)? != 0,
            path: r.try_get(7)?,
            cluster: r.try_get(8)?,
            snapshot: r.try_get(9)?,
            total_ms: r.try_get(10)?,
            upstream_ms: r.try_get(11)?,
            prompt_tokens: r.try_get(12)?,
            completion_tokens: r.try_get(13)?,
            error: r.try_get(14)?,
            request: r.try_get(15)?,
            response: r.try_get(16)?,
            draft: r.try_get(17)?,
            critique: r.try_get(18)?,
            feedback: Vec::new(),
        }
    }};
}

fn count(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// `SELECT b, AGGREGATES FROM table` per bucket `b` of `step` microseconds
/// (the bucket's start over `step`) of `created_at`, for tenant `$1` (or all
/// when NULL) from `$2` (Unix microseconds) on, by bucket.
fn per_bucket(sqlite: bool, table: &str, step: i64, aggregates: &str) -> String {
    let bucket = if sqlite {
        format!("(created_at / {step})")
    } else {
        format!(
            "CAST(floor(EXTRACT(EPOCH FROM created_at) / {}) AS BIGINT)",
            step / 1_000_000
        )
    };
    format!(
        "SELECT {bucket} AS b, {aggregates} \
         FROM {table} WHERE ($1 IS NULL OR tenant_id = $1) AND {since} \
         GROUP BY b ORDER BY b",
        since = at_or_after(sqlite, "created_at", "$2"),
    )
}

/// One entry per bucket of `step` from `since` to now: the one `found` has
/// for its start, else `empty(start)`, so a chart's x axis is continuous.
fn every_bucket<T>(
    since: i64,
    step: i64,
    mut found: BTreeMap<i64, T>,
    empty: impl Fn(i64) -> T,
) -> Vec<T> {
    let now = now_micros();
    let mut out = Vec::new();
    let mut start = since;
    while start <= now {
        out.push(found.remove(&start).unwrap_or_else(|| empty(start)));
        start += step;
    }
    out
}

impl Store {
    /// Every tenant the store knows of, with keys, traffic and the active
    /// snapshot, by id.
    pub async fn tenants_overview(&self) -> Result<Vec<TenantOverview>, StoreError> {
        type Row = (String, i64, i64, Option<i64>, Option<i64>);
        let rows: Vec<Row> = on_pool!(self, |pool, sqlite| {
            let text = format!(
                "SELECT t.tenant_id, \
                 (SELECT COUNT(*) FROM api_keys k WHERE k.tenant_id = t.tenant_id AND k.revoked_at IS NULL), \
                 COALESCE(n.total, 0), n.last, a.version \
                 FROM ({TENANT_IDS}) t \
                 LEFT JOIN (SELECT tenant_id, COUNT(*) AS total, {last} AS last FROM interactions \
                            GROUP BY tenant_id) n ON n.tenant_id = t.tenant_id \
                 LEFT JOIN active_snapshots a ON a.tenant_id = t.tenant_id \
                 ORDER BY t.tenant_id",
                last = micros(sqlite, "MAX(created_at)"),
            );
            sqlx::query_as(&sql(sqlite, &text)).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(tenant, keys, total, last, version)| TenantOverview {
                tenant,
                keys_active: count(Some(keys)),
                interactions: count(Some(total)),
                last_interaction_at: last,
                snapshot_version: version,
            })
            .collect())
    }

    /// Whether the store knows the tenant (keys, interactions, snapshots or
    /// learning logs), so the admin API can tell an unknown tenant (404)
    /// from one with nothing in a listing.
    pub async fn tenant_exists(&self, tenant: &str) -> Result<bool, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool, sqlite| {
            let text = format!("SELECT t.tenant_id FROM ({TENANT_IDS}) t WHERE t.tenant_id = $1");
            sqlx::query_as(&sql(sqlite, &text))
                .bind(tenant)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.is_some())
    }

    /// A page of the tenant's interactions, newest first, each with its
    /// feedback. `None` when `query.before` names no interaction of the
    /// tenant (a stale or foreign cursor).
    pub async fn list_interactions(
        &self,
        tenant: &str,
        query: &InteractionQuery,
    ) -> Result<Option<Vec<InteractionView>>, StoreError> {
        let mut page: Vec<InteractionView> = on_pool!(self, |pool, sqlite| {
            let cursor: Option<(i64, Uuid)> = match query.before {
                Some(id) => {
                    let text = format!(
                        "SELECT {}, id FROM interactions WHERE tenant_id = $1 AND id = $2",
                        micros(sqlite, "created_at")
                    );
                    let found = sqlx::query_as(&sql(sqlite, &text))
                        .bind(tenant)
                        .bind(id)
                        .fetch_optional(pool)
                        .await?;
                    if found.is_none() {
                        return Ok(None);
                    }
                    found
                }
                None => None,
            };
            let rated = query.rated.map(rated_condition).unwrap_or_default();
            // The cursor compares (time, id) so interactions logged in the
            // same microsecond are neither skipped nor repeated.
            let before = if sqlite {
                "(i.created_at < $2 OR (i.created_at = $2 AND i.id < $3))"
            } else {
                "(i.created_at < to_timestamp($2 / 1000000.0) OR (i.created_at = to_timestamp($2 / 1000000.0) AND i.id < $3))"
            };
            let text = format!(
                "{select} \
                 WHERE i.tenant_id = $1 AND ($4 = 0 OR {before}) AND ($5 IS NULL OR i.end_user = $5) {rated} \
                 ORDER BY i.created_at DESC, i.id DESC LIMIT $6",
                select = select_interactions(sqlite),
            );
            let (at, id) = cursor.unwrap_or((0, Uuid::nil()));
            let rows = sqlx::query(&sql(sqlite, &text))
                .bind(tenant)
                .bind(at)
                .bind(id)
                .bind(i32::from(cursor.is_some()))
                .bind(query.user.as_deref())
                .bind(i64::from(query.limit))
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(interaction_from_row!(r));
            }
            out
        });
        let ids: Vec<Uuid> = page.iter().map(|i| i.id).collect();
        let mut feedback = self.feedback_views(tenant, &ids).await?;
        for item in &mut page {
            item.feedback = feedback.remove(&item.id).unwrap_or_default();
        }
        Ok(Some(page))
    }

    /// One interaction of the tenant with its content and feedback; `None`
    /// when the tenant has no interaction with this id (another tenant's
    /// included, so ids do not leak across tenants).
    pub async fn interaction_view(
        &self,
        tenant: &str,
        id: Uuid,
    ) -> Result<Option<InteractionView>, StoreError> {
        let found: Option<InteractionView> = on_pool!(self, |pool, sqlite| {
            let text = format!(
                "{} WHERE i.tenant_id = $1 AND i.id = $2 LIMIT 1",
                select_interactions(sqlite)
            );
            let row = sqlx::query(&sql(sqlite, &text))
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Some(interaction_from_row!(&r)),
                None => None,
            }
        });
        let Some(mut view) = found else {
            return Ok(None);
        };
        view.feedback = self
            .feedback_views(tenant, &[id])
            .await?
            .remove(&id)
            .unwrap_or_default();
        Ok(Some(view))
    }

    /// The feedback of these interactions of the tenant, oldest first per
    /// interaction.
    async fn feedback_views(
        &self,
        tenant: &str,
        ids: &[Uuid],
    ) -> Result<BTreeMap<Uuid, Vec<FeedbackView>>, StoreError> {
        let mut out: BTreeMap<Uuid, Vec<FeedbackView>> = BTreeMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let rows: Vec<(Uuid, FeedbackView)> = on_pool!(self, |pool, sqlite| {
            let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
            let text = format!(
                "SELECT interaction_id, id, end_user, CAST(rating AS INTEGER), comment, expected_output, \
                 kind, source_interaction_id, {created} FROM feedback \
                 WHERE tenant_id = $1 AND interaction_id IN ({list}) ORDER BY created_at, id",
                created = micros(sqlite, "created_at"),
                list = placeholders.join(", "),
            );
            let text = sql(sqlite, &text);
            let mut q = sqlx::query(&text).bind(tenant);
            for id in ids {
                q = q.bind(*id);
            }
            let rows = q.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let user: String = r.try_get(2)?;
                out.push((
                    r.try_get(0)?,
                    FeedbackView {
                        id: r.try_get(1)?,
                        user: (!user.is_empty()).then_some(user),
                        rating: r.try_get(3)?,
                        comment: r.try_get(4)?,
                        expected_output: r.try_get(5)?,
                        source: r.try_get(6)?,
                        source_interaction_id: r.try_get(7)?,
                        created_at: r.try_get(8)?,
                    },
                ));
            }
            out
        });
        for (interaction, view) in rows {
            out.entry(interaction).or_default().push(view);
        }
        Ok(out)
    }

    /// Every tenant the worker knows of, with its publish job's state.
    pub async fn worker_tenants(&self) -> Result<Vec<WorkerTenant>, StoreError> {
        let states = self.learn_tenants().await?;
        type Lease = (String, Option<i64>, Option<String>);
        let leases: Vec<Lease> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT tenant_id, lease_until, lease_owner FROM learn_jobs \
                 WHERE job = 'publish' AND lease_until IS NOT NULL AND lease_until >= $1",
            ))
            .bind(now_micros())
            .fetch_all(pool)
            .await?
        });
        Ok(states
            .into_iter()
            .map(|s| {
                let lease = leases.iter().find(|(t, _, _)| *t == s.tenant);
                WorkerTenant {
                    dirty: s.dirty,
                    last_run_at: s.last_run_at,
                    last_logs: s.last_logs,
                    ready: s.ready,
                    leased_until: lease.and_then(|l| l.1),
                    lease_owner: lease.and_then(|l| l.2.clone()),
                    tenant: s.tenant,
                }
            })
            .collect())
    }

    /// Traffic per hour from `since` (Unix microseconds, rounded down to the
    /// hour) to now, for one tenant or all; hours without traffic are
    /// included with zeros, so a chart's x axis is continuous.
    pub async fn traffic_by_hour(
        &self,
        tenant: Option<&str>,
        since: i64,
    ) -> Result<Vec<TrafficBucket>, StoreError> {
        let since = since.div_euclid(HOUR_MICROS) * HOUR_MICROS;
        type Row = (
            i64,
            i64,
            Option<i64>,
            Option<f64>,
            Option<f64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let rows: Vec<Row> = on_pool!(self, |pool, sqlite| {
            let text = per_bucket(
                sqlite,
                "interactions",
                HOUR_MICROS,
                "COUNT(*), \
                 SUM(CASE WHEN status >= 400 OR outcome = 'failed' THEN 1 ELSE 0 END), \
                 AVG(total_ms), AVG(CASE WHEN upstream_ms IS NOT NULL THEN total_ms - upstream_ms END), \
                 SUM(CASE WHEN path = 'primary' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN path = 'reflective' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN path = 'holdout' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN path IS NULL OR path NOT IN ('primary', 'reflective', 'holdout') THEN 1 ELSE 0 END)",
            );
            sqlx::query_as(&sql(sqlite, &text))
                .bind(tenant)
                .bind(since)
                .fetch_all(pool)
                .await?
        });
        let mut found: BTreeMap<i64, TrafficBucket> = BTreeMap::new();
        for (b, requests, errors, total, added, primary, reflective, holdout, passthrough) in rows {
            let by_path = [
                ("passthrough", passthrough),
                ("primary", primary),
                ("reflective", reflective),
                ("holdout", holdout),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), count(v)))
            .collect();
            found.insert(
                b * HOUR_MICROS,
                TrafficBucket {
                    start: b * HOUR_MICROS,
                    requests: count(Some(requests)),
                    errors: count(errors),
                    mean_total_ms: total,
                    mean_added_ms: added,
                    by_path,
                },
            );
        }
        Ok(every_bucket(since, HOUR_MICROS, found, |start| {
            TrafficBucket {
                start,
                requests: 0,
                errors: 0,
                mean_total_ms: None,
                mean_added_ms: None,
                by_path: ["passthrough", "primary", "reflective", "holdout"]
                    .into_iter()
                    .map(|k| (k.to_owned(), 0))
                    .collect(),
            }
        }))
    }

    /// Feedback per UTC day from `since` (rounded down to the day) to today,
    /// for one tenant or all; days without feedback are included.
    pub async fn feedback_by_day(
        &self,
        tenant: Option<&str>,
        since: i64,
    ) -> Result<Vec<FeedbackDay>, StoreError> {
        let since = since.div_euclid(DAY_MICROS) * DAY_MICROS;
        type Row = (i64, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = on_pool!(self, |pool, sqlite| {
            let text = per_bucket(
                sqlite,
                "feedback",
                DAY_MICROS,
                "SUM(CASE WHEN kind = 'explicit' AND rating = 1 THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN kind = 'explicit' AND rating = -1 THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN comment IS NOT NULL OR expected_output IS NOT NULL THEN 1 ELSE 0 END)",
            );
            sqlx::query_as(&sql(sqlite, &text))
                .bind(tenant)
                .bind(since)
                .fetch_all(pool)
                .await?
        });
        let found: BTreeMap<i64, FeedbackDay> = rows
            .into_iter()
            .map(|(b, up, down, text)| {
                let start = b * DAY_MICROS;
                (
                    start,
                    FeedbackDay {
                        start,
                        up: count(up),
                        down: count(down),
                        text: count(text),
                    },
                )
            })
            .collect();
        Ok(every_bucket(since, DAY_MICROS, found, |start| {
            FeedbackDay {
                start,
                up: 0,
                down: 0,
                text: 0,
            }
        }))
    }

    /// The tenant's rule overrides, by rule id.
    pub async fn rule_overrides(&self, tenant: &str) -> Result<Vec<RuleOverride>, StoreError> {
        type Row = (String, String, String, String, String, i64);
        let rows: Vec<Row> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT rule_id, cluster_id, rule_text, state, actor, updated_at FROM rule_overrides \
                 WHERE tenant_id = $1 ORDER BY rule_id",
            ))
            .bind(tenant)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(
                |(rule_id, cluster_id, rule_text, state, actor, updated_at)| {
                    Some(RuleOverride {
                        state: RuleState::parse(&state)?,
                        rule_id,
                        cluster_id,
                        rule_text,
                        actor,
                        updated_at,
                    })
                },
            )
            .collect())
    }

    /// Records an operator's decision about a rule (`None` removes it, so
    /// the rule is served by its support again), and audits it. The next
    /// snapshot, from the admin API or the worker, applies it.
    pub async fn set_rule_override(
        &self,
        tenant: &str,
        rule_id: &str,
        cluster_id: &str,
        rule_text: &str,
        state: Option<RuleState>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let now = now_micros();
        on_pool!(self, |pool, sqlite| {
            let mut tx = begin_write!(pool, sqlite);
            match state {
                Some(state) => {
                    sqlx::query(&sql(
                        sqlite,
                        "INSERT INTO rule_overrides (tenant_id, rule_id, cluster_id, rule_text, state, actor, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, rule_id) DO UPDATE SET \
                         cluster_id = excluded.cluster_id, rule_text = excluded.rule_text, state = excluded.state, \
                         actor = excluded.actor, updated_at = excluded.updated_at",
                    ))
                    .bind(tenant)
                    .bind(rule_id)
                    .bind(cluster_id)
                    .bind(rule_text)
                    .bind(state.as_str())
                    .bind(actor)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(&sql(
                        sqlite,
                        "DELETE FROM rule_overrides WHERE tenant_id = $1 AND rule_id = $2",
                    ))
                    .bind(tenant)
                    .bind(rule_id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
        });
        self.audit(
            actor,
            "rule_override",
            Some(tenant),
            Some(rule_id),
            serde_json::json!({
                "state": state.map_or("reset", RuleState::as_str),
                "cluster": cluster_id,
                "rule": rule_text,
            }),
        )
        .await
    }
}
