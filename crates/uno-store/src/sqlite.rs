//! The SQLite backend: the embedded default, a file created on first start.
//!
//! Same tables as Postgres without partitions; times are Unix microseconds.
//! WAL mode lets readers (feedback checks, the admin API) work while the log
//! writer writes; incremental auto-vacuum lets retention give disk back.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use crate::error::StoreError;
use crate::export::RatedInteraction;
use crate::keys::{KeyInfo, NewKey};
use crate::rows::{FeedbackRow, FollowUpRow, InteractionRow, LogRow};
use crate::store::{AuditEntry, DeletionReport, RetentionPolicy, RetentionReport};
use crate::supersede::Supersessions;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// A SQLite pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default()
}

impl SqliteStore {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|err| StoreError::Config(format!("invalid SQLite URL {url:?}: {err}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn write_rows(&self, rows: &[LogRow]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Retries first: one row per id, the latest attempt's.
        let mut supersessions = Supersessions::of(rows.iter().filter_map(|row| match row {
            LogRow::Supersede(mark) => Some(mark.as_ref()),
            _ => None,
        }));
        if !supersessions.is_empty() {
            replace_earlier_attempts(&mut tx, &mut supersessions).await?;
        }
        // Interactions next, so follow-ups in the same batch find them.
        for row in rows {
            match row {
                LogRow::Interaction(r) => {
                    if supersessions.keeps(r.id, &r.tenant, r.created_at) {
                        insert_interaction(&mut tx, r).await?;
                    }
                }
                // The log sink encodes only for Postgres; a row encoded
                // anyway is written all the same.
                LogRow::Encoded(e) => {
                    let r = e
                        .decode()
                        .map_err(|err| StoreError::Rejected(err.to_string()))?;
                    if supersessions.keeps(r.id, &r.tenant, r.created_at) {
                        insert_interaction(&mut tx, &r).await?;
                    }
                }
                LogRow::Feedback(_) | LogRow::FollowUp(_) | LogRow::Supersede(_) => {}
            }
        }
        for row in rows {
            match row {
                LogRow::Feedback(r) => upsert_feedback(&mut tx, r).await?,
                LogRow::FollowUp(r) => insert_follow_up(&mut tx, r).await?,
                LogRow::Interaction(_) | LogRow::Encoded(_) | LogRow::Supersede(_) => {}
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn insert_key(&self, key: &NewKey) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tenants (id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(&key.info.tenant)
            .bind(micros(key.info.created_at))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, key_prefix, name, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(key.info.id)
        .bind(&key.info.tenant)
        .bind(&key.hash[..])
        .bind(&key.info.prefix)
        .bind(&key.info.name)
        .bind(micros(key.info.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, key_prefix, name, created_at, revoked_at FROM api_keys \
             WHERE ?1 IS NULL OR tenant_id = ?1 ORDER BY created_at DESC",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| KeyInfo {
                id: r.get(0),
                tenant: r.get(1),
                prefix: r.get(2),
                name: r.get(3),
                created_at: from_micros(r.get(4)),
                revoked_at: r.get::<Option<i64>, _>(5).map(from_micros),
            })
            .collect())
    }

    pub(crate) async fn revoke_key(&self, id_or_prefix: &str) -> Result<u64, StoreError> {
        let id = Uuid::try_parse(id_or_prefix).ok();
        let result = sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL AND (id = ? OR key_prefix = ?)",
        )
        .bind(micros(Utc::now()))
        .bind(id)
        .bind(id_or_prefix)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    pub(crate) async fn apply_retention(
        &self,
        policy: RetentionPolicy,
        now: DateTime<Utc>,
    ) -> Result<RetentionReport, StoreError> {
        let cutoff =
            |days: u32| (days > 0).then(|| micros(now - chrono::Duration::days(i64::from(days))));
        let metadata_cutoff = cutoff(policy.metadata_days);
        let content_cutoff = match (cutoff(policy.content_days), metadata_cutoff) {
            (Some(c), Some(m)) => Some(c.max(m)),
            (c, m) => c.or(m),
        };
        let mut report = RetentionReport::default();
        let mut tx = self.pool.begin().await?;
        if let Some(cutoff) = content_cutoff {
            report.contents = sqlx::query("DELETE FROM interaction_contents WHERE created_at < ?")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if let Some(cutoff) = metadata_cutoff {
            report.interactions = sqlx::query("DELETE FROM interactions WHERE created_at < ?")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            report.feedback = sqlx::query("DELETE FROM feedback WHERE created_at < ?")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        // Hand the freed pages back to the file system.
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(&self.pool)
            .await?;
        Ok(report)
    }

    pub(crate) async fn delete_user(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<DeletionReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        let feedback = sqlx::query(
            "DELETE FROM feedback WHERE tenant_id = ?1 AND (end_user = ?2 OR interaction_id IN \
             (SELECT id FROM interactions WHERE tenant_id = ?1 AND end_user = ?2))",
        )
        .bind(tenant)
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let contents = sqlx::query(
            "DELETE FROM interaction_contents WHERE tenant_id = ?1 AND interaction_id IN \
             (SELECT id FROM interactions WHERE tenant_id = ?1 AND end_user = ?2)",
        )
        .bind(tenant)
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let interactions =
            sqlx::query("DELETE FROM interactions WHERE tenant_id = ? AND end_user = ?")
                .bind(tenant)
                .bind(user)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(DeletionReport {
            interactions,
            contents,
            feedback,
            api_keys: 0,
            ..DeletionReport::default()
        })
    }

    pub(crate) async fn delete_tenant(&self, tenant: &str) -> Result<DeletionReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut report = DeletionReport::default();
        for (table, slot) in report.per_table() {
            *slot = sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = ?"))
                .bind(tenant)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        sqlx::query("DELETE FROM tenants WHERE id = ?")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(&self.pool)
            .await?;
        Ok(report)
    }

    pub(crate) async fn audit(
        &self,
        actor: &str,
        action: &str,
        tenant: Option<&str>,
        subject: Option<&str>,
        details: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, tenant_id, subject, details) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(micros(Utc::now()))
        .bind(actor)
        .bind(action)
        .bind(tenant)
        .bind(subject)
        .bind(details.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn audit_entries(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, tenant_id, subject, details FROM audit_log \
             WHERE ?1 IS NULL OR tenant_id = ?1 ORDER BY id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                at: from_micros(r.get(0)),
                actor: r.get(1),
                action: r.get(2),
                tenant: r.get(3),
                subject: r.get(4),
                details: serde_json::from_str(&r.get::<String, _>(5)).unwrap_or_default(),
            })
            .collect())
    }

    pub(crate) async fn rated_interactions(
        &self,
        tenant: &str,
    ) -> Result<Vec<RatedInteraction>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.id, c.request, c.response_text, f.rating, f.expected_output \
             FROM feedback f \
             JOIN interactions i ON i.id = f.interaction_id AND i.tenant_id = f.tenant_id \
             JOIN interaction_contents c ON c.interaction_id = i.id AND c.created_at = i.created_at \
             WHERE f.tenant_id = ? AND f.kind = 'explicit' AND i.outcome = 'completed' \
             ORDER BY i.created_at, i.id, f.id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| RatedInteraction {
                interaction_id: r.get(0),
                request: r.get(1),
                response_text: r.get(2),
                rating: r.get(3),
                expected_output: r.get(4),
            })
            .collect())
    }

