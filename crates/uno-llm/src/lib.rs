//! uno's client for OpenAI-compatible upstreams.
//!
//! One pooled HTTP client serves every configured upstream. It owns the
//! policies that must hold for every call: connect and read timeouts, and
//! retries with backoff on connect errors, 429 and 5xx, which happen before
//! the response is handed back, so by construction nothing has reached the
//! client yet when a retry is made.

mod body;
pub mod chat;
mod client;
pub mod embed;
mod error;
pub mod path;
mod upstream;

pub use body::{BodyError, collect_body, frame_with_timeout};
pub use chat::{ChatError, ChatModel, Message, Sampling};
pub use client::{UpstreamClient, UpstreamResponse};
#[cfg(feature = "local-embed")]
pub use embed::LocalEmbedder;
pub use embed::{
    DocumentFrequencies, EmbedError, Embedder, FeatureWeights, HashingEmbedder, UpstreamEmbedder,
    sparse_dot,
};
pub use error::UpstreamError;
pub use path::{PathSegment, SegmentError};
pub use upstream::{Endpoint, InvalidUpstream, Upstream};
