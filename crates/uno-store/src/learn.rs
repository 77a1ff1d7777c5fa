//! The learning worker's tables: learning logs with their per-stage
//! artefacts, row leases, per-tenant jobs and the result cache.
//!
//! Every stage's output is written together with the next stage in one
//! statement guarded by the lease and the feedback hash, so a worker killed
//! mid-stage leaves the row as it was (the lease expires and another worker
//! redoes that stage), and a result computed for feedback that has since
//! changed is discarded instead of stored.

use sqlx::Row;
use uuid::Uuid;

use crate::Store;
use crate::error::StoreError;
use crate::portable::{
    begin_write, bytes_to_vec, join_contents, now_micros, on_pool, sql, vec_to_bytes,
};

/// One feedback row of a learning source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFeedback {
    /// `explicit` or `implicit`.
    pub kind: String,
    /// Who gave it ("" when unknown).
    pub end_user: String,
    /// +1 or -1.
    pub rating: Option<i16>,
    /// Free text (for implicit feedback: the follow-up turn).
    pub comment: Option<String>,
    /// The answer the user wanted.
    pub expected_output: Option<String>,
    /// First received, Unix microseconds.
    pub created_at: i64,
    /// Last changed, Unix microseconds.
    pub updated_at: i64,
}

/// An interaction with text feedback that its learning log does not reflect
/// yet: new, or with feedback newer than the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnSource {
    /// Tenant.
    pub tenant: String,
    /// Interaction id.
    pub interaction_id: Uuid,
    /// Interaction time, Unix microseconds.
    pub created_at: i64,
    /// The model the client asked for.
    pub model: String,
    /// The interaction's end user.
    pub end_user: Option<String>,
    /// The request body (JSON text).
    pub request: String,
    /// The answer.
    pub response_text: String,
    /// All its feedback, oldest first.
    pub feedback: Vec<SourceFeedback>,
}

/// A learning log's inputs, as ingestion builds them.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLearnLog {
    /// Tenant.
    pub tenant: String,
    /// Interaction id.
    pub interaction_id: Uuid,
    /// Interaction time, Unix microseconds.
    pub created_at: i64,
    /// Model that answered.
    pub model: String,
    /// The interaction's end user.
    pub end_user: Option<String>,
    /// Everyone whose words are in the log (for support and deletion).
    pub users: Vec<String>,
    /// `en` or `zh`.
    pub lang: String,
    /// The prompt, a JSON array of the request's messages (role and text):
    /// where the query the worker clusters on is read from.
    pub messages: String,
    /// The prompt's contents joined by blank lines (R_0, the judge, the
    /// language); clustering reads the user's own words from `messages`.
    pub query: String,
    /// The user message alone, for rule extraction.
    pub user_query: String,
    /// The answer.
    pub answer: String,
    /// `Feedback 1: …` lines.
    pub feedback: String,
    /// Hash of everything the stages read, so a change restarts them.
    pub feedback_hash: String,
    /// Newest feedback included, Unix microseconds.
    pub feedback_at: i64,
    /// Net explicit rating (a signal, not used for rules).
    pub rating: Option<i32>,
}

/// Where a learning log is: each stage's stored output moves it to the
/// next ([`StageOutput::next`]); too many failed tries of one stage park
/// it as `Failed`. The one place the stages and their stored names live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStage {
    /// Waiting for rule extraction from its feedback.
    Distil,
    /// Waiting for its query and rules embeddings.
    Embed,
    /// Waiting for novelty scoring.
    Novelty,
    /// Done: clustered at the tenant's next rebuild.
    Ready,
    /// Out of tries; kept with its error for `uno worker` to report.
    Failed,
}

impl LogStage {
    /// The stages a worker runs (leases).
    pub const RUNNABLE: [LogStage; 3] = [LogStage::Distil, LogStage::Embed, LogStage::Novelty];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStage::Distil => "distil",
            LogStage::Embed => "embed",
            LogStage::Novelty => "novelty",
            LogStage::Ready => "ready",
            LogStage::Failed => "failed",
        }
    }

    /// The stage a stored name names.
    ///
    /// # Errors
    ///
    /// A name no version of uno writes (a damaged row).
    pub fn parse(name: &str) -> Result<LogStage, StoreError> {
        [
            LogStage::Distil,
            LogStage::Embed,
            LogStage::Novelty,
            LogStage::Ready,
            LogStage::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| StoreError::Rejected(format!("learning log with an unknown stage {name:?}")))
    }
}

