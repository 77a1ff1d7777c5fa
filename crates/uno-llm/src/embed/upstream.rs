//! Embeddings from an OpenAI-compatible `POST {base}/embeddings`.

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde::Deserialize;
use serde_json::Value;

use super::{EmbedError, EmbedFuture, Embedder, l2_normalize};
use crate::body::{BodyError, collect_body};
use crate::client::UpstreamClient;
use crate::upstream::{Endpoint, Upstream};

/// Inputs per request unless configured: OpenAI accepts up to 2048, but
/// self-hosted servers batch on the GPU and smaller requests keep each call
/// well under the read timeout.
const DEFAULT_BATCH_SIZE: usize = 64;

/// How much of a non-JSON error body is quoted in an error.
const MAX_QUOTED_BODY: usize = 500;

/// The text embedded to learn an upstream model's dimension.
const PROBE_TEXT: &str = "dimension probe";

/// Embeds through an upstream's `/embeddings` endpoint, in batches, using
/// uno's pooled [`UpstreamClient`] (so its timeouts and retries apply).
///
/// Batches are sent one after another, not concurrently: this runs in the
/// background worker and should not compete with the request path for the
/// upstream. Results are put back in input order by each item's `index`, and
/// re-normalised, since not every server returns unit vectors.
#[derive(Debug, Clone)]
pub struct UpstreamEmbedder {
    client: UpstreamClient,
    /// Position of the chosen upstream in `client.upstreams()`.
    upstream: usize,
    model: String,
    dim: usize,
    send_dimensions: bool,
    batch_size: usize,
    id: String,
}

/// Settings for an [`UpstreamEmbedder`], so that optional ones can be left
/// out; finish with [`UpstreamEmbedderBuilder::build`] (dimension known) or
/// [`UpstreamEmbedderBuilder::probe`] (asks the upstream).
#[derive(Debug, Clone)]
pub struct UpstreamEmbedderBuilder {
    client: UpstreamClient,
    model: String,
    upstream: Option<String>,
    dim: Option<usize>,
    send_dimensions: bool,
    batch_size: usize,
}

impl UpstreamEmbedder {
    /// Starts configuring an embedder for `model` on one of `client`'s
    /// upstreams.
    pub fn builder(client: UpstreamClient, model: impl Into<String>) -> UpstreamEmbedderBuilder {
        UpstreamEmbedderBuilder {
            client,
            model: model.into(),
            upstream: None,
            dim: None,
            send_dimensions: false,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    /// The model name sent upstream.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Inputs sent per request.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn upstream(&self) -> Result<&Upstream, EmbedError> {
        self.client.upstreams().get(self.upstream).ok_or_else(|| {
            EmbedError::InvalidConfig("the embeddings upstream disappeared".to_owned())
        })
    }

    async fn embed_all(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            let vectors = self.embed_batch(batch).await?;
            for v in &vectors {
                if v.len() != self.dim {
                    return Err(EmbedError::Dimension {
                        embedder: self.id.clone(),
                        expected: self.dim,
                        got: v.len(),
                    });
                }
            }
            out.extend(vectors);
        }
        Ok(out)
    }

    /// One request; vectors in input order, normalised, of any length.
    async fn embed_batch(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let upstream = self.upstream()?;
        let mut request = serde_json::json!({"model": self.model, "input": batch});
        if self.send_dimensions {
            request["dimensions"] = Value::from(self.dim);
        }
        let body = Bytes::from(request.to_string());
        let response = self
            .client
            .send(
                upstream,
                Method::POST,
                upstream.endpoint(Endpoint::Embeddings),
                &HeaderMap::new(),
                body,
            )
            .await?;
        let status = response.response.status();
        let bytes = collect_body(response.response.into_body(), self.client.read_timeout())
            .await
            .map_err(|err| EmbedError::Malformed {
                upstream: upstream.name().clone(),
                detail: match err {
                    BodyError::Timeout => format!(
                        "the body stalled for longer than the read timeout ({:?})",
                        self.client.read_timeout()
                    ),
                    BodyError::Broken(detail) => format!("the body broke off: {detail}"),
                },
            })?;
        if !status.is_success() {
            return Err(EmbedError::Status {
                upstream: upstream.name().clone(),
                model: self.model.clone(),
                status: status.as_u16(),
                message: error_message(&bytes),
            });
        }
        parse_response(&bytes, batch.len()).map_err(|detail| EmbedError::Malformed {
            upstream: upstream.name().clone(),
            detail,
        })
    }
}

