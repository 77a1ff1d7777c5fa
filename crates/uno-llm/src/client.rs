//! The pooled upstream client with its timeout and retry policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use uno_core::config::{Config, HttpConfig};

use crate::error::UpstreamError;
use crate::upstream::{InvalidUpstream, Upstream};

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Every configured upstream behind one connection pool.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: HttpsClient,
    upstreams: Vec<Upstream>,
    policy: HttpConfig,
}

/// An upstream response whose headers have arrived, with what it took.
#[derive(Debug)]
pub struct UpstreamResponse {
    /// The response; its body is still to be read.
    pub response: Response<Incoming>,
    /// The upstream that answered.
    pub upstream: Arc<str>,
    /// When the first attempt was sent.
    pub sent_at: Instant,
    /// How many attempts were made (1 when no retry was needed).
    pub attempts: u32,
}

impl UpstreamClient {
    /// Builds the pool and parses every upstream.
    pub fn new(config: &Config) -> Result<Self, InvalidUpstream> {
        let upstreams = config
            .upstreams
            .iter()
            .map(Upstream::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        let policy = config.http.clone();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(policy.connect_timeout()));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(policy.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(policy.pool_idle_timeout_secs))
            .build(connector);
        Ok(UpstreamClient {
            inner: Arc::new(Inner {
                client,
                upstreams,
                policy,
            }),
        })
    }

    /// The upstream that serves `model`: the first that claims it, else the
    /// first fallback (one with no model list).
    pub fn select(&self, model: &str) -> Option<&Upstream> {
        let upstreams = &self.inner.upstreams;
        upstreams
            .iter()
            .find(|u| u.claims(model))
            .or_else(|| upstreams.iter().find(|u| u.is_fallback()))
    }

    /// All configured upstreams, in configuration order.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.inner.upstreams
    }

    /// The longest silence allowed from an upstream.
    pub fn read_timeout(&self) -> Duration {
        self.inner.policy.read_timeout()
    }

    /// Sends a request with all of `headers`; see [`UpstreamClient::send_filtered`].
    pub async fn send(
        &self,
        upstream: &Upstream,
        method: Method,
        uri: Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, UpstreamError> {
        self.send_filtered(upstream, method, uri, headers, |_| true, body)
            .await
    }

    /// Sends a request and waits for the response headers, retrying connect
    /// errors, 429 and 5xx with backoff. Of `headers`, those `keep` accepts
    /// travel upstream, copied straight into the outgoing request (the proxy
    /// passes the client's own header map, so nothing is copied twice); the
    /// upstream's own key is added here. The final response is returned
    /// whatever its status, so upstream errors can be passed on faithfully.
    pub async fn send_filtered(
        &self,
        upstream: &Upstream,
        method: Method,
        uri: Uri,
        headers: &HeaderMap,
        keep: fn(&HeaderName) -> bool,
        body: Bytes,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let policy = &self.inner.policy;
        let sent_at = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let last_attempt = attempt > policy.max_retries;
            let request = build_request(upstream, &method, &uri, headers, keep, body.clone())?;
            let outcome =
                tokio::time::timeout(policy.read_timeout(), self.inner.client.request(request))
                    .await;
            let response = match outcome {
                Err(_) => {
                    return Err(UpstreamError::Timeout {
                        upstream: upstream.name().clone(),
                        after: policy.read_timeout(),
                    });
                }
                Ok(Err(err)) if err.is_connect() => {
                    let error = UpstreamError::Connect {
                        upstream: upstream.name().clone(),
                        detail: error_chain(&err),
                    };
                    if last_attempt {
                        return Err(error);
                    }
                    tracing::warn!(attempt, %error, "upstream connect failed; retrying");
                    tokio::time::sleep(backoff(policy, attempt, None)).await;
                    continue;
                }
                Ok(Err(err)) => {
                    return Err(UpstreamError::Transport {
                        upstream: upstream.name().clone(),
                        detail: error_chain(&err),
                    });
                }
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            if !last_attempt && is_retryable(status) {
                let retry_after = retry_after(response.headers());
                tracing::warn!(attempt, status = status.as_u16(), upstream = %upstream.name(), "upstream answered with a retryable status; retrying");
                drop(response);
                tokio::time::sleep(backoff(policy, attempt, retry_after)).await;
                continue;
            }
            return Ok(UpstreamResponse {
                response,
                upstream: upstream.name().clone(),
                sent_at,
                attempts: attempt,
            });
        }
    }
}

fn build_request(
    upstream: &Upstream,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    keep: fn(&HeaderName) -> bool,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, UpstreamError> {
    let has_body = !body.is_empty();
    let mut request = Request::builder()
        .method(method.clone())
        .uri(uri.clone())
        .body(Full::new(body))
        .map_err(|err| UpstreamError::Transport {
            upstream: upstream.name().clone(),
            detail: format!("cannot build the upstream request: {err}"),
        })?;
    let out = request.headers_mut();
    out.reserve(headers.len() + 2);
    for (name, value) in headers {
        if keep(name) {
            out.append(name, value.clone());
        }
    }
    if let Some(auth) = upstream.authorization() {
        out.insert(AUTHORIZATION, auth.clone());
    }
    if has_body && !out.contains_key(CONTENT_TYPE) {
        out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(request)
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` in seconds, as upstreams that rate-limit send it.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// Exponential backoff with jitter (half fixed, half random), never less than
/// what the upstream asked for, never more than the configured ceiling.
fn backoff(policy: &HttpConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = policy
        .retry_initial_backoff_ms
        .saturating_mul(1u64 << (attempt - 1).min(20));
    let capped = exp.min(policy.retry_max_backoff_ms);
    let jittered = capped / 2 + rand::rng().random_range(0..=capped / 2);
    let wanted = retry_after.map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis(jittered.max(wanted).min(policy.retry_max_backoff_ms))
}

/// An error and its causes on one line: hyper's top-level errors alone
/// ("client error (Connect)") do not say what happened.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = HttpConfig {
            retry_initial_backoff_ms: 100,
            retry_max_backoff_ms: 1000,
            ..HttpConfig::default()
        };
        for _ in 0..50 {
            let first = backoff(&policy, 1, None);
            assert!(
                (50..=100).contains(&(first.as_millis() as u64)),
                "{first:?}"
            );
            let third = backoff(&policy, 3, None);
            assert!(
                (200..=400).contains(&(third.as_millis() as u64)),
                "{third:?}"
            );
            assert!(backoff(&policy, 30, None) <= Duration::from_millis(1000));
        }
        let asked = backoff(&policy, 1, Some(Duration::from_millis(700)));
        assert_eq!(asked, Duration::from_millis(700));
        let too_long = backoff(&policy, 1, Some(Duration::from_secs(60)));
        assert_eq!(too_long, Duration::from_millis(1000));
    }

    #[test]
    fn retry_after_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn retryable_statuses() {
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_retryable(StatusCode::BAD_GATEWAY));
        assert!(!is_retryable(StatusCode::BAD_REQUEST));
        assert!(!is_retryable(StatusCode::UNAUTHORIZED));
    }
}
