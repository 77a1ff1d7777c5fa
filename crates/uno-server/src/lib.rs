//! uno's HTTP side: the OpenAI-compatible routes and the request path.
//!
//! The request path reads top to bottom in [`routes`]: the context layer
//! (interaction id, authentication, span) wraps every `/v1` route; each route
//! validates what it needs from the body, forwards the client's original bytes
//! upstream, relays the answer as it arrives, and hands a record of the
//! exchange to an [`InteractionSink`](uno_core::interaction::InteractionSink)
//! without waiting on it.
//!
//! Layout: `app` is the state every handler reads and `router` the table
//! that composes them; `routes` the `/v1` handlers; `proxy` the
//! per-request pieces handlers and `experience` share; `experience` what
//! was learned, applied on the request path; `admin`, `metrics`, `ui` the
//! operator's side. What it must not do: wait on the database on the
//! request path, import a handler from `proxy` or `experience`, or hold
//! learning logic of its own (the worker's is `uno-learn`'s).

pub mod admin;
pub mod app;
pub mod auth;
pub mod connection;
pub mod experience;
pub mod metrics;
mod ownership;
mod proxy;
pub mod recent;
mod router;
pub mod routes;
pub mod serve;
pub mod sink;
pub mod ui;

pub use app::{AppState, Persistence};
pub use recent::RecentInteractions;
pub use router::build_router;
pub use serve::{BoundServer, shutdown_signal};
