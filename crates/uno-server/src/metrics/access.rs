//! Who may read `/metrics`, and on which listener.
//!
//! The page carries no content but names tenants and clusters, so it can be
//! guarded by a bearer token (`metrics.token`) and moved off the API's
//! listener (`metrics.listen`, or loopback by default when the API listens
//! publicly: [`MetricsConfig::placement`]).

use std::net::SocketAddr;

use http::HeaderMap;
use uno_core::ApiError;
use uno_core::config::{MetricsConfig, MetricsPlacement};

use crate::auth::{bearer, key_digest};

/// The scrape token, held only as its SHA-256 digest (as client and admin
/// keys are): the secret is not kept after start, and comparing digests
/// tells a timing attacker nothing about the token's own bytes.
#[derive(Debug, Clone)]
pub struct ScrapeToken([u8; 32]);

impl ScrapeToken {
    /// The configured token, if any.
    pub fn from_config(config: &MetricsConfig) -> Option<ScrapeToken> {
        config.token.as_deref().map(|t| ScrapeToken(key_digest(t)))
    }

    /// Ok when `headers` carry `Authorization: Bearer <token>`; otherwise a
    /// 401 that names the setting, never the token.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match bearer(headers).map(key_digest) {
            Some(given) if given == self.0 => Ok(()),
            Some(_) => Err(ApiError::unauthorized(
                "incorrect metrics token: /metrics needs `Authorization: Bearer <token>` \
                 with the token set in metrics.token (UNO_METRICS_TOKEN)",
            )),
            None => Err(ApiError::unauthorized(
                "/metrics needs `Authorization: Bearer <token>` with the token set in \
                 metrics.token (UNO_METRICS_TOKEN)",
            )),
        }
    }
}

/// Checks `headers` against `token` when one is configured.
pub fn check_token(token: Option<&ScrapeToken>, headers: &HeaderMap) -> Result<(), ApiError> {
    token.map_or(Ok(()), |t| t.check(headers))
}

/// What the `/metrics` routes of a process enforce: the token, and whether
/// the API's own listener serves the page at all.
#[derive(Debug, Clone)]
pub struct MetricsAccess {
    /// The scrape token, if configured.
    pub token: Option<ScrapeToken>,
    /// Where the page is served.
    pub placement: MetricsPlacement,
}

impl MetricsAccess {
    /// From `[metrics]`, for an API listening on `server_listen`.
    pub fn new(config: &MetricsConfig, server_listen: SocketAddr) -> MetricsAccess {
        MetricsAccess {
            token: ScrapeToken::from_config(config),
            placement: config.placement(server_listen),
        }
    }

    /// On the API's listener: Ok when it serves the page to this request;
    /// a 404 saying where the page is when another listener has it; a 401
    /// without the token.
    pub fn check_main(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match self.placement {
            MetricsPlacement::Main => check_token(self.token.as_ref(), headers),
            MetricsPlacement::Separate { addr, fallback } => Err(moved(addr, fallback)),
        }
    }
}

/// The 404 of the API's listener when `/metrics` lives elsewhere. Only the
/// port of a configured address is named (its IP may be an internal one);
/// the loopback default reveals nothing.
fn moved(addr: SocketAddr, fallback: bool) -> ApiError {
    ApiError::not_found(if fallback {
        format!(
            "/metrics is not served on this address: uno listens on a non-loopback address \
             without metrics.token, so it serves /metrics only on {addr}; set metrics.listen \
             (UNO_METRICS_LISTEN) or metrics.token (UNO_METRICS_TOKEN) to scrape it from elsewhere"
        )
    } else {
        format!(
            "/metrics is not served on this address: uno serves it on its metrics listener, \
             port {} (metrics.listen, UNO_METRICS_LISTEN)",
            addr.port()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::AUTHORIZATION;

    const TOKEN: &str = "scrape-token-0123456789";

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(value) = value {
            h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn access(token: Option<&str>, listen: Option<&str>, server: &str) -> MetricsAccess {
        let config = MetricsConfig {
            token: token.map(str::to_owned),
            listen: listen.map(|l| l.parse().unwrap()),
            ..MetricsConfig::default()
        };
        MetricsAccess::new(&config, server.parse().unwrap())
    }

    #[test]
    fn the_token_is_required_when_set() {
        let a = access(Some(TOKEN), None, "0.0.0.0:8080");
        a.check_main(&headers(Some(&format!("Bearer {TOKEN}"))))
            .unwrap();
        for wrong in [None, Some("Bearer nope-nope-nope-nope"), Some(TOKEN)] {
            let err = a.check_main(&headers(wrong)).unwrap_err();
            assert_eq!(err.status, 401, "{wrong:?}");
            assert!(err.message.contains("metrics.token"), "{}", err.message);
            assert!(!err.message.contains(TOKEN), "{}", err.message);
        }
        access(None, None, "127.0.0.1:8080")
            .check_main(&headers(None))
            .unwrap();
    }

    #[test]
    fn another_listener_makes_the_main_one_answer_404() {
        let err = access(Some(TOKEN), Some("10.9.8.7:9500"), "127.0.0.1:8080")
            .check_main(&headers(Some(&format!("Bearer {TOKEN}"))))
            .unwrap_err();
        assert_eq!(err.status, 404);
        assert!(err.message.contains("port 9500"), "{}", err.message);
        assert!(!err.message.contains("10.9.8.7"), "{}", err.message);
        let err = access(None, None, "0.0.0.0:8080")
            .check_main(&headers(None))
            .unwrap_err();
        assert_eq!(err.status, 404);
        assert!(err.message.contains("127.0.0.1:9464"), "{}", err.message);
    }
}
