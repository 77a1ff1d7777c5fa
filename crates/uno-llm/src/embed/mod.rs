//! Text embedders for uno's learning worker.
//!
//! UNO clusters logs and routes queries by embedding similarity (design
//! §2.5, §6.1). The worker picks its embedder from configuration at run
//! time, so [`Embedder`] is object-safe and used as `Arc<dyn Embedder>`:
//!
//! * [`HashingEmbedder`]: deterministic feature hashing, no model, for tests
//!   (and as a last-resort fallback);
//! * [`UpstreamEmbedder`]: an OpenAI-compatible `POST {base}/embeddings`
//!   (e.g. vLLM serving Qwen3-Embedding-0.6B, the paper's model);
//! * `LocalEmbedder` (cargo feature `local-embed`): a sentence-transformers
//!   BERT model such as all-MiniLM-L6-v2 run on the CPU with candle, loaded
//!   from a directory only (never from the network).
//!
//! Every embedder returns one L2-normalised vector per input text, in input
//! order, each of length [`Embedder::dim`].

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::UpstreamError;

mod hashing;
#[cfg(feature = "local-embed")]
mod local;
mod upstream;

pub use hashing::{DocumentFrequencies, FeatureWeights, HashingEmbedder, idf, sparse_dot};
#[cfg(feature = "local-embed")]
pub use local::LocalEmbedder;
pub use upstream::{UpstreamEmbedder, UpstreamEmbedderBuilder};

/// What [`Embedder::embed`] returns: boxed so the trait stays object-safe
/// and the worker can hold any embedder as `Arc<dyn Embedder>`.
pub type EmbedFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send + 'a>>;

/// Turns texts into unit-length vectors, so that the worker can cluster and
/// route by Euclidean distance / cosine similarity whatever the backend.
pub trait Embedder: Send + Sync {
    /// A stable identifier of the model and its output size, e.g.
    /// `local:all-MiniLM-L6-v2:384`. Stored next to every vector so vectors
    /// from different embedders are never compared, and so a change of
    /// embedder triggers re-embedding and re-clustering.
    fn id(&self) -> &str;

    /// Length of every vector this embedder returns.
    fn dim(&self) -> usize;

    /// Embeds `texts`: one L2-normalised vector of length [`Embedder::dim`]
    /// per text, in the same order. An empty slice gives an empty result
    /// without any work. Empty strings are allowed by the hashing and local
    /// embedders; some upstreams (OpenAI's) reject them.
    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a>;
}

impl<E: Embedder + ?Sized> Embedder for Arc<E> {
    fn id(&self) -> &str {
        (**self).id()
    }

    fn dim(&self) -> usize {
        (**self).dim()
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        (**self).embed(texts)
    }
}

impl<E: Embedder + ?Sized> Embedder for Box<E> {
    fn id(&self) -> &str {
        (**self).id()
    }

    fn dim(&self) -> usize {
        (**self).dim()
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        (**self).embed(texts)
    }
}

/// Why texts could not be embedded. Each variant says what to check, since
/// the worker only logs these and retries later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// The embedder was configured with impossible settings.
    #[error("invalid embedder configuration: {0}")]
    InvalidConfig(String),
    /// The upstream could not be reached or broke the connection.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream answered with an error status.
    #[error(
        "upstream {upstream:?} answered {status} to POST /embeddings (model {model:?}): {message}"
    )]
    Status {
        /// The upstream's configured name.
        upstream: Arc<str>,
        /// The model asked for.
        model: String,
        /// The HTTP status code.
        status: u16,
        /// The upstream's error message, or the start of its body.
        message: String,
    },
    /// The upstream's response could not be read or is not a valid
    /// embeddings response for the request.
    #[error("upstream {upstream:?} sent an unusable embeddings response: {detail}")]
    Malformed {
        /// The upstream's configured name.
        upstream: Arc<str>,
        /// What was wrong.
        detail: String,
    },
    /// A vector came back with a different length than the embedder
    /// declares; mixing lengths would corrupt clustering.
    #[error("embedder {embedder} produced a {got}-d vector, expected {expected}-d")]
    Dimension {
        /// The embedder's id.
        embedder: String,
        /// The declared dimension.
        expected: usize,
        /// The dimension received.
        got: usize,
    },
    /// A local model directory could not be loaded.
    #[error("cannot load the embedding model in {}: {detail}", path.display())]
    Load {
        /// The model directory.
        path: PathBuf,
        /// What was missing or wrong.
        detail: String,
    },
    /// A local model failed while computing embeddings.
    #[error("embedding model {embedder} failed: {detail}")]
    Inference {
        /// The embedder's id.
        embedder: String,
        /// The underlying error.
        detail: String,
    },
}

/// Scales `v` to unit length in place; a zero (or non-finite) vector is left
/// as it is and `false` returned, so callers can decide what it means.
pub fn l2_normalize(v: &mut [f32]) -> bool {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 && norm.is_finite() {
        let inv = (1.0 / norm) as f32;
        v.iter_mut().for_each(|x| *x *= inv);
        true
    } else {
        false
    }
}

/// Cosine similarity of two vectors (their dot product when both are unit
/// length, as every [`Embedder`] returns); 0 when either is zero or the
/// lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na.sqrt() * nb.sqrt())) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_and_cosine() {
        let mut v = vec![3.0, 4.0];
        assert!(l2_normalize(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut zero = vec![0.0; 3];
        assert!(!l2_normalize(&mut zero));
        assert_eq!(zero, vec![0.0; 3]);
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
