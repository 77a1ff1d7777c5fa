//! The Postgres backend.
//!
//! Interactions, content included, are partitioned by day. Partitions are
//! created on demand before a batch that needs them (under an advisory lock,
//! so replicas do not race) and remembered, so the steady state costs no
//! extra statement. Batches go in by binary COPY, one statement per batch
//! (see [`crate::pg_copy`]). Content retention empties the content columns
//! of whole days and rewrites those days' partitions, which frees their
//! disk as dropping a partition does.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::copy_source::{CopySource, copy_statement};
use crate::error::StoreError;
use crate::export::RatedInteraction;
use crate::keys::{KeyInfo, NewKey};
use crate::pg_copy::{self, EncodedInteraction};
use crate::rows::{FeedbackRow, FollowUpRow, InteractionRow, LogRow, SupersedeRow};
use crate::store::{AuditEntry, DeletionReport, RetentionPolicy, RetentionReport};
use crate::supersede::Supersessions;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The table partitioned by day, and the prefix of its partitions' names.
const PARTITIONED: &str = "interactions";

/// Lock id for partition creation (any constant shared by all replicas).
const PARTITION_LOCK: i64 = 0x756e_6f5f_7061_7274;

/// A Postgres pool plus the partitions known to exist.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    partitions: Arc<Mutex<HashSet<NaiveDate>>>,
    /// The COPY buffer of the last batch, kept for the next: a fresh
    /// chunk-sized buffer per batch is memory the allocator may have handed
    /// back to the OS meanwhile, and touching it again costs page faults
    /// (zeroed pages) on the proxy's cores.
    spare_payload: Arc<Mutex<Option<pg_copy::Payload>>>,
}

/// The pool: a few connections (the log writer, feedback checks, the
/// admin API and the worker), none kept open while idle.
fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(8)
        .min_connections(0)
        // Short, so a writer facing a dead database journals quickly
        // instead of waiting.
        .acquire_timeout(Duration::from_secs(3))
}