/// `'a', 'b'` for an SQL `IN` list of stage names (the enum's own, never
/// user text).
fn quoted(stages: &[LogStage]) -> String {
    stages
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Display for LogStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for LogStage {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A learning log with whatever stages have produced.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnLog {
    /// Inputs.
    pub input: NewLearnLog,
    /// Its stage.
    pub stage: LogStage,
    /// Whether the user was satisfied (distil).
    pub satisfied: Option<bool>,
    /// R_f (distil).
    pub rules_f: Vec<String>,
    /// R_0 (distil).
    pub rules_0: Vec<String>,
    /// Model that distilled.
    pub distilled_by: Option<String>,
    /// Embedder of the vectors.
    pub embedder_id: Option<String>,
    /// Query-only unit embedding.
    pub query_vec: Vec<f32>,
    /// Rules unit embedding.
    pub rules_vec: Vec<f32>,
    /// Novelty of each rule of R_f.
    pub novelty: Vec<f64>,
    /// Minimum novelty.
    pub novelty_min: Option<f64>,
    /// Mean novelty.
    pub novelty_mean: Option<f64>,
    /// Maximum novelty.
    pub novelty_max: Option<f64>,
    /// Scorer that produced the novelty.
    pub novelty_by: Option<String>,
    /// Failed tries of the current stage.
    pub attempts: i32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// What a finished stage produced.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutput {
    /// R_f, R_0 and satisfaction.
    Distilled {
        /// Whether the user was satisfied.
        satisfied: bool,
        /// R_f.
        rules_f: Vec<String>,
        /// R_0.
        rules_0: Vec<String>,
        /// The model used.
        by: String,
    },
    /// Query and rules embeddings.
    Embedded {
        /// The embedder.
        embedder_id: String,
        /// Query-only unit vector.
        query_vec: Vec<f32>,
        /// Rules unit vector.
        rules_vec: Vec<f32>,
    },
    /// Novelty per rule.
    Scored {
        /// One per rule in R_f; empty when R_f or R_0 is empty.
        novelty: Vec<f64>,
        /// The scorer used.
        by: String,
    },
}

impl StageOutput {
    /// The stage a log moves to once this output is stored.
    pub fn next(&self) -> LogStage {
        match self {
            StageOutput::Distilled { .. } => LogStage::Embed,
            StageOutput::Embedded { .. } => LogStage::Novelty,
            StageOutput::Scored { .. } => LogStage::Ready,
        }
    }
}

/// Counts of learning logs by stage, for progress and status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageCounts {
    /// Waiting for rule extraction.
    pub distil: u64,
    /// Waiting for embeddings.
    pub embed: u64,
    /// Waiting for novelty.
    pub novelty: u64,
    /// Done.
    pub ready: u64,
    /// Gave up after repeated failures.
    pub failed: u64,
}

impl StageCounts {
    /// Logs with per-log work left.
    pub fn pending(&self) -> u64 {
        self.distil + self.embed + self.novelty
    }
}

/// A tenant's learning state, for deciding whether to re-cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantLearnState {
    /// Tenant.
    pub tenant: String,
    /// Ready logs now.
    pub ready: u64,
    /// Newest change to a ready log, Unix microseconds.
    pub ready_updated: i64,
    /// Ready logs at the last run.
    pub last_logs: Option<u64>,
    /// Newest change at the last run.
    pub last_updated: Option<i64>,
    /// When the last run finished.
    pub last_run_at: Option<i64>,
    /// Set by deletions: rebuild regardless of counts.
    pub dirty: bool,
}

const LOG_COLUMNS: &str = "interaction_id, tenant_id, created_at, model, end_user, users, lang, messages, \
     query, user_query, answer, feedback, feedback_hash, feedback_at, rating, stage, satisfied, rules_f, \
     rules_0, distilled_by, embedder_id, query_vec, rules_vec, novelty, novelty_min, novelty_mean, \
     novelty_max, novelty_by, attempts, last_error";

