//! The error every uno endpoint returns, in OpenAI's shape.
//!
//! Clients talk to uno with OpenAI SDKs, which parse
//! `{"error": {"message", "type", "param", "code"}}` and map the HTTP status
//! to an exception class. Keeping one type for every error uno produces itself
//! (as opposed to upstream errors, which are passed on verbatim) guarantees
//! that SDKs show users a readable message instead of a parse failure.

use serde::Serialize;

/// The `type` field of an OpenAI error, which SDKs and users key on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (bad JSON, wrong type, too large).
    InvalidRequest,
    /// The API key is missing or not valid.
    Authentication,
    /// The route exists but not for this method, or does not exist.
    NotFound,
    /// The upstream provider could not be reached or misbehaved.
    Upstream,
    /// The upstream did not answer in time.
    Timeout,
    /// uno itself failed; a bug or an exhausted resource.
    Server,
}

impl ErrorKind {
    /// The string OpenAI uses for this kind in the `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::NotFound => "invalid_request_error",
            ErrorKind::Upstream => "upstream_error",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Server => "server_error",
        }
    }
}

/// An error produced by uno (not relayed from the upstream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code to answer with.
    pub status: u16,
    /// What went wrong and, where possible, what to do about it.
    pub message: String,
    /// The error's category.
    pub kind: ErrorKind,
    /// A stable machine-readable code, e.g. `invalid_api_key`.
    pub code: Option<&'static str>,
    /// The request parameter at fault, when there is one.
    pub param: Option<String>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: Option<&'static str>,
}

impl ApiError {
    fn new(status: u16, kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
        }
    }

    /// 400: the request is malformed; `message` names the problem.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, ErrorKind::InvalidRequest, message)
    }

    /// 401: no key, or a key uno does not know.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, ErrorKind::Authentication, message).with_code("invalid_api_key")
    }

    /// 404: no such route or resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, ErrorKind::NotFound, message).with_code("not_found")
    }

    /// 405: the route exists but not for this method.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, ErrorKind::InvalidRequest, message).with_code("method_not_allowed")
    }

    /// 409: the request conflicts with what another request established
    /// (an interaction id already owned by another tenant).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, ErrorKind::InvalidRequest, message)
    }

    /// 413: the body is larger than the configured limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            413,
            ErrorKind::InvalidRequest,
            format!(
                "request body is larger than the limit of {limit} bytes; \
                 send a smaller request or raise server.max_body_bytes (UNO_MAX_BODY_BYTES)"
            ),
        )
        .with_code("request_too_large")
    }

    /// 408: the request body did not arrive in time (see
    /// `server.body_timeout_secs`).
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(408, ErrorKind::InvalidRequest, message).with_code("request_timeout")
    }

    /// 502: the upstream could not be reached or broke the exchange.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(502, ErrorKind::Upstream, message).with_code("upstream_unavailable")
    }

    /// 504: the upstream did not answer within the configured timeout.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(504, ErrorKind::Timeout, message).with_code("upstream_timeout")
    }

    /// 503: uno cannot serve right now (for example, shutting down).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, ErrorKind::Server, message).with_code("unavailable")
    }

    /// 500: a fault inside uno. Never used for bad input.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, ErrorKind::Server, message).with_code("internal_error")
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Names the request parameter at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The OpenAI-shaped JSON body.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let envelope = Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind.as_str(),
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        // Serialising a struct of strings cannot fail; fall back to a fixed
        // body rather than panicking if it ever did.
        serde_json::to_vec(&envelope).unwrap_or_else(|_| {
            br#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#
                .to_vec()
        })
    }

    /// The body of an SSE `data:` event carrying this error, for failures
    /// after a stream has started (the status line is already sent by then).
    pub fn to_sse_event(&self) -> Vec<u8> {
        let mut out = b"data: ".to_vec();
        out.extend_from_slice(&self.to_json_bytes());
        out.extend_from_slice(b"\n\n");
        out
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_serialises_in_openai_shape() {
        let err = ApiError::bad_request("messages: expected an array").with_param("messages");
        let v: serde_json::Value = serde_json::from_slice(&err.to_json_bytes()).unwrap();
        assert_eq!(v["error"]["message"], "messages: expected an array");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "messages");
        assert!(v["error"]["code"].is_null());
        assert_eq!(err.status, 400);
    }

    #[test]
    fn sse_error_event_is_one_data_line() {
        let ev = ApiError::bad_gateway("reset").to_sse_event();
        let text = String::from_utf8(ev).unwrap();
        assert!(text.starts_with("data: {\"error\""));
        assert!(text.ends_with("\n\n"));
        assert_eq!(text.matches('\n').count(), 2);
    }
}
