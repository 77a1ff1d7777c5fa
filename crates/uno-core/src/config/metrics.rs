//! `[metrics]`: how `GET /metrics` is computed and who may read it.
//!
//! The page carries no content, but it names tenants and clusters, so it is
//! not left open on a public address by default: [`MetricsConfig::placement`]
//! decides where it is served from `server.listen`, `metrics.listen` and
//! `metrics.token`, and the same decision is documented in
//! `config/uno.example.toml`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

/// Where `/metrics` goes when uno listens on a public address and neither
/// `metrics.listen` nor `metrics.token` says otherwise: loopback only, on
/// the port the OpenTelemetry Prometheus exporter conventionally uses.
pub const LOOPBACK_DEFAULT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// Shortest accepted `metrics.token`, as for the admin key: a scrape token
/// guards a page anyone on the network could otherwise read.
pub const MIN_TOKEN_CHARS: usize = 16;

/// `GET /metrics`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// How often the per-cluster treated/holdout feedback gauges are re-read
    /// from the database (a scrape never reads it).
    pub feedback_refresh_secs: u64,
    /// A bearer token every scrape must send (`Authorization: Bearer`), on
    /// whichever listener serves `/metrics`, `uno worker --metrics-listen`'s
    /// included. Unset: no token.
    pub token: Option<String>,
    /// A separate address for `/metrics` (and `/health`); the main listener
    /// then no longer serves `/metrics`. Unset: see [`MetricsConfig::placement`].
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            feedback_refresh_secs: 30,
            token: None,
            listen: None,
        }
    }
}

/// Where `uno serve` serves `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsPlacement {
    /// On the main listener, beside the API.
    Main,
    /// On a listener of its own; the main listener answers 404.
    Separate {
        /// The address to bind.
        addr: SocketAddr,
        /// Chosen by uno ([`LOOPBACK_DEFAULT`]) rather than configured: if
        /// it cannot be bound uno warns and serves the API anyway.
        fallback: bool,
    },
}

impl MetricsConfig {
    /// Decides where `/metrics` is served when the API listens on
    /// `server_listen`: `metrics.listen` if set; otherwise the main listener
    /// when it is a loopback address (local use) or a token guards the page;
    /// otherwise [`LOOPBACK_DEFAULT`], so a public address never exposes
    /// tenant and cluster names to anyone who asks.
    pub fn placement(&self, server_listen: SocketAddr) -> MetricsPlacement {
        match self.listen {
            Some(addr) => MetricsPlacement::Separate {
                addr,
                fallback: false,
            },
            None if server_listen.ip().is_loopback() || self.token.is_some() => {
                MetricsPlacement::Main
            }
            None => MetricsPlacement::Separate {
                addr: LOOPBACK_DEFAULT,
                fallback: true,
            },
        }
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        match &self.token {
            Some(token) if token.trim().chars().count() < MIN_TOKEN_CHARS => Err(format!(
                "metrics.token (UNO_METRICS_TOKEN) must be at least {MIN_TOKEN_CHARS} characters"
            )),
            _ => Ok(()),
        }
    }

    /// Applies `UNO_METRICS_*`; `Ok(false)` for a name it does not know. An
    /// empty value unsets the key.
    pub(super) fn apply_env(
        &mut self,
        name: &str,
        value: &str,
    ) -> Result<bool, super::ConfigError> {
        match name {
            "UNO_METRICS_TOKEN" => self.token = Some(value.to_owned()).filter(|t| !t.is_empty()),
            "UNO_METRICS_LISTEN" if value.trim().is_empty() => self.listen = None,
            "UNO_METRICS_LISTEN" => self.listen = Some(super::parse_env(name, value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn config(token: Option<&str>, listen: Option<&str>) -> MetricsConfig {
        MetricsConfig {
            token: token.map(str::to_owned),
            listen: listen.map(addr),
            ..MetricsConfig::default()
        }
    }

    #[test]
    fn loopback_serves_metrics_beside_the_api() {
        for server in ["127.0.0.1:8080", "[::1]:8080", "127.0.0.2:0"] {
            assert_eq!(
                config(None, None).placement(addr(server)),
                MetricsPlacement::Main,
                "{server}"
            );
        }
    }

    #[test]
    fn a_public_address_without_token_moves_metrics_to_loopback() {
        for server in ["0.0.0.0:8080", "[::]:8080", "10.1.2.3:80"] {
            assert_eq!(
                config(None, None).placement(addr(server)),
                MetricsPlacement::Separate {
                    addr: addr("127.0.0.1:9464"),
                    fallback: true
                },
                "{server}"
            );
        }
    }

    #[test]
    fn a_token_keeps_metrics_on_a_public_listener() {
        assert_eq!(
            config(Some("scrape-token-0123456789"), None).placement(addr("0.0.0.0:8080")),
            MetricsPlacement::Main
        );
    }

    #[test]
    fn metrics_listen_always_wins() {
        for (server, token) in [
            ("127.0.0.1:8080", None),
            ("0.0.0.0:8080", None),
            ("0.0.0.0:8080", Some("scrape-token-0123456789")),
        ] {
            assert_eq!(
                config(token, Some("0.0.0.0:9464")).placement(addr(server)),
                MetricsPlacement::Separate {
                    addr: addr("0.0.0.0:9464"),
                    fallback: false
                },
                "{server} {token:?}"
            );
        }
    }

    #[test]
    fn keys_parse_from_the_file_and_the_environment() {
        let mut c = Config::from_toml(
            "[metrics]\ntoken = \"file-token-0123456789\"\nlisten = \"127.0.0.1:9500\"\n",
        )
        .unwrap();
        assert_eq!(c.metrics.token.as_deref(), Some("file-token-0123456789"));
        assert_eq!(c.metrics.listen, Some(addr("127.0.0.1:9500")));
        let warnings = c
            .apply_env([
                ("UNO_METRICS_TOKEN", "env-token-0123456789"),
                ("UNO_METRICS_LISTEN", "0.0.0.0:9600"),
            ])
            .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.metrics.token.as_deref(), Some("env-token-0123456789"));
        assert_eq!(c.metrics.listen, Some(addr("0.0.0.0:9600")));
        c.validate().unwrap();
        c.apply_env([("UNO_METRICS_TOKEN", ""), ("UNO_METRICS_LISTEN", "")])
            .unwrap();
        assert_eq!(c.metrics, MetricsConfig::default(), "empty values unset");
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        let err = Config::default()
            .apply_env([("UNO_METRICS_LISTEN", "9464")])
            .unwrap_err();
        assert!(err.to_string().contains("UNO_METRICS_LISTEN"), "{err}");
        let mut c = Config::default();
        c.apply_env([("UNO_METRICS_TOKEN", "short")]).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("metrics.token"), "{err}");
        assert!(
            !err.contains("short"),
            "the token itself is never shown: {err}"
        );
        assert!(Config::from_toml("[metrics]\nlisten = \"nowhere\"\n").is_err());
    }
}
