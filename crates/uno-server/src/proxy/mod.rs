//! The per-request pieces of the proxy path, which the HTTP handlers
//! (`routes`) and the experience layer (`experience`) both build on and
//! neither owns: the request's context and body, the headers that travel,
//! the interaction waiting to be logged, the streaming relay, the whole
//! answer, and the client's error replies. Nothing here imports a handler
//! or the experience layer.

pub(crate) mod body;
pub(crate) mod context;
pub(crate) mod headers;
pub(crate) mod pending;
pub(crate) mod relay;
pub(crate) mod reply;
pub(crate) mod whole;