impl UpstreamEmbedderBuilder {
    /// Sends to the upstream with this configured name, instead of the one
    /// that serves the model (see [`UpstreamClient::select`]).
    pub fn upstream(mut self, name: impl Into<String>) -> Self {
        self.upstream = Some(name.into());
        self
    }

    /// The model's output dimension, checked on every response.
    pub fn dim(mut self, dim: usize) -> Self {
        self.dim = Some(dim);
        self
    }

    /// Also send `"dimensions": dim` in each request, for models that can
    /// shorten their output (OpenAI's text-embedding-3, Matryoshka models);
    /// off by default because other servers reject the field.
    pub fn send_dimensions(mut self, send: bool) -> Self {
        self.send_dimensions = send;
        self
    }

    /// Inputs per request (default 64); must be at least 1.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Builds the embedder without contacting the upstream; the dimension
    /// must have been given with [`UpstreamEmbedderBuilder::dim`].
    pub fn build(self) -> Result<UpstreamEmbedder, EmbedError> {
        let Some(dim) = self.dim else {
            return Err(EmbedError::InvalidConfig(format!(
                "the dimension of embedding model {:?} is not configured; set it, or probe the upstream",
                self.model
            )));
        };
        self.finish(dim)
    }

    /// Builds the embedder, asking the upstream for one embedding to learn
    /// the dimension when none was configured.
    pub async fn probe(self) -> Result<UpstreamEmbedder, EmbedError> {
        if let Some(dim) = self.dim {
            return self.finish(dim);
        }
        if self.send_dimensions {
            return Err(EmbedError::InvalidConfig(
                "send_dimensions needs a configured dimension".to_owned(),
            ));
        }
        // Any dimension will do for the probe: it is not checked there.
        let mut embedder = self.finish(1)?;
        let vectors = embedder.embed_batch(&[PROBE_TEXT.to_owned()]).await?;
        let dim = vectors.first().map_or(0, Vec::len);
        if dim == 0 {
            return Err(EmbedError::Malformed {
                upstream: embedder.upstream()?.name().clone(),
                detail: "the probe embedding is empty".to_owned(),
            });
        }
        embedder.dim = dim;
        embedder.id = embedder_id(&embedder.model, dim);
        Ok(embedder)
    }

    fn finish(self, dim: usize) -> Result<UpstreamEmbedder, EmbedError> {
        if dim == 0 {
            return Err(EmbedError::InvalidConfig(
                "the embedding dimension must be at least 1".to_owned(),
            ));
        }
        if self.batch_size == 0 {
            return Err(EmbedError::InvalidConfig(
                "the embedding batch size must be at least 1".to_owned(),
            ));
        }
        let upstreams = self.client.upstreams();
        let upstream = match &self.upstream {
            Some(name) => upstreams
                .iter()
                .position(|u| &**u.name() == name.as_str())
                .ok_or_else(|| {
                    let known: Vec<&str> = upstreams.iter().map(|u| &**u.name()).collect();
                    EmbedError::InvalidConfig(format!(
                        "no upstream is named {name:?} (configured: {known:?})"
                    ))
                })?,
            None => {
                let chosen = self.client.select(&self.model).ok_or_else(|| {
                    EmbedError::InvalidConfig(format!(
                        "no upstream serves embedding model {:?}: none claims it and none is a fallback",
                        self.model
                    ))
                })?;
                upstreams
                    .iter()
                    .position(|u| std::ptr::eq(u, chosen))
                    .unwrap_or_default()
            }
        };
        Ok(UpstreamEmbedder {
            id: embedder_id(&self.model, dim),
            client: self.client,
            upstream,
            model: self.model,
            dim,
            send_dimensions: self.send_dimensions,
            batch_size: self.batch_size,
        })
    }
}

impl Embedder for UpstreamEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(self.embed_all(texts))
    }
}

/// The id names the model and dimension, not the upstream: the same model
/// behind another URL gives the same vectors.
fn embedder_id(model: &str, dim: usize) -> String {
    format!("upstream:{model}:{dim}")
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: Option<usize>,
    embedding: Value,
}