/// Whether `url` names a database on this host (loopback address or a
/// Unix socket) and leaves `sslmode` to the default.
fn is_loopback_without_sslmode(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    if parsed
        .query_pairs()
        .any(|(k, _)| k == "sslmode" || k == "ssl-mode")
    {
        return false;
    }
    let socket_dir = parsed
        .query_pairs()
        .any(|(k, v)| k == "host" && v.starts_with('/'));
    match parsed.host() {
        None => true,
        // `postgres:` is not a special scheme, so addresses arrive as
        // opaque host names.
        Some(url::Host::Domain(domain)) => {
            domain == "localhost"
                || socket_dir
                || domain
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
    }
}

impl PgStore {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|err| StoreError::Config(format!("invalid Postgres URL: {err}")))?;
        let options = options.application_name("uno");
        let pool = if is_loopback_without_sslmode(url) {
            // TLS to a database on the same host protects nothing (the
            // bytes never leave the kernel) and costs both ends CPU on
            // every logged row. A server that insists on TLS (hostssl
            // only) still gets it: the URL's own settings are tried next.
            match pool_options()
                .connect_with(options.clone().ssl_mode(PgSslMode::Disable))
                .await
            {
                Ok(pool) => pool,
                Err(_) => pool_options().connect_with(options).await?,
            }
        } else {
            pool_options().connect_with(options).await?
        };
        Ok(PgStore {
            pool,
            partitions: Arc::new(Mutex::new(HashSet::new())),
            spare_payload: Arc::new(Mutex::new(None)),
        })
    }

    /// A store whose pool connects on first use: for `uno serve` started
    /// while the database is unreachable. A database on this host gets
    /// plain TCP, as [`PgStore::connect`] prefers (there is no first
    /// connection to fall back from).
    pub(crate) fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|err| StoreError::Config(format!("invalid Postgres URL: {err}")))?;
        let mut options = options.application_name("uno");
        if is_loopback_without_sslmode(url) {
            options = options.ssl_mode(PgSslMode::Disable);
        }
        Ok(PgStore {
            pool: pool_options().connect_lazy_with(options),
            partitions: Arc::new(Mutex::new(HashSet::new())),
            spare_payload: Arc::new(Mutex::new(None)),
        })
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn known_partitions(&self) -> std::sync::MutexGuard<'_, HashSet<NaiveDate>> {
        // A poisoned lock only means another thread panicked mid-insert into
        // a set of dates; the set is still valid.
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The spare COPY buffer, or a new one if another batch holds it.
    fn take_payload(&self) -> pg_copy::Payload {
        // Poisoning only means a panic elsewhere; the slot is still valid.
        let mut spare = self.spare_payload.lock().unwrap_or_else(|p| p.into_inner());
        spare.take().unwrap_or_else(pg_copy::Payload::new)
    }

    fn keep_payload(&self, mut payload: pg_copy::Payload) {
        payload.clear();
        *self.spare_payload.lock().unwrap_or_else(|p| p.into_inner()) = Some(payload);
    }

    /// The days among `days` whose partitions this process has not yet
    /// made sure of.
    fn missing_partitions(&self, days: &HashSet<NaiveDate>) -> Vec<NaiveDate> {
        let known = self.known_partitions();
        days.iter()
            .filter(|d| !known.contains(d))
            .copied()
            .collect()
    }

    /// COPYs a batch's interactions on `conn`, through the spare buffer.
    async fn copy_batch(
        &self,
        conn: &mut sqlx::PgConnection,
        rows: &[&InteractionRow],
        encoded: &[&EncodedInteraction],
    ) -> Result<(), BatchError> {
        let mut payload = self.take_payload();
        let copied = copy_interactions(conn, &mut payload, rows, encoded).await;
        self.keep_payload(payload);
        Ok(copied?)
    }

    async fn ensure_partitions(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        days: &HashSet<NaiveDate>,
    ) -> Result<(), StoreError> {
        let missing = self.missing_partitions(days);
        if missing.is_empty() {
            return Ok(());
        }
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut **tx)
            .await?;
        for day in &missing {
            let next = day
                .checked_add_days(Days::new(1))
                .ok_or_else(|| StoreError::Rejected(format!("date out of range: {day}")))?;
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {PARTITIONED}_p{} PARTITION OF {PARTITIONED} \
                 FOR VALUES FROM ('{day}') TO ('{next}')",
                day.format("%Y%m%d")
            );
            sqlx::query(&sql).execute(&mut **tx).await?;
        }
        // Remembered only after commit succeeds; see write_rows.
        Ok(())
    }

    pub(crate) async fn write_rows(&self, rows: &[LogRow]) -> Result<(), StoreError> {
        // Fresh rows go in by binary COPY; a batch holding an id the table
        // already has (COPY cannot skip it) is written again row-set by
        // row-set with ON CONFLICT DO NOTHING, so nothing is stored twice.
        match self.write_batch(rows, Insert::Copy).await {
            Err(BatchError::Duplicate(_)) => {
                Ok(self.write_batch(rows, Insert::SkipExisting).await?)
            }
            other => Ok(other?),
        }
    }

    async fn write_batch(&self, rows: &[LogRow], insert: Insert) -> Result<(), BatchError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut interactions = Vec::new();
        let mut encoded = Vec::new();
        let mut feedback = Vec::new();
        let mut follow_ups = Vec::new();
        let mut marks: Vec<&SupersedeRow> = Vec::new();
        for row in rows {
            match row {
                LogRow::Interaction(r) => interactions.push(r.as_ref()),
                LogRow::Encoded(e) => encoded.push(e),
                LogRow::Feedback(r) => feedback.push(r.as_ref()),
                LogRow::FollowUp(r) => follow_ups.push(r.as_ref()),
                LogRow::Supersede(r) => marks.push(r.as_ref()),
            }
        }
        let days: HashSet<NaiveDate> = interactions
            .iter()
            .map(|r| r.created_at.date_naive())
            .chain(encoded.iter().map(|e| e.day()))
            .collect();
        if matches!(insert, Insert::Copy)
            && feedback.is_empty()
            && follow_ups.is_empty()
            && marks.is_empty()
            && self.missing_partitions(&days).is_empty()
        {
            // The usual batch (interactions only, into partitions that
            // exist): one COPY, its own transaction. BEGIN and COMMIT
            // would add two round trips to the database per batch, and
            // each wakes its backend (see [`pg_copy::CHUNK_BYTES`]).
            let mut conn = WriteConnection::acquire(&self.pool).await?;
            self.copy_batch(&mut conn, &interactions, &encoded).await?;
            conn.release();
            return Ok(());
        }
        let mut conn = WriteConnection::acquire(&self.pool).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        self.ensure_partitions(&mut tx, &days).await?;
        if !marks.is_empty() {
            // Retries: one row per id, the latest attempt's.
            let mut supersessions = Supersessions::of(marks);
            replace_earlier_attempts(&mut tx, &mut supersessions).await?;
            interactions.retain(|r| supersessions.keeps(r.id, &r.tenant, r.created_at));
            encoded.retain(|e| supersessions.keeps_encoded(e));
        }
        if !interactions.is_empty() || !encoded.is_empty() {
            match insert {
                Insert::Copy => self.copy_batch(&mut tx, &interactions, &encoded).await?,
                Insert::SkipExisting => {
                    // The rare path (an id already stored): rows back from
                    // their tuples, each inserted unless present.
                    let decoded = encoded
                        .iter()
                        .map(|e| e.decode())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|err| BatchError::Store(StoreError::Rejected(err.to_string())))?;
                    interactions.extend(decoded.iter());
                    insert_interactions(&mut tx, &interactions).await?
                }
            }
        }
        for row in feedback {
            upsert_feedback(&mut tx, row).await?;
        }
        if !follow_ups.is_empty() {
            insert_follow_ups(&mut tx, &follow_ups).await?;
        }
        tx.commit().await?;
        conn.release();
        self.known_partitions().extend(days);
        Ok(())
    }

    pub(crate) async fn insert_key(&self, key: &NewKey) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tenants (id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(&key.info.tenant)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, key_prefix, name, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.info.id)
        .bind(&key.info.tenant)
        .bind(&key.hash[..])
        .bind(&key.info.prefix)
        .bind(&key.info.name)
        .bind(key.info.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, key_prefix, name, created_at, revoked_at FROM api_keys \
             WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY created_at DESC",
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
                created_at: r.get(4),
                revoked_at: r.get(5),
            })
            .collect())
    }

    pub(crate) async fn revoke_key(&self, id_or_prefix: &str) -> Result<u64, StoreError> {
        let id = Uuid::try_parse(id_or_prefix).ok();
        let result = sqlx::query(
            "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL AND (id = $1 OR key_prefix = $2)",
        )
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
        let mut report = RetentionReport::default();
        let cutoff = |days: u32| (days > 0).then(|| now - chrono::Duration::days(i64::from(days)));
        let metadata_cutoff = cutoff(policy.metadata_days);
        let content_cutoff = cutoff(policy.content_days);
        for (name, day) in self.partitions().await? {
            let Some(end) = day
                .checked_add_days(Days::new(1))
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|e| e.and_utc())
            else {
                continue;
            };
            // Only whole days entirely before a cutoff are touched.
            let past = |cutoff: Option<DateTime<Utc>>| cutoff.is_some_and(|c| end <= c);
            if past(metadata_cutoff) {
                let counts = sqlx::query(&format!("SELECT count(*), count(request) FROM {name}"))
                    .fetch_one(&self.pool)
                    .await?;
                sqlx::query(&format!("DROP TABLE IF EXISTS {name}"))
                    .execute(&self.pool)
                    .await?;
                report.partitions_dropped += 1;
                report.interactions += counts.get::<i64, _>(0) as u64;
                report.contents += counts.get::<i64, _>(1) as u64;
                self.known_partitions().remove(&day);
            } else if past(content_cutoff) {
                report.contents += self.empty_contents(&name).await?;
            }
        }
        if let Some(cutoff) = metadata_cutoff {
            let deleted = sqlx::query("DELETE FROM feedback WHERE created_at < $1")
                .bind(cutoff)
                .execute(&self.pool)
                .await?;
            report.feedback = deleted.rows_affected();
        }
        Ok(report)
    }

    /// Empties the content columns of one day's partition, then rewrites
    /// it: an `UPDATE` alone leaves the old rows' space in a partition that
    /// never takes new rows, so the disk would not be freed. The rewrite
    /// locks that day's partition only (reads of that day wait for it;
    /// logging, which writes today's, does not). Returns the rows emptied.
    async fn empty_contents(&self, partition: &str) -> Result<u64, StoreError> {
        let emptied = sqlx::query(&format!(
            "UPDATE {partition} \
             SET request = NULL, response_text = NULL, draft = NULL, critique = NULL \
             WHERE request IS NOT NULL"
        ))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if emptied > 0 {
            // VACUUM runs outside a transaction: the simple protocol.
            sqlx::raw_sql(&format!("VACUUM FULL {partition}"))
                .execute(&self.pool)
                .await?;
        }
        Ok(emptied)
    }

    /// The day partitions of `interactions`, by name, with their days.
    async fn partitions(&self) -> Result<Vec<(String, NaiveDate)>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.relname FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = $1 ORDER BY c.relname",
        )
        .bind(PARTITIONED)
        .fetch_all(&self.pool)
        .await?;
        let prefix = format!("{PARTITIONED}_p");
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let name: String = r.get(0);
                let day = NaiveDate::parse_from_str(name.strip_prefix(&prefix)?, "%Y%m%d").ok()?;
                Some((name, day))
            })
            .collect())
    }

    pub(crate) async fn delete_user(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<DeletionReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        let feedback = sqlx::query(
            "DELETE FROM feedback WHERE tenant_id = $1 AND (end_user = $2 OR interaction_id IN \
             (SELECT id FROM interactions WHERE tenant_id = $1 AND end_user = $2))",
        )
        .bind(tenant)
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let (interactions, contents) = delete_interactions(
            &mut tx,
            "tenant_id = $1 AND end_user = $2",
            tenant,
            Some(user),
        )
        .await?;
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
        let mut of_tenant = async |table: &str| {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                .bind(tenant)
                .execute(&mut *tx)
                .await
                .map(|done| done.rows_affected())
        };
        let feedback = of_tenant("feedback").await?;
        let api_keys = of_tenant("api_keys").await?;
        let (interactions, contents) =
            delete_interactions(&mut tx, "tenant_id = $1", tenant, None).await?;
        let report = DeletionReport {
            interactions,
            contents,
            feedback,
            api_keys,
            ..DeletionReport::default()
        };
        sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
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
        sqlx::query("INSERT INTO audit_log (actor, action, tenant_id, subject, details) VALUES ($1, $2, $3, $4, $5)")
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
             WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                at: r.get(0),
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
            "SELECT i.id, i.request, i.response_text, f.rating, f.expected_output \
             FROM feedback f \
             JOIN interactions i ON i.id = f.interaction_id AND i.tenant_id = f.tenant_id \
             WHERE f.tenant_id = $1 AND f.kind = 'explicit' AND i.outcome = 'completed' \
             AND i.request IS NOT NULL \
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
             WHERE tenant_id = $1 AND interaction_id = $2 ORDER BY created_at, id",
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
                rating: r.get(5),
                comment: r.get(6),
                expected_output: r.get(7),
                source_interaction_id: r.get(8),
                created_at: r.get(9),
            })
            .collect())
    }
}

