//! The route handlers, one module per OpenAI resource.

pub mod chat;
pub mod embeddings;
pub mod feedback;
pub(crate) mod forward;
pub mod misc;
pub mod models;
