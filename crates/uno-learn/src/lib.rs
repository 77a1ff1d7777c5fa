//! uno's learning worker: the UNO pipeline from logged feedback to
//! validated, published experience (`uno-method.md` §2 and §6).
//!
//! - [`source`]: a stored interaction and its text feedback become a
//!   learning log;
//! - [`stages`]: the per-log stages (distil R_f and R_0, embed, novelty);
//! - [`build`]: clustering, cognitive gap, the member split, rule
//!   consolidation with provenance and support, the mode decision;
//! - [`rules`]: one topic, one voice: paraphrases grouped by meaning
//!   (one cached LLM call per cluster), support as a share of the
//!   region's users net of contradicting feedback, promotions held for
//!   approval;
//! - [`validate`]: the held-out validation gate (judge, BLEU and length
//!   guards, win rate);
//! - [`lift`]: the online check of served traffic, treated against
//!   holdout, that withdraws a treatment users rate worse;
//! - [`overrides`]: operators' rule approvals and disables, applied at
//!   every rebuild and to a published snapshot;
//! - [`worker`]: scheduling, leases and publishing.

pub mod build;
mod content_key;
pub mod lift;
pub mod metrics;
pub mod overrides;
pub mod prompts;
pub mod route_weights;
pub mod rules;
pub mod source;
pub mod stages;
pub mod validate;
pub mod worker;

pub use metrics::WorkerMetrics;
pub use worker::{LogProgress, Progress, RunReport, Worker, WorkerError};