/// How a batch's interactions go in.
#[derive(Debug, Clone, Copy)]
enum Insert {
    /// Binary COPY: cheapest, fails on an existing id.
    Copy,
    /// `INSERT … ON CONFLICT DO NOTHING`.
    SkipExisting,
}

/// Why a batch was not written.
#[derive(Debug)]
enum BatchError {
    /// A row's id is already stored (a unique violation).
    Duplicate(sqlx::Error),
    /// Anything else.
    Store(StoreError),
}

impl From<sqlx::Error> for BatchError {
    fn from(err: sqlx::Error) -> Self {
        let unique_violation = matches!(
            &err,
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23505")
        );
        if unique_violation {
            BatchError::Duplicate(err)
        } else {
            BatchError::Store(err.into())
        }
    }
}

impl From<StoreError> for BatchError {
    fn from(err: StoreError) -> Self {
        BatchError::Store(err)
    }
}

impl From<BatchError> for StoreError {
    fn from(err: BatchError) -> Self {
        match err {
            BatchError::Store(err) => err,
            BatchError::Duplicate(err) => err.into(),
        }
    }
}

/// The batch's interactions by binary COPY (see [`crate::pg_copy`]). The
/// first chunk goes through `payload`, the rest is read straight from the
/// tuples into the connection's write buffer (see [`crate::copy_source`]
/// for why both).
/// A pooled connection for one log write, closed rather than returned to
/// the pool unless the write finished ([`WriteConnection::release`]).
///
/// The writer abandons a write that outlives its durability deadline (its
/// future is dropped), and a write may fail part way. sqlx's COPY does not
/// survive either: dropped mid-copy it only queues a `CopyFail`, and
/// dropped after `CopyDone` it leaves the server's `CommandComplete` and
/// `ReadyForQuery` unread. Back in the pool, such a connection hands the
/// stale replies to the next write, which can take them for its own: rows
/// counted as written that never were (found under load: 1,383 of 10,000
/// replayed rows missing). A fresh connection costs a few milliseconds.
struct WriteConnection {
    conn: Option<sqlx::pool::PoolConnection<Postgres>>,
}

