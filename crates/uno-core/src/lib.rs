//! uno's shared vocabulary: the OpenAI wire views the proxy validates requests
//! with, the OpenAI-shaped error, interaction records, configuration, and the
//! pure algorithms later stages build on.
//!
//! This crate does no I/O and depends on neither tokio nor a database driver,
//! so everything in it can be unit-tested in isolation and reused by the
//! server, the worker and the tools alike.

pub mod bleu;
pub mod cluster;
mod completion_scan;
pub mod config;
pub mod conversation;
pub mod digest;
pub mod error;
pub mod feedback;
pub mod ids;
pub mod interaction;
pub mod json;
pub mod log_text;
pub mod metrics;
pub mod query;
pub mod snapshot;
pub mod sse;
pub mod wire;

pub use error::{ApiError, ErrorKind};
pub use ids::InteractionId;