/// The SQL expression for a time column in Unix microseconds: Postgres keeps
/// the core tables' times as TIMESTAMPTZ, SQLite as microseconds already.
pub(crate) fn micros(sqlite: bool, column: &str) -> String {
    if sqlite {
        column.to_owned()
    } else {
        format!("CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)")
    }
}

fn json_list(text: Option<String>) -> Vec<String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}

macro_rules! learn_log_from_row {
    ($r:expr) => {{
        let r = $r;
        LearnLog {
            input: NewLearnLog {
                interaction_id: r.try_get(0)?,
                tenant: r.try_get(1)?,
                created_at: r.try_get(2)?,
                model: r.try_get(3)?,
                end_user: r.try_get(4)?,
                users: json_list(r.try_get(5)?),
                lang: r.try_get(6)?,
                messages: r.try_get(7)?,
                query: r.try_get(8)?,
                user_query: r.try_get(9)?,
                answer: r.try_get(10)?,
                feedback: r.try_get(11)?,
                feedback_hash: r.try_get(12)?,
                feedback_at: r.try_get(13)?,
                rating: r.try_get(14)?,
            },
            stage: LogStage::parse(r.try_get::<&str, _>(15)?)?,
            satisfied: r.try_get(16)?,
            rules_f: json_list(r.try_get(17)?),
            rules_0: json_list(r.try_get(18)?),
            distilled_by: r.try_get(19)?,
            embedder_id: r.try_get(20)?,
            query_vec: r
                .try_get::<Option<Vec<u8>>, _>(21)?
                .map(|b| bytes_to_vec(&b))
                .unwrap_or_default(),
            rules_vec: r
                .try_get::<Option<Vec<u8>>, _>(22)?
                .map(|b| bytes_to_vec(&b))
                .unwrap_or_default(),
            novelty: r
                .try_get::<Option<String>, _>(23)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
            novelty_min: r.try_get(24)?,
            novelty_mean: r.try_get(25)?,
            novelty_max: r.try_get(26)?,
            novelty_by: r.try_get(27)?,
            attempts: r.try_get(28)?,
            last_error: r.try_get(29)?,
        }
    }};
}

