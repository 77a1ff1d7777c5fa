//! The route handlers, one module per OpenAI resource.

pub mod chat;
pub mod embeddings;
mod forward;
pub mod misc;
pub mod models;