impl WriteConnection {
    async fn acquire(pool: &PgPool) -> Result<WriteConnection, sqlx::Error> {
        Ok(WriteConnection {
            conn: Some(pool.acquire().await?),
        })
    }

    /// The write finished: the connection goes back to the pool.
    fn release(mut self) {
        self.conn.take();
    }
}

impl std::ops::Deref for WriteConnection {
    type Target = sqlx::PgConnection;

    fn deref(&self) -> &sqlx::PgConnection {
        self.conn
            .as_deref()
            .expect("a WriteConnection holds its connection until released or dropped")
    }
}

impl std::ops::DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut sqlx::PgConnection {
        self.conn
            .as_deref_mut()
            .expect("a WriteConnection holds its connection until released or dropped")
    }
}

impl Drop for WriteConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Out of the pool, then closed by its drop.
            drop(conn.detach());
        }
    }
}

async fn copy_interactions(
    conn: &mut sqlx::PgConnection,
    payload: &mut pg_copy::Payload,
    rows: &[&InteractionRow],
    encoded: &[&EncodedInteraction],
) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(&copy_statement()).await?;
    let mut source = CopySource::new(rows, encoded);
    payload.clear();
    source.fill(payload, pg_copy::CHUNK_BYTES);
    let mut sent = copy.send(payload.as_slice()).await.map(|_| ());
    if sent.is_ok() && !source.is_done() {
        sent = copy.read_from(&mut source).await.map(|_| ());
    }
    if let Err(err) = sent {
        let _ = copy.abort("uno: the payload could not be sent").await;
        return Err(err);
    }
    copy.finish().await?;
    Ok(())
}