/// The vectors of an embeddings response for `expected` inputs, placed by
/// `index` (position in `data` when a server leaves it out), normalised.
fn parse_response(body: &[u8], expected: usize) -> Result<Vec<Vec<f32>>, String> {
    let response: EmbeddingsResponse = serde_json::from_slice(body).map_err(|err| {
        format!(
            "not an embeddings response ({err}): {}",
            quote(&String::from_utf8_lossy(body))
        )
    })?;
    if response.data.len() != expected {
        return Err(format!(
            "{} embeddings for {expected} inputs",
            response.data.len()
        ));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (position, item) in response.data.into_iter().enumerate() {
        let index = item.index.unwrap_or(position);
        let Some(slot) = slots.get_mut(index) else {
            return Err(format!(
                "embedding index {index} is out of range for {expected} inputs"
            ));
        };
        if slot.is_some() {
            return Err(format!("embedding index {index} appears twice"));
        }
        let mut vector = match item.embedding {
            Value::Array(values) => values
                .iter()
                .map(|x| x.as_f64().map(|x| x as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| format!("embedding {index} has a non-numeric component"))?,
            Value::String(_) => {
                return Err(format!(
                    "embedding {index} is base64-encoded; uno asks for floats (is encoding_format forced?)"
                ));
            }
            other => return Err(format!("embedding {index} is not an array: {other}")),
        };
        if !l2_normalize(&mut vector) {
            return Err(format!("embedding {index} is all zeros or not finite"));
        }
        *slot = Some(vector);
    }
    // Every slot is filled: `expected` items, each in range, none twice.
    Ok(slots.into_iter().flatten().collect())
}

/// An upstream error body's message: OpenAI's `error.message` (or a plain
/// `error`/`message`/`detail` string, as other servers send), else the body.
fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let candidates = [
            value.pointer("/error/message"),
            value.get("error"),
            value.get("message"),
            value.get("detail"),
        ];
        if let Some(message) = candidates.into_iter().flatten().find_map(Value::as_str) {
            return message.to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        "(empty body)".to_owned()
    } else {
        quote(&text)
    }
}

fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_BODY) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_index_and_normalises() {
        let body = br#"{"object":"list","data":[
            {"object":"embedding","index":1,"embedding":[0.0,2.0]},
            {"object":"embedding","index":0,"embedding":[3.0,4.0]}]}"#;
        let v = parse_response(body, 2).unwrap();
        assert_eq!(v[0], vec![0.6, 0.8]);
        assert_eq!(v[1], vec![0.0, 1.0]);
    }

    #[test]
    fn missing_index_means_position() {
        let body = br#"{"data":[{"embedding":[1.0]},{"embedding":[-1.0]}]}"#;
        assert_eq!(
            parse_response(body, 2).unwrap(),
            vec![vec![1.0], vec![-1.0]]
        );
    }

    #[test]
    fn rejects_bad_responses() {
        let dup = br#"{"data":[{"index":0,"embedding":[1.0]},{"index":0,"embedding":[1.0]}]}"#;
        assert!(parse_response(dup, 2).unwrap_err().contains("twice"));
        let range = br#"{"data":[{"index":5,"embedding":[1.0]}]}"#;
        assert!(
            parse_response(range, 1)
                .unwrap_err()
                .contains("out of range")
        );
        let count = br#"{"data":[{"index":0,"embedding":[1.0]}]}"#;
        assert!(
            parse_response(count, 2)
                .unwrap_err()
                .contains("1 embeddings for 2 inputs")
        );
        let zero = br#"{"data":[{"index":0,"embedding":[0.0]}]}"#;
        assert!(parse_response(zero, 1).unwrap_err().contains("zeros"));
        let b64 = br#"{"data":[{"index":0,"embedding":"AAAA"}]}"#;
        assert!(parse_response(b64, 1).unwrap_err().contains("base64"));
        assert!(
            parse_response(b"<html>oops</html>", 1)
                .unwrap_err()
                .contains("<html>oops</html>")
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(br#"{"error":{"message":"model not found","type":"x"}}"#),
            "model not found"
        );
        assert_eq!(error_message(br#"{"detail":"bad input"}"#), "bad input");
        assert_eq!(error_message(b"upstream down"), "upstream down");
        assert_eq!(error_message(b""), "(empty body)");
        let long = "x".repeat(2000);
        assert_eq!(
            error_message(long.as_bytes()).chars().count(),
            MAX_QUOTED_BODY + 1
        );
    }
}