    pub(crate) async fn feedback_for(
        &self,
        tenant: &str,
        interaction: Uuid,
    ) -> Result<Vec<FeedbackRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, interaction_id, end_user, kind, rating, comment, expected_output, \
             source_interaction_id, created_at FROM feedback \
             WHERE tenant_id = ? AND interaction_id = ? ORDER BY created_at, id",
        )
        .bind(tenant)
        .bind(interaction)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| FeedbackRow {
                id: r.get(0),
                tenant: r.get(1),
                interaction_id: r.get(2),
                end_user: r.get(3),
                kind: r.get(4),
                rating: r.get::<Option<i64>, _>(5).map(|v| v as i16),
                comment: r.get(6),
                expected_output: r.get(7),
                source_interaction_id: r.get(8),
                created_at: from_micros(r.get(9)),
            })
            .collect())
    }
}

/// For the ids and tenants a batch's retries mark: learns the newest
/// attempt already stored (into `supersessions`) and deletes the stored
/// attempts, metadata and content, received before the newest one known
/// (see [`crate::supersede`]).
async fn replace_earlier_attempts(
    tx: &mut Transaction<'_, Sqlite>,
    supersessions: &mut Supersessions,
) -> Result<(), StoreError> {
    let marks: Vec<(Uuid, String, i64)> = supersessions
        .marks()
        .map(|(id, tenant, micros)| (id, tenant.to_owned(), micros))
        .collect();
    for (id, tenant, micros) in marks {
        let stored: Option<i64> = sqlx::query_scalar(
            "SELECT max(created_at) FROM interactions WHERE id = ? AND tenant_id = ?",
        )
        .bind(id)
        .bind(&tenant)
        .fetch_one(&mut **tx)
        .await?;
        let newest = stored.map_or(micros, |stored| stored.max(micros));
        supersessions.raise(id, &tenant, newest);
        for sql in [
            "DELETE FROM interactions WHERE id = ?1 AND tenant_id = ?2 AND created_at < ?3",
            "DELETE FROM interaction_contents \
             WHERE interaction_id = ?1 AND tenant_id = ?2 AND created_at < ?3",
        ] {
            sqlx::query(sql)
                .bind(id)
                .bind(&tenant)
                .bind(newest)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

async fn insert_interaction(
    tx: &mut Transaction<'_, Sqlite>,
    r: &InteractionRow,
) -> Result<(), StoreError> {
    let created = micros(r.created_at);
    sqlx::query(
        "INSERT INTO interactions (id, tenant_id, created_at, model, end_user, streamed, status, outcome, \
         finish_reason, prompt_tokens, completion_tokens, total_tokens, upstream_ms, total_ms, ttfb_ms, \
         error, snapshot_version, cluster_id, path, conversation_hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(r.id)
    .bind(&r.tenant)
    .bind(created)
    .bind(&r.model)
    .bind(&r.end_user)
    .bind(r.streamed)
    .bind(r.status)
    .bind(r.outcome.as_ref())
    .bind(&r.finish_reason)
    .bind(r.prompt_tokens)
    .bind(r.completion_tokens)
    .bind(r.total_tokens)
    .bind(r.upstream_ms)
    .bind(r.total_ms)
    .bind(r.ttfb_ms)
    .bind(&r.error)
    .bind(r.snapshot_version)
    .bind(&r.cluster_id)
    .bind(r.path.as_deref())
    .bind(&r.conversation_hash)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO interaction_contents (interaction_id, tenant_id, created_at, request, response_text, \
         draft, critique) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(r.id)
    .bind(&r.tenant)
    .bind(created)
    .bind(r.request.as_str())
    .bind(&r.response_text)
    .bind(&r.draft)
    .bind(&r.critique)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn upsert_feedback(
    tx: &mut Transaction<'_, Sqlite>,
    row: &FeedbackRow,
) -> Result<(), StoreError> {
    let at = micros(row.created_at);
    sqlx::query(
        "INSERT INTO feedback (id, tenant_id, interaction_id, end_user, kind, rating, comment, expected_output, \
         source_interaction_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) \
         ON CONFLICT (id) DO UPDATE SET \
           rating = COALESCE(excluded.rating, feedback.rating), \
           comment = COALESCE(excluded.comment, feedback.comment), \
           expected_output = COALESCE(excluded.expected_output, feedback.expected_output), \
           updated_at = MAX(excluded.updated_at, feedback.updated_at)",
    )
    .bind(row.id)
    .bind(&row.tenant)
    .bind(row.interaction_id)
    .bind(&row.end_user)
    .bind(&row.kind)
    .bind(row.rating)
    .bind(&row.comment)
    .bind(&row.expected_output)
    .bind(row.source_interaction_id)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_follow_up(
    tx: &mut Transaction<'_, Sqlite>,
    row: &FollowUpRow,
) -> Result<(), StoreError> {
    let at = micros(row.created_at);
    sqlx::query(
        "INSERT INTO feedback (id, tenant_id, interaction_id, end_user, kind, comment, source_interaction_id, \
         created_at, updated_at) \
         SELECT ?1, ?2, i.id, ?3, 'implicit', ?4, ?5, ?6, ?6 FROM interactions i \
         WHERE i.tenant_id = ?2 AND i.conversation_hash = ?7 AND i.id <> ?5 \
         ORDER BY i.created_at DESC LIMIT 1 \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(row.feedback_id)
    .bind(&row.tenant)
    .bind(&row.end_user)
    .bind(&row.text)
    .bind(row.source_interaction_id)
    .bind(at)
    .bind(&row.parent_hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
