//! Published snapshots: immutable versions per tenant and which one is
//! active.
//!
//! Publishing inserts the next version and points `active_snapshots` at it
//! in one transaction, so a proxy polling the active version sees the old
//! snapshot or the new one, never a half-written one. On Postgres it also
//! sends `NOTIFY uno_snapshot` with `tenant:version`, so proxies listening
//! can reload at once instead of at their next poll.

use uno_core::snapshot::Snapshot;
use uuid::Uuid;

use crate::Store;
use crate::error::StoreError;
use crate::portable::{begin_write, join_contents, now_micros, on_pool, sql};

/// The Postgres channel publication and activation notify.
pub const SNAPSHOT_CHANNEL: &str = "uno_snapshot";

/// A version's summary, for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    /// Tenant.
    pub tenant: String,
    /// Version.
    pub version: i64,
    /// Publication time, Unix microseconds.
    pub created_at: i64,
    /// Embedder its vectors come from.
    pub embedder_id: String,
    /// Content digest.
    pub digest: String,
    /// What produced it (`worker`, `rollback of 3`, …).
    pub note: String,
    /// Whether it is the tenant's active version.
    pub active: bool,
}

/// How an interaction was served, from its log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    /// Tenant.
    pub tenant: String,
    /// The tenant's active snapshot version when it was served.
    pub snapshot_version: Option<i64>,
    /// The cluster it was routed to.
    pub cluster_id: Option<String>,
    /// `passthrough`, `primary`, `reflective`, `holdout` or `shadow:…`.
    pub path: Option<String>,
    /// The reflective module's draft, when it made one.
    pub draft: Option<String>,
    /// The reflective module's critique, when it made one.
    pub critique: Option<String>,
}

/// Notifications of snapshot activations (Postgres `LISTEN`).
#[derive(Debug)]
pub struct SnapshotListener {
    listener: sqlx::postgres::PgListener,
}

/// What a [`SnapshotListener`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotEvent {
    /// A tenant activated a version.
    Activated {
        /// Tenant.
        tenant: String,
        /// Version, when the payload carried a readable one.
        version: Option<i64>,
    },
    /// The connection was lost and re-opened: notifications may have been
    /// missed, so the listener's owner should re-read every version.
    Reconnected,
}

impl SnapshotListener {
    /// Waits for the next event. Errors when the database cannot be reached
    /// (the next call tries to reconnect).
    pub async fn recv(&mut self) -> Result<SnapshotEvent, StoreError> {
        match self.listener.try_recv().await? {
            Some(notification) => {
                let payload = notification.payload();
                let (tenant, version) = match payload.rsplit_once(':') {
                    Some((tenant, version)) => (tenant, version.parse().ok()),
                    None => (payload, None),
                };
                Ok(SnapshotEvent::Activated {
                    tenant: tenant.to_owned(),
                    version,
                })
            }
            None => Ok(SnapshotEvent::Reconnected),
        }
    }
}

impl Store {
    /// Publishes `snapshot` as the tenant's next version and activates it.
    /// Returns the new version, or `None` when its content is identical to
    /// the tenant's latest version (nothing is written then).
    pub async fn publish_snapshot(
        &self,
        snapshot: &Snapshot,
        note: &str,
    ) -> Result<Option<i64>, StoreError> {
        let digest = snapshot.digest();
        let now = now_micros();
        let tenant = snapshot.tenant.as_str();
        let version = on_pool!(self, |pool, sqlite| {
            let mut tx = begin_write!(pool, sqlite);
            let latest: Option<(i64, String)> = sqlx::query_as(&sql(
                sqlite,
                "SELECT version, digest FROM snapshots WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1",
            ))
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
            if latest.as_ref().is_some_and(|(_, d)| *d == digest) {
                return Ok(None);
            }
            let version = latest.map_or(1, |(v, _)| v + 1);
            let mut stored = snapshot.clone();
            stored.version = version;
            stored.created_at = now;
            let content = serde_json::to_string(&stored).map_err(|err| {
                StoreError::Rejected(format!("snapshot does not serialise: {err}"))
            })?;
            sqlx::query(&sql(
                sqlite,
                "INSERT INTO snapshots (tenant_id, version, created_at, embedder_id, digest, note, content) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            ))
            .bind(tenant)
            .bind(version)
            .bind(now)
            .bind(&snapshot.embedder_id)
            .bind(&digest)
            .bind(note)
            .bind(content)
            .execute(&mut *tx)
            .await?;
            activate_in(&mut tx, sqlite, tenant, version, now).await?;
            tx.commit().await?;
            version
        });
        Ok(Some(version))
    }

    /// Makes an existing version the active one. Errors when the tenant has
    /// no such version.
    pub async fn activate_snapshot(&self, tenant: &str, version: i64) -> Result<(), StoreError> {
        let now = now_micros();
        on_pool!(self, |pool, sqlite| {
            let mut tx = begin_write!(pool, sqlite);
            let exists: Option<(i64,)> = sqlx::query_as(&sql(
                sqlite,
                "SELECT version FROM snapshots WHERE tenant_id = $1 AND version = $2",
            ))
            .bind(tenant)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(StoreError::Rejected(format!(
                    "tenant {tenant:?} has no snapshot version {version}; `uno snapshot list --tenant {tenant}` shows the versions"
                )));
            }
            activate_in(&mut tx, sqlite, tenant, version, now).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Activates the version before the active one. Returns it, or an error
    /// when there is none.
    pub async fn rollback_snapshot(&self, tenant: &str) -> Result<i64, StoreError> {
        let active = self.active_snapshot_version(tenant).await?.ok_or_else(|| {
            StoreError::Rejected(format!(
                "tenant {tenant:?} has no active snapshot to roll back"
            ))
        })?;
        let previous: Option<(i64,)> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT version FROM snapshots WHERE tenant_id = $1 AND version < $2 \
                 ORDER BY version DESC LIMIT 1",
            ))
            .bind(tenant)
            .bind(active)
            .fetch_optional(pool)
            .await?
        });
        let (previous,) = previous.ok_or_else(|| {
            StoreError::Rejected(format!(
                "tenant {tenant:?}: version {active} is the oldest; nothing to roll back to"
            ))
        })?;
        self.activate_snapshot(tenant, previous).await?;
        Ok(previous)
    }

