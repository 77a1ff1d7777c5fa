//! Which headers cross the proxy in each direction.
//!
//! A drop-in proxy must pass on what the provider and the SDKs use
//! (`openai-organization`, `x-stainless-*`, rate-limit headers, request ids)
//! while keeping what is uno's own or connection-specific on its side.

use http::header::{self, HeaderMap, HeaderName};

/// The version of the snapshot the tenant was served under.
pub const SNAPSHOT_HEADER: &str = "x-uno-snapshot";
/// The cluster a request was routed to.
pub const CLUSTER_HEADER: &str = "x-uno-cluster";
/// `passthrough`, `primary`, `reflective` or `holdout`.
pub const PATH_HEADER: &str = "x-uno-path";

/// Hop-by-hop headers (RFC 9110 §7.6.1) and ones hyper sets per connection.
fn is_connection_specific(name: &HeaderName) -> bool {
    matches!(
        *name,
        header::CONNECTION
            | header::TRANSFER_ENCODING
            | header::CONTENT_LENGTH
            | header::TE
            | header::TRAILER
            | header::UPGRADE
            | header::PROXY_AUTHORIZATION
            | header::PROXY_AUTHENTICATE
    ) || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Whether a client header travels upstream: not its uno key (the upstream
/// gets its own), not uno's `x-uno-*`, not `accept-encoding` (uno reads the
/// answer for logging, so it asks for it uncompressed), not cookies, not
/// `host` or `expect`. Used as the upstream client's filter, so the client's
/// headers are copied once, straight into the upstream request.
pub fn travels_upstream(name: &HeaderName) -> bool {
    !(is_connection_specific(name)
        || matches!(
            *name,
            header::HOST
                | header::AUTHORIZATION
                | header::ACCEPT_ENCODING
                | header::COOKIE
                | header::EXPECT
        )
        || name.as_str().starts_with("x-uno-"))
}

/// Copies the upstream's response headers that the client should see.
pub fn copy_from_upstream(upstream: &HeaderMap, out: &mut HeaderMap) {
    for (name, value) in upstream {
        if !is_connection_specific(name) && *name != header::SET_COOKIE {
            out.append(name, value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn client_headers_are_filtered() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer uno-key"),
        );
        h.insert(header::HOST, HeaderValue::from_static("uno"));
        h.insert("x-uno-user", HeaderValue::from_static("u1"));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert("openai-organization", HeaderValue::from_static("org-1"));
        h.insert("x-stainless-lang", HeaderValue::from_static("python"));
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        let kept: Vec<&str> = h
            .keys()
            .filter(|name| travels_upstream(name))
            .map(HeaderName::as_str)
            .collect();
        assert_eq!(kept, ["openai-organization", "x-stainless-lang"]);
    }

    #[test]
    fn upstream_headers_are_filtered() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        h.insert(header::SET_COOKIE, HeaderValue::from_static("a=b"));
        h.insert("x-request-id", HeaderValue::from_static("req-1"));
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("9"),
        );
        let mut out = HeaderMap::new();
        copy_from_upstream(&h, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out["x-request-id"], "req-1");
    }
}
