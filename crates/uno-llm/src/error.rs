//! Failures talking to an upstream, and how each is reported to clients.

use std::sync::Arc;
use std::time::Duration;

use uno_core::ApiError;

/// Why an upstream exchange failed before a usable response arrived.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be opened (refused, DNS, TLS, connect timeout).
    #[error("could not connect to upstream {upstream:?}: {detail}")]
    Connect {
        /// The upstream's configured name.
        upstream: Arc<str>,
        /// The transport error.
        detail: String,
    },
    /// The upstream stayed silent for longer than the read timeout.
    #[error("upstream {upstream:?} did not answer within {after:?}")]
    Timeout {
        /// The upstream's configured name.
        upstream: Arc<str>,
        /// The timeout that expired.
        after: Duration,
    },
    /// The connection broke after it was opened.
    #[error("upstream {upstream:?} broke the connection: {detail}")]
    Transport {
        /// The upstream's configured name.
        upstream: Arc<str>,
        /// The transport error.
        detail: String,
    },
}

impl UpstreamError {
    /// The OpenAI-shaped error uno sends the client for this failure.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            UpstreamError::Connect { .. } => ApiError::bad_gateway(format!(
                "{self}; check that the upstream is running and that upstreams[].url (UNO_UPSTREAM_URL) points at it"
            )),
            UpstreamError::Timeout { .. } => ApiError::gateway_timeout(format!(
                "{self}; raise http.read_timeout_ms (UNO_READ_TIMEOUT_MS) if the model is slow"
            )),
            UpstreamError::Transport { .. } => ApiError::bad_gateway(self.to_string()),
        }
    }
}
