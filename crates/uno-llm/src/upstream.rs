//! A configured upstream, with its request targets worked out once at start.

use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};
use uno_core::config::UpstreamConfig;

use crate::path::PathSegment;

/// The OpenAI routes uno forwards, so that their URIs are built once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST {base}/chat/completions`
    ChatCompletions,
    /// `POST {base}/embeddings`
    Embeddings,
    /// `GET {base}/models`
    Models,
}

/// One OpenAI-compatible provider, ready to send to.
#[derive(Debug)]
pub struct Upstream {
    name: Arc<str>,
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    authorization: Option<HeaderValue>,
    models: Vec<String>,
    chat_uri: Uri,
    embeddings_uri: Uri,
    models_uri: Uri,
}

/// A configured upstream that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("upstream {name:?}: {problem}")]
pub struct InvalidUpstream {
    name: String,
    problem: String,
}

impl Upstream {
    /// Parses a configured upstream.
    pub fn from_config(config: &UpstreamConfig) -> Result<Self, InvalidUpstream> {
        let invalid = |problem: String| InvalidUpstream {
            name: config.name.clone(),
            problem,
        };
        let uri: Uri = config
            .url
            .parse()
            .map_err(|err| invalid(format!("url {:?} is not a valid URL: {err}", config.url)))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| invalid(format!("url {:?} has no scheme", config.url)))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid(format!("url {:?} has no host", config.url)))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let authorization = match config.api_key.as_deref().filter(|k| !k.is_empty()) {
            Some(key) => {
                let mut value = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| {
                    invalid("api_key contains characters not allowed in a header".to_owned())
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut upstream = Upstream {
            name: Arc::from(config.name.as_str()),
            scheme,
            authority,
            base_path,
            authorization,
            models: config.models.clone(),
            chat_uri: Uri::default(),
            embeddings_uri: Uri::default(),
            models_uri: Uri::default(),
        };
        upstream.chat_uri = upstream.uri_for("/chat/completions").map_err(invalid)?;
        upstream.embeddings_uri = upstream.uri_for("/embeddings").map_err(invalid)?;
        upstream.models_uri = upstream.uri_for("/models").map_err(invalid)?;
        Ok(upstream)
    }

    /// The configured name, for logs and errors.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// `Authorization` header value for this upstream, if it has a key.
    pub fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }

    /// The URI of a fixed endpoint (cheap: clones reference-counted parts).
    pub fn endpoint(&self, endpoint: Endpoint) -> Uri {
        match endpoint {
            Endpoint::ChatCompletions => self.chat_uri.clone(),
            Endpoint::Embeddings => self.embeddings_uri.clone(),
            Endpoint::Models => self.models_uri.clone(),
        }
    }

    /// `{base}/models/{id}`: the model id is one validated, percent-encoded
    /// segment (see [`crate::path`]), so no id reaches another route.
    pub fn model_uri(&self, id: &PathSegment) -> Result<Uri, String> {
        self.uri_for(&format!("/models/{}", id.as_str()))
    }

    /// The URI of `{base}{suffix}`; `suffix` is one of uno's own fixed
    /// routes, or built from [`PathSegment`]s. Private, so that no caller
    /// can hand it text a client wrote.
    fn uri_for(&self, suffix: &str) -> Result<Uri, String> {
        let path = PathAndQuery::try_from(format!("{}{suffix}", self.base_path))
            .map_err(|err| format!("cannot build a request path from {suffix:?}: {err}"))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|err| err.to_string())
    }

    /// Whether this upstream claims `model` explicitly.
    pub fn claims(&self, model: &str) -> bool {
        self.models
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => model.starts_with(prefix),
                None => pattern == model,
            })
    }

    /// Whether this upstream takes models nobody claims.
    pub fn is_fallback(&self) -> bool {
        self.models.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, models: &[&str]) -> UpstreamConfig {
        UpstreamConfig {
            name: "u".into(),
            url: url.into(),
            api_key: Some("sk-1".into()),
            models: models.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn endpoints_keep_the_base_path() {
        let up = Upstream::from_config(&config("https://api.example.com/v1/", &[])).unwrap();
        assert_eq!(
            up.endpoint(Endpoint::ChatCompletions).to_string(),
            "https://api.example.com/v1/chat/completions"
        );
        assert_eq!(
            up.endpoint(Endpoint::Models).to_string(),
            "https://api.example.com/v1/models"
        );
        assert_eq!(
            up.model_uri(&PathSegment::new("org/gpt-4o").unwrap())
                .unwrap()
                .to_string(),
            "https://api.example.com/v1/models/org%2Fgpt-4o"
        );
        assert_eq!(up.authorization().unwrap(), "Bearer sk-1");
        assert!(up.authorization().unwrap().is_sensitive());
    }

    #[test]
    fn model_patterns() {
        let up = Upstream::from_config(&config("http://h/v1", &["qwen*", "gpt-4o"])).unwrap();
        assert!(up.claims("qwen3-8b"));
        assert!(up.claims("gpt-4o"));
        assert!(!up.claims("gpt-4o-mini"));
        assert!(!up.is_fallback());
    }

    #[test]
    fn bad_url_is_reported() {
        let err = Upstream::from_config(&config("not a url", &[])).unwrap_err();
        assert!(err.to_string().contains("not a valid URL"));
    }
}