    /// The tenant's active version, if any.
    pub async fn active_snapshot_version(&self, tenant: &str) -> Result<Option<i64>, StoreError> {
        let row: Option<(i64,)> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT version FROM active_snapshots WHERE tenant_id = $1",
            ))
            .bind(tenant)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(v,)| v))
    }

    /// One version's content; the active one when `version` is `None`.
    pub async fn snapshot(
        &self,
        tenant: &str,
        version: Option<i64>,
    ) -> Result<Option<Snapshot>, StoreError> {
        let version = match version {
            Some(v) => v,
            None => match self.active_snapshot_version(tenant).await? {
                Some(v) => v,
                None => return Ok(None),
            },
        };
        let row: Option<(String,)> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT content FROM snapshots WHERE tenant_id = $1 AND version = $2",
            ))
            .bind(tenant)
            .bind(version)
            .fetch_optional(pool)
            .await?
        });
        row.map(|(content,)| {
            serde_json::from_str(&content).map_err(|err| {
                StoreError::Rejected(format!(
                    "snapshot {tenant}/{version} does not parse as this uno's snapshot format: {err}"
                ))
            })
        })
        .transpose()
    }

    /// Every active snapshot (what a proxy loads at start).
    pub async fn active_snapshots(&self) -> Result<Vec<Snapshot>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT s.content FROM snapshots s JOIN active_snapshots a \
                 ON a.tenant_id = s.tenant_id AND a.version = s.version ORDER BY s.tenant_id",
            ))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(content,)| {
                serde_json::from_str(&content).map_err(|err| {
                    StoreError::Rejected(format!("an active snapshot does not parse: {err}"))
                })
            })
            .collect()
    }

    /// Every tenant's active version: what a proxy compares with the
    /// versions it holds, so that it loads a snapshot's content (which can
    /// be large) only when the version changed.
    pub async fn active_snapshot_versions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT tenant_id, version FROM active_snapshots ORDER BY tenant_id",
            ))
            .fetch_all(pool)
            .await?
        }))
    }

    /// A listener for snapshot activations, on Postgres (`None` on SQLite,
    /// where proxies poll). It holds a connection of its own, outside the
    /// store's pool, so listening takes nothing from the log writer.
    pub async fn snapshot_listener(&self) -> Result<Option<SnapshotListener>, StoreError> {
        match self {
            Store::Postgres(s) => {
                let own = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(std::time::Duration::from_secs(3))
                    .connect_lazy_with((*s.pool().connect_options()).clone());
                let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
                listener.listen(SNAPSHOT_CHANNEL).await?;
                Ok(Some(SnapshotListener { listener }))
            }
            Store::Sqlite(_) => Ok(None),
        }
    }

    /// Which snapshot, cluster and path served an interaction, as logged,
    /// with the reflective module's draft and critique.
    pub async fn served_by(&self, interaction: Uuid) -> Result<Option<ServedBy>, StoreError> {
        type Row = (
            String,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let row: Option<Row> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                &format!(
                    "SELECT i.tenant_id, i.snapshot_version, i.cluster_id, i.path, c.draft, c.critique \
                     FROM interactions i {} WHERE i.id = $1",
                    join_contents(sqlite, false)
                ),
            ))
            .bind(interaction)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(
            |(tenant, snapshot_version, cluster_id, path, draft, critique)| ServedBy {
                tenant,
                snapshot_version,
                cluster_id,
                path,
                draft,
                critique,
            },
        ))
    }

    /// Versions of one tenant (or all), newest first.
    pub async fn list_snapshots(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<SnapshotInfo>, StoreError> {
        type Row = (String, i64, i64, String, String, String, Option<i64>);
        let rows: Vec<Row> = on_pool!(self, |pool, sqlite| {
            sqlx::query_as(&sql(
                sqlite,
                "SELECT s.tenant_id, s.version, s.created_at, s.embedder_id, s.digest, s.note, a.version \
                 FROM snapshots s LEFT JOIN active_snapshots a \
                 ON a.tenant_id = s.tenant_id AND a.version = s.version \
                 WHERE ($1 IS NULL OR s.tenant_id = $1) ORDER BY s.tenant_id, s.version DESC",
            ))
            .bind(tenant)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(tenant, version, created_at, embedder_id, digest, note, active)| SnapshotInfo {
                    tenant,
                    version,
                    created_at,
                    embedder_id,
                    digest,
                    note,
                    active: active.is_some(),
                },
            )
            .collect())
    }
}

async fn activate_in<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    sqlite: bool,
    tenant: &str,
    version: i64,
    now: i64,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'e> &'e mut <DB as sqlx::Database>::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query::<DB>(&sql(
        sqlite,
        "INSERT INTO active_snapshots (tenant_id, version, activated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id) DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at",
    ))
    .bind(tenant)
    .bind(version)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if !sqlite {
        sqlx::query::<DB>("SELECT pg_notify($1, $2)")
            .bind(SNAPSHOT_CHANNEL)
            .bind(format!("{tenant}:{version}").as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
