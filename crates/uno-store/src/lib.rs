//! uno's persistence.
//!
//! One schema on two databases: Postgres for production and for many
//! replicas, SQLite (a file created on first start) so that `uno serve` runs
//! with no setup. [`Store`] is the single entry point; each backend module
//! holds its own SQL. The [`writer`] takes interaction records off the request
//! path, batches them into the store, and spills to an on-disk journal while
//! the database is unreachable.

pub mod admin;
mod copy_source;
mod error;
pub mod export;
pub mod import;
pub mod jobs;
pub mod keys;
pub mod learn;
pub mod lift;
mod pg_copy;
mod portable;
mod postgres;
pub mod rows;
pub mod snapshot_actions;
pub mod snapshots;
mod sqlite;
mod store;
mod supersede;
pub mod writer;

pub use error::StoreError;
pub use portable::{bytes_to_vec, vec_to_bytes};
pub use store::{AuditEntry, DeletionReport, RetentionPolicy, RetentionReport, Store, redact_url};
