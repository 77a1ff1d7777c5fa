//! Store failures, split by what the caller should do about them.

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the connection broke: retry
    /// later (the log writer journals meanwhile).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused the data or the statement: retrying the same
    /// thing will fail the same way.
    #[error("database rejected the operation: {0}")]
    Rejected(String),
    /// Migrations could not be applied.
    #[error("migrations failed: {0}")]
    Migration(String),
    /// The database URL is not one uno understands.
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// Whether the failure is about reaching the database (as opposed to
    /// the data), so the same batch may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &err {
            E::Io(_)
            | E::Tls(_)
            | E::PoolTimedOut
            | E::PoolClosed
            | E::WorkerCrashed
            | E::Protocol(_) => StoreError::Unavailable(err.to_string()),
            E::Database(db) => {
                // Postgres class 08 (connection exception), 53 (insufficient
                // resources), 57 (operator intervention, e.g. shutdown) are
                // about availability, not the data.
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                if code.starts_with("08") || code.starts_with("53") || code.starts_with("57") {
                    StoreError::Unavailable(err.to_string())
                } else if code == "5" || code == "6" {
                    // SQLITE_BUSY / SQLITE_LOCKED: another writer holds the lock.
                    StoreError::Unavailable(err.to_string())
                } else {
                    StoreError::Rejected(err.to_string())
                }
            }
            _ => StoreError::Rejected(err.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(err.to_string())
    }
}
