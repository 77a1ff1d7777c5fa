//! The store: one API, two databases.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreError;
use crate::keys::{KeyInfo, NewKey};
use crate::portable::{on_pool, sql};
use crate::postgres::PgStore;
use crate::rows::LogRow;
use crate::sqlite::SqliteStore;

/// A connected store. Cheap to clone (both backends hold a pool).
#[derive(Debug, Clone)]
pub enum Store {
    /// Production: Postgres, partitioned by day.
    Postgres(PgStore),
    /// Embedded default: a SQLite file.
    Sqlite(SqliteStore),
}

/// How long to keep what. Zero keeps forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Days to keep interaction metadata and feedback.
    pub metadata_days: u32,
    /// Days to keep content (messages and answers); never longer than
    /// metadata in effect, since content without its interaction is removed.
    pub content_days: u32,
}

/// What a retention run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Interaction metadata rows removed.
    pub interactions: u64,
    /// Content rows removed.
    pub contents: u64,
    /// Feedback rows removed.
    pub feedback: u64,
    /// Postgres partitions dropped (always 0 on SQLite).
    pub partitions_dropped: u64,
}

/// What a deletion removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeletionReport {
    /// Interactions removed.
    pub interactions: u64,
    /// Content rows removed.
    pub contents: u64,
    /// Feedback rows removed.
    pub feedback: u64,
    /// API keys removed (tenant deletion only).
    pub api_keys: u64,
    /// Learning logs removed: the rules distilled from this data go with
    /// them, and the next snapshot is rebuilt without them.
    pub learn_logs: u64,
    /// Snapshots removed (tenant deletion only).
    pub snapshots: u64,
}

impl DeletionReport {
    /// The tables a tenant's deletion empties on SQLite (children before
    /// parents), each with the count it fills. Postgres deletes the same
    /// data with content counted from the interactions' rows (it has no
    /// table of its own there; see migration 0006).
    pub(crate) fn per_table(&mut self) -> [(&'static str, &mut u64); 4] {
        [
            ("feedback", &mut self.feedback),
            ("interaction_contents", &mut self.contents),
            ("interactions", &mut self.interactions),
            ("api_keys", &mut self.api_keys),
        ]
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who (`cli`, `admin-api`, `retention`, ...).
    pub actor: String,
    /// What (`delete_user`, `delete_tenant`, `retention`, `key_create`, ...).
    pub action: String,
    /// The tenant concerned, if any.
    pub tenant: Option<String>,
    /// The user or key concerned, if any.
    pub subject: Option<String>,
    /// Counts and parameters, as JSON.
    pub details: serde_json::Value,
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Postgres($s) => $call,
            Store::Sqlite($s) => $call,
        }
    };
}

