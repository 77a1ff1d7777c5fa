//! A simulated community for measuring what uno learns (issue 23): users
//! with shared, checkable preferences per topic and tenant, noise and
//! adversaries, and a scripted instruction-following model that plays both
//! the upstream and the learner. `uno-bench --community` drives uno with it.

pub mod model;
pub mod props;
pub mod scenario;
pub mod text;

pub use model::{PromptKind, ScriptedModel, classify};
pub use props::{ALL, Property};
pub use scenario::{Community, Role, Sizes, TenantSpec, TestQuery, TrainEvent, generate};
pub use text::Rng;