/// Deletes the interactions `filter` selects (`$1` is the tenant, `$2`
/// the end user when given): how many, and how many of them still had
/// their content.
async fn delete_interactions(
    tx: &mut Transaction<'_, Postgres>,
    filter: &str,
    tenant: &str,
    user: Option<&str>,
) -> Result<(u64, u64), StoreError> {
    let sql = format!(
        "WITH gone AS (DELETE FROM interactions WHERE {filter} RETURNING request) \
         SELECT count(*), count(request) FROM gone"
    );
    let mut query = sqlx::query(&sql).bind(tenant);
    if let Some(user) = user {
        query = query.bind(user);
    }
    let counts = query.fetch_one(&mut **tx).await?;
    Ok((
        counts.get::<i64, _>(0) as u64,
        counts.get::<i64, _>(1) as u64,
    ))
}

/// For the ids and tenants a batch's retries mark: learns the newest
/// attempt already stored (into `supersessions`) and deletes the stored
/// attempts received before the newest one known (see
/// [`crate::supersede`]).
async fn replace_earlier_attempts(
    tx: &mut Transaction<'_, Postgres>,
    supersessions: &mut Supersessions,
) -> Result<(), StoreError> {
    let (mut ids, mut tenants, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for (id, tenant, micros) in supersessions.marks() {
        ids.push(id);
        tenants.push(tenant.to_owned());
        times.push(DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default());
    }
    let newest = sqlx::query(
        "WITH marked AS ( \
           SELECT m.id, m.tenant, GREATEST(m.at, max(i.created_at)) AS newest \
           FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS m(id, tenant, at) \
           LEFT JOIN interactions i ON i.id = m.id AND i.tenant_id = m.tenant \
           GROUP BY m.id, m.tenant, m.at), \
         gone AS ( \
           DELETE FROM interactions i USING marked m \
           WHERE i.id = m.id AND i.tenant_id = m.tenant AND i.created_at < m.newest) \
         SELECT id, tenant, newest FROM marked",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&times)
    .fetch_all(&mut **tx)
    .await?;
    for row in newest {
        let (id, tenant, at): (Uuid, String, DateTime<Utc>) = (row.get(0), row.get(1), row.get(2));
        supersessions.raise(id, &tenant, at.timestamp_micros());
    }
    Ok(())
}

async fn insert_interactions(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[&InteractionRow],
) -> Result<(), StoreError> {
    // Columns are bound as arrays of references into the rows: the request
    // and answer texts (the bulk of each row) are never copied.
    macro_rules! copied {
        ($field:ident) => {
            rows.iter().map(|r| r.$field).collect::<Vec<_>>()
        };
    }
    macro_rules! text {
        ($field:ident) => {
            rows.iter()
                .map(|r| -> &str { &r.$field })
                .collect::<Vec<&str>>()
        };
    }
    macro_rules! optional {
        ($field:ident) => {
            rows.iter().map(|r| r.$field.as_deref()).collect::<Vec<_>>()
        };
    }
    // The same columns, in the same order, as the COPY path writes.
    sqlx::query(&format!(
        "INSERT INTO interactions ({}) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::bool[], \
         $7::int2[], $8::text[], $9::text[], $10::int8[], $11::int8[], $12::int8[], $13::float8[], \
         $14::float8[], $15::float8[], $16::text[], $17::int8[], $18::text[], $19::text[], $20::bytea[], \
         $21::text[], $22::text[], $23::text[], $24::text[]) \
         ON CONFLICT DO NOTHING",
        pg_copy::INTERACTION_COLUMNS
    ))
    .bind(copied!(id))
    .bind(text!(tenant))
    .bind(copied!(created_at))
    .bind(text!(model))
    .bind(optional!(end_user))
    .bind(copied!(streamed))
    .bind(copied!(status))
    .bind(text!(outcome))
    .bind(optional!(finish_reason))
    .bind(copied!(prompt_tokens))
    .bind(copied!(completion_tokens))
    .bind(copied!(total_tokens))
    .bind(copied!(upstream_ms))
    .bind(copied!(total_ms))
    .bind(copied!(ttfb_ms))
    .bind(optional!(error))
    .bind(copied!(snapshot_version))
    .bind(optional!(cluster_id))
    .bind(optional!(path))
    .bind(optional!(conversation_hash))
    .bind(text!(request))
    .bind(optional!(response_text))
    .bind(optional!(draft))
    .bind(optional!(critique))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn upsert_feedback(
    tx: &mut Transaction<'_, Postgres>,
    row: &FeedbackRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO feedback (id, tenant_id, interaction_id, end_user, kind, rating, comment, expected_output, \
         source_interaction_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (id) DO UPDATE SET \
           rating = COALESCE(EXCLUDED.rating, feedback.rating), \
           comment = COALESCE(EXCLUDED.comment, feedback.comment), \
           expected_output = COALESCE(EXCLUDED.expected_output, feedback.expected_output), \
           updated_at = GREATEST(EXCLUDED.updated_at, feedback.updated_at)",
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
    .bind(row.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_follow_ups(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[&FollowUpRow],
) -> Result<(), StoreError> {
    macro_rules! column {
        ($field:ident) => {
            rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>()
        };
    }
    // Each follow-up becomes implicit feedback on the newest interaction of
    // its tenant whose conversation hash it continues; none if there is no
    // such interaction (never logged, or past retention).
    sqlx::query(
        "INSERT INTO feedback (id, tenant_id, interaction_id, end_user, kind, comment, source_interaction_id, \
         created_at, updated_at) \
         SELECT DISTINCT ON (f.id) f.id, f.tenant, i.id, f.end_user, 'implicit', f.text, f.source, f.at, f.at \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::timestamptz[], $7::bytea[]) \
           AS f(id, tenant, end_user, text, source, at, hash) \
         JOIN interactions i ON i.tenant_id = f.tenant AND i.conversation_hash = f.hash AND i.id <> f.source \
         ORDER BY f.id, i.created_at DESC \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(column!(feedback_id))
    .bind(column!(tenant))
    .bind(column!(end_user))
    .bind(column!(text))
    .bind(column!(source_interaction_id))
    .bind(column!(created_at))
    .bind(column!(parent_hash))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_without_sslmode as local;

    #[test]
    fn tls_is_skipped_only_for_this_host_without_an_explicit_sslmode() {
        assert!(local("postgres://u@127.0.0.1:5432/db"));
        assert!(local("postgres://u@localhost/db"));
        assert!(local("postgres://u@[::1]:5432/db"));
        assert!(local("postgres:///db?host=/var/run/postgresql"));
        assert!(!local("postgres://u@db.example.com/db"));
        assert!(!local("postgres://u@10.0.0.5/db"));
        assert!(!local("postgres://u@127.0.0.1/db?sslmode=require"));
        assert!(!local("postgres://u@localhost/db?sslmode=prefer"));
    }

    /// The COPY buffer outlives its batch and stays a chunk: a batch with
    /// a huge row (sent through `read_from`, several chunks) does not grow
    /// it, and all its rows arrive.
    #[tokio::test]
    async fn the_copy_buffer_is_kept_between_batches_and_stays_a_chunk_after_a_huge_row() {
        use super::{PgStore, pg_copy};
        use crate::rows::EncodedRows;
        use uno_testkit::{Backend, TestDatabase};

        let db = TestDatabase::new(Backend::Postgres).await;
        let store = PgStore::connect(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        let chunk = pg_copy::Payload::new().capacity();
        let huge = "x".repeat(8 * pg_copy::CHUNK_BYTES);
        let batch = |question: &str| {
            let mut rows = Vec::new();
            for _ in 0..3 {
                let record = uno_testkit::records::ask("t", "u", question, "answer");
                EncodedRows::build(record).push_into(&mut rows);
            }
            rows
        };
        store.write_rows(&batch(&huge)).await.unwrap();
        let kept = store.take_payload();
        assert!(
            kept.capacity() <= chunk,
            "{} bytes kept after a batch with a huge row; a fresh buffer has {chunk}",
            kept.capacity()
        );
        store.keep_payload(kept);
        store.write_rows(&batch("small")).await.unwrap();
        assert!(
            store.spare_payload.lock().unwrap().is_some(),
            "the buffer is kept for the next batch"
        );
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM interactions")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(rows, 6);
        let huge_body = uno_testkit::records::ask("t", "u", &huge, "answer").request_body;
        let stored: Vec<i32> = sqlx::query_scalar(
            "SELECT octet_length(request) FROM interactions ORDER BY 1 DESC LIMIT 3",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            stored,
            vec![i32::try_from(huge_body.len()).unwrap(); 3],
            "every huge request arrives whole"
        );
        store.close().await;
    }
}
