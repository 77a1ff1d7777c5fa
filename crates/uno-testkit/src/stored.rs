//! What a test database holds for one interaction id, read with plain SQL
//! (not through the store under test), so tests of how uno writes rows do
//! not trust uno's own reads.

use uuid::Uuid;

use crate::db::{Backend, TestDatabase};

/// One stored row of an interaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttempt {
    /// The tenant the row names.
    pub tenant: String,
    /// The request body logged (`None` when its content is gone).
    pub request: Option<String>,
    /// The answer text logged.
    pub response_text: Option<String>,
}

fn fail(what: &str, err: impl std::fmt::Display) -> ! {
    panic!("cannot read the test database ({what}): {err}")
}

impl TestDatabase {
    /// How many interaction rows each stored id has: a fault test's
    /// account of what was written (missing ids, duplicates), in one query.
    ///
    /// # Panics
    ///
    /// When the database cannot be read.
    pub async fn interaction_counts(&self) -> std::collections::HashMap<Uuid, i64> {
        // The same SQL on both backends; only the pool type differs.
        const SQL: &str = "SELECT id, count(*) FROM interactions GROUP BY id";
        let rows: Vec<(Uuid, i64)> = match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| fail("connect", e));
                let rows = sqlx::query_as(SQL).fetch_all(&pool).await;
                pool.close().await;
                rows
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| fail("connect", e));
                let rows = sqlx::query_as(SQL).fetch_all(&pool).await;
                pool.close().await;
                rows
            }
        }
        .unwrap_or_else(|e| fail("interactions", e));
        rows.into_iter().collect()
    }

    /// Every row stored under interaction `id`, oldest first.
    ///
    /// # Panics
    ///
    /// When the database cannot be read.
    pub async fn attempts(&self, id: Uuid) -> Vec<StoredAttempt> {
        type Row = (String, Option<String>, Option<String>);
        let rows: Vec<Row> = match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| fail("connect", e));
                let rows = sqlx::query_as(
                    "SELECT tenant_id, request, response_text FROM interactions \
                     WHERE id = $1 ORDER BY created_at",
                )
                .bind(id)
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| fail("interactions", e));
                pool.close().await;
                rows
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| fail("connect", e));
                let rows = sqlx::query_as(
                    "SELECT i.tenant_id, c.request, c.response_text FROM interactions i \
                     LEFT JOIN interaction_contents c \
                       ON c.interaction_id = i.id AND c.created_at = i.created_at \
                     WHERE i.id = ? ORDER BY i.created_at",
                )
                .bind(id)
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| fail("interactions", e));
                pool.close().await;
                rows
            }
        };
        rows.into_iter()
            .map(|(tenant, request, response_text)| StoredAttempt {
                tenant,
                request,
                response_text,
            })
            .collect()
    }

    /// The rows of interaction `id` once `done` holds of them (the log
    /// writer stores asynchronously), waiting 10 s at most.
    ///
    /// # Panics
    ///
    /// When the rows never satisfy `done`, or the database cannot be read.
    pub async fn attempts_when(
        &self,
        id: Uuid,
        done: impl Fn(&[StoredAttempt]) -> bool,
    ) -> Vec<StoredAttempt> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let rows = self.attempts(id).await;
            if done(&rows) {
                return rows;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never stored as expected: {rows:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// [`Self::attempts_when`] for an id as a client sends it.
    ///
    /// # Panics
    ///
    /// When `id` is not a UUID, or as [`Self::attempts_when`] does.
    pub async fn attempts_of(
        &self,
        id: &str,
        done: impl Fn(&[StoredAttempt]) -> bool,
    ) -> Vec<StoredAttempt> {
        self.attempts_when(Uuid::parse_str(id).expect("a UUID"), done)
            .await
    }

    /// How many stored contents (request texts) interaction `id` has: on
    /// SQLite they are rows of their own, which must go with their
    /// interaction's row.
    ///
    /// # Panics
    ///
    /// When the database cannot be read.
    pub async fn contents_of(&self, id: Uuid) -> i64 {
        match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| fail("connect", e));
                let n = sqlx::query_scalar("SELECT count(request) FROM interactions WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap_or_else(|e| fail("contents", e));
                pool.close().await;
                n
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| fail("connect", e));
                let n = sqlx::query_scalar(
                    "SELECT count(*) FROM interaction_contents WHERE interaction_id = ?",
                )
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| fail("contents", e));
                pool.close().await;
                n
            }
        }
    }
}