impl Store {
    /// Connects to `url`: `postgres://…` or `sqlite:path` (the file is
    /// created if missing).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect(url).await?))
        } else if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect(url).await?))
        } else {
            Err(StoreError::Config(format!(
                "database url {:?} is neither postgres://… nor sqlite:…; set database.url or DATABASE_URL",
                redact_url(url)
            )))
        }
    }

    /// [`Store::connect`], except that a Postgres database is not reached
    /// until first used: `uno serve` starts so while the database is
    /// unreachable, and every use fails as unavailable until it is back.
    pub async fn connect_lazy(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect_lazy(url)?))
        } else {
            Store::connect(url).await
        }
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.ping().await,
            Store::Sqlite(_) => self.count_interactions(None).await.map(|_| ()),
        }
    }

    /// Which backend, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.migrate().await)
    }

    /// Writes a batch atomically. Idempotent: replaying rows already
    /// written changes nothing (interactions are keyed by id, feedback by its
    /// deterministic id).
    pub async fn write_rows(&self, rows: &[LogRow]) -> Result<(), StoreError> {
        dispatch!(self, s => s.write_rows(rows).await)
    }

    /// The tenant an interaction belongs to, if it has been written.
    pub async fn interaction_tenant(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        // The first owner: rows logged before ids were owned may name
        // several tenants for one id, and the earliest is the owner.
        let row: Option<(String,)> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT tenant_id FROM interactions WHERE id = $1 ORDER BY created_at LIMIT 1",
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(tenant,)| tenant))
    }

    /// Interactions stored, for one tenant or all.
    pub async fn count_interactions(&self, tenant: Option<&str>) -> Result<u64, StoreError> {
        let (n,): (i64,) = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT count(*) FROM interactions WHERE CAST($1 AS TEXT) IS NULL OR tenant_id = $1",
            ))
            .bind(tenant)
            .fetch_one(pool)
            .await?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Creates a key for `tenant` (and the tenant if new). The secret is in
    /// the result and nowhere else: only its hash is stored.
    pub async fn create_key(&self, tenant: &str, name: Option<&str>) -> Result<NewKey, StoreError> {
        self.create_key_by(tenant, name, "cli").await
    }

    /// [`Store::create_key`], audited as `actor` (`admin-api`, …).
    pub async fn create_key_by(
        &self,
        tenant: &str,
        name: Option<&str>,
        actor: &str,
    ) -> Result<NewKey, StoreError> {
        let new = crate::keys::generate(tenant, name);
        dispatch!(self, s => s.insert_key(&new).await)?;
        self.audit(
            actor,
            "key_create",
            Some(tenant),
            Some(&new.info.prefix),
            serde_json::json!({"key_id": new.info.id}),
        )
        .await?;
        Ok(new)
    }

    /// Keys, newest first, for one tenant or all.
    pub async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyInfo>, StoreError> {
        dispatch!(self, s => s.list_keys(tenant).await)
    }

    /// Revokes the key with this id or prefix. Returns how many were
    /// revoked (0 when none matched). A prefix shared by several active keys
    /// is refused rather than revoking them all.
    pub async fn revoke_key(&self, id_or_prefix: &str) -> Result<u64, StoreError> {
        self.revoke_key_by(id_or_prefix, "cli").await
    }

    /// [`Store::revoke_key`], audited as `actor`.
    pub async fn revoke_key_by(&self, id_or_prefix: &str, actor: &str) -> Result<u64, StoreError> {
        let matching = self
            .list_keys(None)
            .await?
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .filter(|k| k.prefix == id_or_prefix || k.id.to_string() == id_or_prefix)
            .count();
        if matching > 1 {
            return Err(StoreError::Rejected(format!(
                "{matching} active keys have the prefix {id_or_prefix:?}; revoke by key id instead (`uno keys list` shows ids)"
            )));
        }
        let revoked = dispatch!(self, s => s.revoke_key(id_or_prefix).await)?;
        if revoked > 0 {
            self.audit(
                actor,
                "key_revoke",
                None,
                Some(id_or_prefix),
                serde_json::json!({"revoked": revoked}),
            )
            .await?;
        }
        Ok(revoked)
    }

    /// Hashes of every key not revoked, with their tenants, for the
    /// server's in-memory key cache.
    pub async fn active_keys(&self) -> Result<Vec<([u8; 32], String)>, StoreError> {
        let rows: Vec<(Vec<u8>, String)> = on_pool!(self, |pool, _sqlite| {
            sqlx::query_as("SELECT key_hash, tenant_id FROM api_keys WHERE revoked_at IS NULL")
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(hash, tenant)| Some((hash.try_into().ok()?, tenant)))
            .collect())
    }

    /// Removes what is older than the policy allows, as of `now`.
    pub async fn apply_retention(
        &self,
        policy: RetentionPolicy,
        now: DateTime<Utc>,
    ) -> Result<RetentionReport, StoreError> {
        let report = dispatch!(self, s => s.apply_retention(policy, now).await)?;
        if report != RetentionReport::default() {
            self.audit(
                "retention",
                "retention",
                None,
                None,
                serde_json::json!({
                    "metadata_days": policy.metadata_days,
                    "content_days": policy.content_days,
                    "interactions": report.interactions,
                    "contents": report.contents,
                    "feedback": report.feedback,
                    "partitions_dropped": report.partitions_dropped,
                }),
            )
            .await?;
        }
        Ok(report)
    }

    /// Deletes everything about one end user of a tenant, and records it.
    pub async fn delete_user(
        &self,
        tenant: &str,
        user: &str,
        actor: &str,
    ) -> Result<DeletionReport, StoreError> {
        // Learning logs first: which ones the user contributed to is read
        // from the feedback the main deletion removes.
        let learn_logs = self.delete_user_learning(tenant, user).await?;
        let mut report = dispatch!(self, s => s.delete_user(tenant, user).await)?;
        report.learn_logs = learn_logs;
        self.audit(
            actor,
            "delete_user",
            Some(tenant),
            Some(user),
            report_json(&report),
        )
        .await?;
        Ok(report)
    }

    /// Deletes everything about a tenant, its keys included, and records it.
    pub async fn delete_tenant(
        &self,
        tenant: &str,
        actor: &str,
    ) -> Result<DeletionReport, StoreError> {
        let (learn_logs, snapshots) = self.delete_tenant_learning(tenant).await?;
        let mut report = dispatch!(self, s => s.delete_tenant(tenant).await)?;
        report.learn_logs = learn_logs;
        report.snapshots = snapshots;
        self.audit(
            actor,
            "delete_tenant",
            Some(tenant),
            None,
            report_json(&report),
        )
        .await?;
        Ok(report)
    }

    /// Appends to the audit log.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        tenant: Option<&str>,
        subject: Option<&str>,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.audit(actor, action, tenant, subject, &details).await)
    }

    /// The audit log, oldest first, for one tenant or all.
    pub async fn audit_entries(&self, tenant: Option<&str>) -> Result<Vec<AuditEntry>, StoreError> {
        dispatch!(self, s => s.audit_entries(tenant).await)
    }

    /// Rated interactions of a tenant, oldest first, for export.
    pub async fn rated_interactions(
        &self,
        tenant: &str,
    ) -> Result<Vec<crate::export::RatedInteraction>, StoreError> {
        dispatch!(self, s => s.rated_interactions(tenant).await)
    }

    /// Feedback rows of an interaction (for tests and the admin API).
    pub async fn feedback_for(
        &self,
        tenant: &str,
        interaction: Uuid,
    ) -> Result<Vec<crate::rows::FeedbackRow>, StoreError> {
        dispatch!(self, s => s.feedback_for(tenant, interaction).await)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}

fn report_json(report: &DeletionReport) -> serde_json::Value {
    serde_json::to_value(report).unwrap_or_default()
}

/// A database URL with any password hidden, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:****@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:uno.db"), "sqlite:uno.db");
    }
}