impl Store {
    /// Up to `limit` interactions whose text feedback (a comment, an
    /// expected output or a follow-up turn) their learning log does not yet
    /// reflect, oldest feedback first. Interactions not written yet, without
    /// an answer, or that did not complete are left for later.
    pub async fn learn_sources(&self, limit: usize) -> Result<Vec<LearnSource>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_pool!(self, |pool, sqlite| {
            let text = format!(
                "SELECT i.tenant_id, i.id, {created}, i.model, i.end_user, c.request, c.response_text, t.at \
                 FROM (SELECT f.tenant_id, f.interaction_id, MAX({updated}) AS at FROM feedback f \
                       WHERE (f.comment IS NOT NULL AND f.comment <> '') \
                          OR (f.expected_output IS NOT NULL AND f.expected_output <> '') \
                       GROUP BY f.tenant_id, f.interaction_id) t \
                 JOIN interactions i ON i.id = t.interaction_id AND i.tenant_id = t.tenant_id \
                 {contents} \
                 LEFT JOIN learn_logs l ON l.interaction_id = i.id \
                 WHERE i.outcome = 'completed' AND c.response_text IS NOT NULL \
                   AND (l.feedback_at IS NULL OR t.at > l.feedback_at) \
                 ORDER BY t.at LIMIT $1",
                created = micros(sqlite, "i.created_at"),
                updated = micros(sqlite, "f.updated_at"),
                contents = join_contents(sqlite, true),
            );
            let rows = sqlx::query(&sql(sqlite, &text))
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let feedback_text = format!(
                "SELECT kind, end_user, rating, comment, expected_output, {}, {} FROM feedback \
                 WHERE tenant_id = $1 AND interaction_id = $2 ORDER BY created_at, id",
                micros(sqlite, "created_at"),
                micros(sqlite, "updated_at"),
            );
            let feedback_sql = sql(sqlite, &feedback_text);
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let tenant: String = r.try_get(0)?;
                let interaction_id: Uuid = r.try_get(1)?;
                let feedback = sqlx::query(&feedback_sql)
                    .bind(&tenant)
                    .bind(interaction_id)
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(|f| {
                        Ok(SourceFeedback {
                            kind: f.try_get(0)?,
                            end_user: f.try_get(1)?,
                            rating: f.try_get(2)?,
                            comment: f.try_get(3)?,
                            expected_output: f.try_get(4)?,
                            created_at: f.try_get(5)?,
                            updated_at: f.try_get(6)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                out.push(LearnSource {
                    tenant,
                    interaction_id,
                    created_at: r.try_get(2)?,
                    model: r.try_get(3)?,
                    end_user: r.try_get(4)?,
                    request: r.try_get(5)?,
                    response_text: r.try_get(6)?,
                    feedback,
                });
            }
            Ok(out)
        })
    }

    /// Stores a learning log's inputs. A new log, or one whose
    /// `feedback_hash` changed, (re)starts at `distil` with its artefacts
    /// cleared; otherwise only the feedback time and rating move. Returns
    /// whether the stages (re)start (false when another worker stored the
    /// same log at the same moment).
    pub async fn upsert_learn_log(&self, log: &NewLearnLog) -> Result<bool, StoreError> {
        let now = now_micros();
        on_pool!(self, |pool, sqlite| {
            let mut tx = begin_write!(pool, sqlite);
            let existing: Option<(String,)> = sqlx::query_as(&sql(
                sqlite,
                "SELECT feedback_hash FROM learn_logs WHERE interaction_id = $1",
            ))
            .bind(log.interaction_id)
            .fetch_optional(&mut *tx)
            .await?;
            let restart = existing
                .as_ref()
                .is_none_or(|(hash,)| *hash != log.feedback_hash);
            if restart {
                sqlx::query(&sql(
                    sqlite,
                    "DELETE FROM learn_logs WHERE interaction_id = $1",
                ))
                .bind(log.interaction_id)
                .execute(&mut *tx)
                .await?;
                let inserted = sqlx::query(&sql(
                    sqlite,
                    &format!(
                        "INSERT INTO learn_logs (interaction_id, tenant_id, created_at, model, end_user, users, \
                         lang, messages, query, user_query, answer, feedback, feedback_hash, feedback_at, rating, \
                         stage, attempts, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, '{}', 0, $16) \
                         ON CONFLICT (interaction_id) DO NOTHING",
                        LogStage::Distil
                    ),
                ))
                .bind(log.interaction_id)
                .bind(&log.tenant)
                .bind(log.created_at)
                .bind(&log.model)
                .bind(&log.end_user)
                .bind(to_json(&log.users))
                .bind(&log.lang)
                .bind(&log.messages)
                .bind(&log.query)
                .bind(&log.user_query)
                .bind(&log.answer)
                .bind(&log.feedback)
                .bind(&log.feedback_hash)
                .bind(log.feedback_at)
                .bind(log.rating)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    // Another worker stored it first (several ingest the
                    // same feedback at once): theirs runs the stages.
                    tx.commit().await?;
                    return Ok(false);
                }
            } else {
                sqlx::query(&sql(
                    sqlite,
                    "UPDATE learn_logs SET feedback_at = $2, rating = $3 WHERE interaction_id = $1",
                ))
                .bind(log.interaction_id)
                .bind(log.feedback_at)
                .bind(log.rating)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(restart)
        })
    }

    /// Leases up to `limit` logs with per-log work left (none leased by a
    /// live worker) to `owner` for `lease_secs`. On Postgres the rows are
    /// picked with `FOR UPDATE SKIP LOCKED`, so concurrent workers get
    /// disjoint sets; SQLite serialises writers, which does the same.
    pub async fn lease_learn_logs(
        &self,
        owner: &str,
        limit: usize,
        lease_secs: u64,
    ) -> Result<Vec<LearnLog>, StoreError> {
        let now = now_micros();
        let until = now.saturating_add(
            i64::try_from(lease_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX),
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_pool!(self, |pool, sqlite| {
            let text = format!(
                "UPDATE learn_logs SET lease_owner = $1, lease_until = $2 WHERE interaction_id IN \
                 (SELECT interaction_id FROM learn_logs WHERE stage IN ({}) \
                  AND (lease_until IS NULL OR lease_until < $3) ORDER BY updated_at, interaction_id \
                  LIMIT $4{}) RETURNING {LOG_COLUMNS}",
                quoted(&LogStage::RUNNABLE),
                if sqlite {
                    ""
                } else {
                    " FOR UPDATE SKIP LOCKED"
                }
            );
            let rows = sqlx::query(&sql(sqlite, &text))
                .bind(owner)
                .bind(until)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(learn_log_from_row!(r));
            }
            Ok(out)
        })
    }

    /// Stores a stage's output and moves the log to its next stage, if
    /// `owner` still holds the lease and the feedback has not changed.
    /// Returns whether it was stored.
    pub async fn finish_learn_stage(
        &self,
        interaction_id: Uuid,
        owner: &str,
        feedback_hash: &str,
        output: &StageOutput,
    ) -> Result<bool, StoreError> {
        let now = now_micros();
        let guard = "WHERE interaction_id = $1 AND lease_owner = $2 AND feedback_hash = $3";
        let next = output.next();
        on_pool!(self, |pool, sqlite| {
            let done = match output {
                StageOutput::Distilled {
                    satisfied,
                    rules_f,
                    rules_0,
                    by,
                } => sqlx::query(&sql(
                    sqlite,
                    &format!(
                        "UPDATE learn_logs SET stage = '{next}', satisfied = $4, rules_f = $5, rules_0 = $6, \
                         distilled_by = $7, attempts = 0, last_error = NULL, lease_owner = NULL, \
                         lease_until = NULL, updated_at = $8 {guard}"
                    ),
                ))
                .bind(interaction_id)
                .bind(owner)
                .bind(feedback_hash)
                .bind(*satisfied)
                .bind(to_json(rules_f))
                .bind(to_json(rules_0))
                .bind(by)
                .bind(now)
                .execute(pool)
                .await?,
                StageOutput::Embedded {
                    embedder_id,
                    query_vec,
                    rules_vec,
                } => sqlx::query(&sql(
                    sqlite,
                    &format!(
                        "UPDATE learn_logs SET stage = '{next}', embedder_id = $4, query_vec = $5, \
                         rules_vec = $6, attempts = 0, last_error = NULL, lease_owner = NULL, \
                         lease_until = NULL, updated_at = $7 {guard}"
                    ),
                ))
                .bind(interaction_id)
                .bind(owner)
                .bind(feedback_hash)
                .bind(embedder_id)
                .bind(vec_to_bytes(query_vec))
                .bind(vec_to_bytes(rules_vec))
                .bind(now)
                .execute(pool)
                .await?,
                StageOutput::Scored { novelty, by } => {
                    let (min, mean, max) = summarise(novelty);
                    sqlx::query(&sql(
                        sqlite,
                        &format!(
                            "UPDATE learn_logs SET stage = '{next}', novelty = $4, novelty_min = $5, \
                             novelty_mean = $6, novelty_max = $7, novelty_by = $8, attempts = 0, \
                             last_error = NULL, lease_owner = NULL, lease_until = NULL, updated_at = $9 {guard}"
                        ),
                    ))
                    .bind(interaction_id)
                    .bind(owner)
                    .bind(feedback_hash)
                    .bind(to_json(novelty))
                    .bind(min)
                    .bind(mean)
                    .bind(max)
                    .bind(by)
                    .bind(now)
                    .execute(pool)
                    .await?
                }
            };
            Ok(done.rows_affected() == 1)
        })
    }

    /// Records a failed try of the log's current stage and releases it. At
    /// `max_attempts` failures the log is marked `failed` (kept, with the
    /// error, for `uno worker` to report) instead of being retried forever.
    pub async fn fail_learn_stage(
        &self,
        interaction_id: Uuid,
        owner: &str,
        error: &str,
        max_attempts: u32,
    ) -> Result<(), StoreError> {
        let now = now_micros();
        let max = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        on_pool!(self, |pool, sqlite| {
            sqlx::query(&sql(
                sqlite,
                &format!(
                    "UPDATE learn_logs SET attempts = attempts + 1, last_error = $3, lease_owner = NULL, \
                     lease_until = NULL, updated_at = $4, \
                     stage = CASE WHEN attempts + 1 >= $5 THEN '{}' ELSE stage END \
                     WHERE interaction_id = $1 AND lease_owner = $2",
                    LogStage::Failed
                ),
            ))
            .bind(interaction_id)
            .bind(owner)
            .bind(error)
            .bind(now)
            .bind(max)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Sends logs back to an earlier stage when what produced their later
    /// artefacts changed: vectors from another embedder are re-embedded
    /// (never mixed), novelty from another scorer is re-scored. Failed logs
    /// get another chance with `retry_failed`. Returns the logs reset.
    pub async fn reset_stale_learn_logs(
        &self,
        embedder_id: &str,
        novelty_by: &str,
        retry_failed: bool,
    ) -> Result<u64, StoreError> {
        let now = now_micros();
        on_pool!(self, |pool, sqlite| {
            let mut n = sqlx::query(&sql(
                sqlite,
                &format!(
                    "UPDATE learn_logs SET stage = '{}', updated_at = $2 \
                     WHERE stage IN ({}) AND embedder_id <> $1",
                    LogStage::Embed,
                    quoted(&[LogStage::Novelty, LogStage::Ready])
                ),
            ))
            .bind(embedder_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
            n += sqlx::query(&sql(
                sqlite,
                &format!(
                    "UPDATE learn_logs SET stage = '{}', updated_at = $2 \
                     WHERE stage = '{}' AND novelty_by <> $1",
                    LogStage::Novelty,
                    LogStage::Ready
                ),
            ))
            .bind(novelty_by)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
            if retry_failed {
                n += sqlx::query(&sql(
                    sqlite,
                    &format!(
                        "UPDATE learn_logs SET stage = CASE WHEN rules_f IS NULL THEN '{}' \
                         WHEN query_vec IS NULL THEN '{}' ELSE '{}' END, attempts = 0, updated_at = $1 \
                         WHERE stage = '{}'",
                        LogStage::Distil,
                        LogStage::Embed,
                        LogStage::Novelty,
                        LogStage::Failed
                    ),
                ))
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected();
            }
            Ok(n)
        })
    }

    /// Learning logs by stage, for one tenant or all.
    pub async fn learn_stage_counts(
        &self,
        tenant: Option<&str>,
    ) -> Result<StageCounts, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT stage, COUNT(*) FROM learn_logs WHERE ($1 IS NULL OR tenant_id = $1) GROUP BY stage",
            ))
            .bind(tenant)
            .fetch_all(pool)
            .await?
        });
        let mut counts = StageCounts::default();
        for (stage, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match LogStage::parse(&stage)? {
                LogStage::Distil => counts.distil = n,
                LogStage::Embed => counts.embed = n,
                LogStage::Novelty => counts.novelty = n,
                LogStage::Ready => counts.ready = n,
                LogStage::Failed => counts.failed = n,
            }
        }
        Ok(counts)
    }

    /// One learning log, whatever its stage.
    pub async fn learn_log(&self, interaction_id: Uuid) -> Result<Option<LearnLog>, StoreError> {
        on_pool!(self, |pool, sqlite| {
            let row = sqlx::query(&sql(
                sqlite,
                &format!("SELECT {LOG_COLUMNS} FROM learn_logs WHERE interaction_id = $1"),
            ))
            .bind(interaction_id)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(learn_log_from_row!(&r))),
                None => Ok(None),
            }
        })
    }

    /// The requests of a tenant's `limit` most recent completed
    /// interactions that have no learning log (no text feedback: rated or
    /// not), newest first, whose content is still stored. The worker makes
    /// routing examples of the first turns among them: where the tenant's
    /// users ask, beyond the few who wrote comments.
    pub async fn unlearned_requests(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_pool!(self, |pool, sqlite| {
            let text = format!(
                "SELECT c.request FROM interactions i {contents} \
                 LEFT JOIN learn_logs l ON l.interaction_id = i.id \
                 WHERE i.tenant_id = $1 AND i.outcome = 'completed' AND l.interaction_id IS NULL \
                 ORDER BY i.created_at DESC LIMIT $2",
                contents = join_contents(sqlite, true),
            );
            let rows = sqlx::query(&sql(sqlite, &text))
                .bind(tenant)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| r.try_get::<Option<String>, _>(0))
                .filter_map(Result::transpose)
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)
        })
    }

    /// A tenant's ready logs embedded by `embedder_id`, in interaction order:
    /// what clustering works on.
    pub async fn ready_learn_logs(
        &self,
        tenant: &str,
        embedder_id: &str,
    ) -> Result<Vec<LearnLog>, StoreError> {
        on_pool!(self, |pool, sqlite| {
            let rows = sqlx::query(&sql(
                sqlite,
                &format!(
                    "SELECT {LOG_COLUMNS} FROM learn_logs WHERE tenant_id = $1 AND stage = '{}' \
                     AND embedder_id = $2 ORDER BY interaction_id",
                    LogStage::Ready
                ),
            ))
            .bind(tenant)
            .bind(embedder_id)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(learn_log_from_row!(r));
            }
            Ok(out)
        })
    }

    /// Every tenant with learning logs or a pending rebuild, with what the
    /// re-clustering decision needs.
    pub async fn learn_tenants(&self) -> Result<Vec<TenantLearnState>, StoreError> {
        type Row = (
            String,
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<bool>,
        );
        let rows: Vec<Row> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                &format!(
                    "SELECT t.tenant_id, COALESCE(r.n, 0), r.at, j.last_logs, j.last_updated, j.last_run_at, j.dirty \
                     FROM (SELECT tenant_id FROM learn_logs UNION SELECT tenant_id FROM learn_jobs) t \
                     LEFT JOIN (SELECT tenant_id, COUNT(*) AS n, MAX(updated_at) AS at FROM learn_logs \
                                WHERE stage = '{}' GROUP BY tenant_id) r ON r.tenant_id = t.tenant_id \
                     LEFT JOIN learn_jobs j ON j.tenant_id = t.tenant_id AND j.job = 'publish' \
                     ORDER BY t.tenant_id",
                    LogStage::Ready
                ),
            ))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(tenant, ready, at, last_logs, last_updated, last_run_at, dirty)| {
                    TenantLearnState {
                        tenant,
                        ready: u64::try_from(ready).unwrap_or(0),
                        ready_updated: at.unwrap_or(0),
                        last_logs: last_logs.and_then(|n| u64::try_from(n).ok()),
                        last_updated,
                        last_run_at,
                        dirty: dirty.unwrap_or(false),
                    }
                },
            )
            .collect())
    }

    /// Takes the tenant's publish job for `owner` unless a live lease holds
    /// it. Returns whether it was taken.
    pub async fn lease_learn_job(
        &self,
        tenant: &str,
        owner: &str,
        lease_secs: u64,
    ) -> Result<bool, StoreError> {
        let now = now_micros();
        let until = now.saturating_add(
            i64::try_from(lease_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX),
        );
        on_pool!(self, |pool, sqlite| {
            let taken = sqlx::query(&sql(
                sqlite,
                "INSERT INTO learn_jobs (tenant_id, job, lease_owner, lease_until) VALUES ($1, 'publish', $2, $3) \
                 ON CONFLICT (tenant_id, job) DO UPDATE SET lease_owner = excluded.lease_owner, \
                 lease_until = excluded.lease_until \
                 WHERE learn_jobs.lease_until IS NULL OR learn_jobs.lease_until < $4 \
                 OR learn_jobs.lease_owner = excluded.lease_owner",
            ))
            .bind(tenant)
            .bind(owner)
            .bind(until)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(taken == 1)
        })
    }

    /// Releases the tenant's publish job after a run, recording what it saw
    /// (`logs` ready logs, newest change `updated`) so the next decision
    /// can tell what changed since. `clear_dirty` is false when the run did
    /// not finish, so a deletion's rebuild is not forgotten.
    pub async fn finish_learn_job(
        &self,
        tenant: &str,
        owner: &str,
        logs: u64,
        updated: i64,
        clear_dirty: bool,
    ) -> Result<(), StoreError> {
        let now = now_micros();
        on_pool!(self, |pool, sqlite| {
            sqlx::query(&sql(
                sqlite,
                "UPDATE learn_jobs SET lease_owner = NULL, lease_until = NULL, last_run_at = $3, \
                 last_logs = $4, last_updated = $5, dirty = CASE WHEN $6 THEN FALSE ELSE dirty END \
                 WHERE tenant_id = $1 AND job = 'publish' AND lease_owner = $2",
            ))
            .bind(tenant)
            .bind(owner)
            .bind(now)
            .bind(i64::try_from(logs).unwrap_or(i64::MAX))
            .bind(updated)
            .bind(clear_dirty)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// A cached result of deterministic LLM work.
    pub async fn learn_cache_get(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT value FROM learn_cache WHERE tenant_id = $1 AND key = $2",
            ))
            .bind(tenant)
            .bind(key)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(v,)| v))
    }

    /// Stores a result of deterministic LLM work (first writer wins).
    pub async fn learn_cache_put(
        &self,
        tenant: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let now = now_micros();
        on_pool!(self, |pool, sqlite| {
            sqlx::query(&sql(
                sqlite,
                "INSERT INTO learn_cache (tenant_id, key, value, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, key) DO NOTHING",
            ))
            .bind(tenant)
            .bind(key)
            .bind(value)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}

/// Min, mean and max of per-rule novelty; all `None` without rules.
fn summarise(novelty: &[f64]) -> (Option<f64>, Option<f64>, Option<f64>) {
    if novelty.is_empty() {
        return (None, None, None);
    }
    let min = novelty.iter().copied().fold(f64::INFINITY, f64::min);
    let max = novelty.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = novelty.iter().sum::<f64>() / novelty.len() as f64;
    (Some(min), Some(mean), Some(max))
}

impl Store {
    /// Removes the learning logs an end user contributed to (as the one who
    /// asked or as one who gave feedback), drops the tenant's result cache
    /// (it holds answers to their queries) and marks the tenant for a
    /// rebuild, so the next snapshot no longer carries their rules. Logs of
    /// other users' interactions are re-ingested from the feedback that
    /// remains.
    pub(crate) async fn delete_user_learning(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<u64, StoreError> {
        on_pool!(self, |pool, sqlite| {
            let mut tx = pool.begin().await?;
            let logs = sqlx::query(&sql(
                sqlite,
                "DELETE FROM learn_logs WHERE tenant_id = $1 AND (end_user = $2 OR interaction_id IN \
                 (SELECT interaction_id FROM feedback WHERE tenant_id = $1 AND end_user = $2))",
            ))
            .bind(tenant)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(&sql(sqlite, "DELETE FROM learn_cache WHERE tenant_id = $1"))
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&sql(
                sqlite,
                "INSERT INTO learn_jobs (tenant_id, job, dirty) VALUES ($1, 'publish', TRUE) \
                 ON CONFLICT (tenant_id, job) DO UPDATE SET dirty = TRUE",
            ))
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(logs)
        })
    }

    /// Removes everything learned for a tenant: learning logs, jobs, cache
    /// every snapshot and the operators' rule overrides. Returns (learning
    /// logs, snapshots) removed.
    pub(crate) async fn delete_tenant_learning(
        &self,
        tenant: &str,
    ) -> Result<(u64, u64), StoreError> {
        on_pool!(self, |pool, sqlite| {
            let mut tx = pool.begin().await?;
            let mut counts = [0u64; 6];
            let tables = [
                "learn_logs",
                "learn_jobs",
                "learn_cache",
                "active_snapshots",
                "snapshots",
                "rule_overrides",
            ];
            for (table, count) in tables.iter().zip(counts.iter_mut()) {
                *count = sqlx::query(&sql(
                    sqlite,
                    &format!("DELETE FROM {table} WHERE tenant_id = $1"),
                ))
                .bind(tenant)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok((counts[0], counts[4]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_reads_back_from_its_stored_name_and_an_unknown_name_is_an_error() {
        for stage in [
            LogStage::Distil,
            LogStage::Embed,
            LogStage::Novelty,
            LogStage::Ready,
            LogStage::Failed,
        ] {
            assert_eq!(LogStage::parse(stage.as_str()).unwrap(), stage);
        }
        assert!(LogStage::parse("novelty ").is_err());
        assert!(LogStage::parse("").is_err());
    }

    #[test]
    fn each_stage_output_moves_a_log_one_stage_on() {
        let distilled = StageOutput::Distilled {
            satisfied: false,
            rules_f: Vec::new(),
            rules_0: Vec::new(),
            by: "m".into(),
        };
        let embedded = StageOutput::Embedded {
            embedder_id: "e".into(),
            query_vec: Vec::new(),
            rules_vec: Vec::new(),
        };
        let scored = StageOutput::Scored {
            novelty: Vec::new(),
            by: "m".into(),
        };
        assert_eq!(
            [distilled.next(), embedded.next(), scored.next()],
            [LogStage::Embed, LogStage::Novelty, LogStage::Ready]
        );
        assert!(!LogStage::RUNNABLE.contains(&LogStage::Ready));
    }
}
