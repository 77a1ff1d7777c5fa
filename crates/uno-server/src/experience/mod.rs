//! Applying learned experience to requests (method §6.2): the tenant's
//! active snapshot in memory ([`active`]), made ready for routing
//! ([`loaded`]), the per-request decision ([`route`]), the body rewrites
//! ([`rewrite`]) and the reflective module's three calls ([`reflective`]).
//! The chat route composes them; nothing here touches the database on the
//! request path.

pub mod active;
pub mod explain;
pub mod loaded;
pub mod reflective;
pub mod rewrite;
pub mod route;

use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use http::HeaderValue;
use uno_core::config::LearnConfig;
use uno_core::interaction::ServePath;

pub use active::{ActiveSnapshots, spawn_snapshot_refresh};
pub use route::{LEARNING_HEADER, ServingPolicy};

pub use crate::proxy::headers::{CLUSTER_HEADER, PATH_HEADER, SNAPSHOT_HEADER};

/// The request path's view of learned experience.
#[derive(Debug)]
pub struct Experience {
    /// Every tenant's active snapshot.
    pub snapshots: Arc<ActiveSnapshots>,
    /// Holdout, switches and shadow mode.
    pub policy: ServingPolicy,
    /// The limit of each reflective step.
    pub step_timeout: Duration,
    /// `[learn]`, for the admin API's rebuild of a rule block (rule
    /// overrides) within the same budget the worker uses.
    pub learn: LearnConfig,
}

impl Experience {
    /// From `[learn]`; no snapshot is held until one is loaded.
    pub fn new(config: &LearnConfig) -> Experience {
        Experience {
            snapshots: Arc::default(),
            policy: ServingPolicy {
                holdout_percent: config.holdout_percent.min(100),
                disabled_tenants: config.disabled_tenants.clone(),
                shadow: config.shadow,
                route_tools: config.route_tools,
                route_response_format: config.route_response_format,
            },
            step_timeout: Duration::from_millis(config.reflective_step_timeout_ms.max(1)),
            learn: config.clone(),
        }
    }
}

/// The diagnostic headers of one response, worked out before serving so they
/// can go on whatever the serving produced (errors included).
#[derive(Debug, Clone, Default)]
pub struct Stamp {
    /// `x-uno-snapshot`.
    pub snapshot: Option<HeaderValue>,
    /// `x-uno-cluster`.
    pub cluster: Option<HeaderValue>,
    /// `x-uno-path`: the path that served the request.
    pub path: Option<ServePath>,
}

impl Stamp {
    /// Puts the headers on `response`.
    pub fn apply(&self, response: &mut Response) {
        let h = response.headers_mut();
        if let Some(v) = &self.snapshot {
            h.insert(SNAPSHOT_HEADER, v.clone());
        }
        if let Some(v) = &self.cluster {
            h.insert(CLUSTER_HEADER, v.clone());
        }
        if let Some(path) = self.path {
            h.insert(PATH_HEADER, HeaderValue::from_static(path.as_str()));
        }
    }
}
