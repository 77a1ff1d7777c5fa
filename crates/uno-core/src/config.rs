//! uno's configuration: typed, with defaults that run with no file at all.
//!
//! Sources, later ones winning: built-in defaults, a TOML file (`--config` or
//! `UNO_CONFIG`), then `UNO_*` environment variables. Unknown keys in the file
//! are an error (a typo should not silently fall back to a default), unknown
//! `UNO_*` variables are reported as warnings. `config/uno.example.toml`
//! documents every key; [`ENV_VARS`] lists every variable.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

mod learn;
mod metrics;
pub use learn::{EmbedderKind, LearnConfig, Linkage, NoveltyKind};
pub use metrics::{LOOPBACK_DEFAULT, MetricsConfig, MetricsPlacement};

/// Everything `uno serve` needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The listening side.
    pub server: ServerConfig,
    /// Client keys.
    pub auth: AuthConfig,
    /// The upstream HTTP client.
    pub http: HttpConfig,
    /// The OpenAI-compatible providers uno forwards to, chosen by model.
    pub upstreams: Vec<UpstreamConfig>,
    /// Diagnostics output.
    pub log: LogConfig,
    /// Where interactions, feedback and keys are stored.
    pub database: DatabaseConfig,
    /// How logged interactions reach the database.
    pub log_writer: LogWriterConfig,
    /// How long stored data is kept.
    pub retention: RetentionConfig,
    /// The admin API.
    pub admin: AdminConfig,
    /// The feedback API.
    pub feedback: FeedbackConfig,
    /// The learning worker.
    pub learn: LearnConfig,
    /// `GET /metrics`.
    pub metrics: MetricsConfig,
}

/// Where interactions, feedback and keys are stored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` (created on first start) or `postgres://…`.
    pub url: String,
    /// Apply pending migrations when `uno serve` starts.
    pub migrate_on_start: bool,
}

/// How logged interactions reach the database without the request path
/// waiting on it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogWriterConfig {
    /// Records the in-memory queue holds; beyond it records are dropped
    /// (and counted). The writer journals what the database does not take
    /// within the durability window, so the queue holds about one window
    /// of traffic; this is headroom, not a buffer for outages.
    pub queue_capacity: usize,
    /// Bytes the in-memory queue holds (requests and answers), the bound
    /// that matters with large prompts; beyond it records are dropped (and
    /// counted).
    pub queue_max_bytes: usize,
    /// Most rows written in one insert. Each batch costs the same few
    /// round trips to the database (and wake-ups of its backend) whatever
    /// its size, so the default is large; `flush_interval_ms` still bounds
    /// how long a row waits.
    pub batch_size: usize,
    /// Most bytes of rows in one insert or journal append.
    pub batch_max_bytes: usize,
    /// Longest a record waits for its batch to fill, in ms (at most a
    /// quarter of `durability_window_ms` is used).
    pub flush_interval_ms: u64,
    /// The durability promise, in ms: an accepted interaction is in the
    /// database or synced to the local journal within this long, so a
    /// crash (`kill -9`, power loss) loses at most this window.
    pub durability_window_ms: u64,
    /// Directory of the spill journal used while the database is away.
    pub journal_dir: String,
    /// The journal's size cap in bytes; past it records are dropped (and
    /// counted).
    pub journal_max_bytes: u64,
    /// Bytes past which a journal segment is closed and a new one begun.
    pub journal_segment_bytes: u64,
    /// How often to check whether the database is back, in ms.
    pub retry_interval_ms: u64,
}

/// How long stored data is kept. Zero keeps forever.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days to keep interaction metadata and feedback.
    pub metadata_days: u32,
    /// Days to keep message and answer content.
    pub content_days: u32,
    /// How often `uno serve` applies retention, in seconds (0: never; run
    /// `uno retention` from a scheduler instead).
    pub interval_secs: u64,
}

/// The admin API (`/admin/v1/…`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The admin key, separate from client keys. Unset disables the admin API.
    pub key: Option<String>,
}

/// The feedback API (`POST /v1/feedback`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackConfig {
    /// Longest `comment` or `expected_output`, in bytes.
    pub max_text_bytes: usize,
}

/// The listening side.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted; larger gets 413.
    pub max_body_bytes: usize,
    /// After SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
    /// Once a request's first byte arrives, how long its whole head (request
    /// line and headers) may take; a slower client is disconnected.
    pub header_timeout_secs: u64,
    /// How long a request body may take to arrive, extended by one second
    /// for every [`ServerConfig::body_min_rate`] bytes received (Apache's
    /// `RequestReadTimeout body=20,MinRate=500`): a slow but steady upload
    /// passes, a trickle is cut with 408.
    pub body_timeout_secs: u64,
    /// Bytes a second that earn a body one more second; 0 turns the
    /// extension off (the body then has `body_timeout_secs` in all).
    pub body_min_rate: u64,
    /// How long a connection with no request in progress is kept open
    /// (keep-alive). Never applies while a request is being answered, so
    /// long streams and slow upstreams are not cut.
    pub idle_timeout_secs: u64,
    /// Most client connections served at once; beyond it, new connections
    /// wait in the listen backlog until one closes. Lowered at start to
    /// what the process's open-file limit allows (two descriptors a
    /// connection: the client's and the upstream's).
    pub max_connections: usize,
}

/// Client authentication.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Serve without checking keys. For local use only: every request is
    /// then attributed to the tenant `default`.
    pub disabled: bool,
    /// Accepted keys and the tenant each belongs to, besides the keys in the
    /// database (`uno keys create`).
    pub keys: Vec<ApiKeyConfig>,
    /// How often the server reloads keys from the database, in seconds; a
    /// revoked key stops working within this time.
    pub key_refresh_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            disabled: false,
            keys: Vec::new(),
            key_refresh_secs: 5,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite:uno.db".to_owned(),
            migrate_on_start: true,
        }
    }
}

impl Default for LogWriterConfig {
    fn default() -> Self {
        LogWriterConfig {
            queue_capacity: 100_000,
            queue_max_bytes: 16 << 20,
            batch_size: 2048,
            batch_max_bytes: 2 << 20,
            flush_interval_ms: 25,
            durability_window_ms: 100,
            journal_dir: "uno-journal".to_owned(),
            journal_max_bytes: 1 << 30,
            journal_segment_bytes: 16 << 20,
            retry_interval_ms: 1_000,
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            metadata_days: 90,
            content_days: 30,
            interval_secs: 3_600,
        }
    }
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            max_text_bytes: 16 * 1024,
        }
    }
}

/// One accepted client key.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The secret the client sends as `Authorization: Bearer <key>`.
    pub key: String,
    /// The tenant the key belongs to.
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

/// The pooled client uno uses to reach every upstream.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Time allowed to open a TCP (and TLS) connection.
    pub connect_timeout_ms: u64,
    /// Longest silence allowed from the upstream: before its response
    /// headers, and between two body chunks.
    pub read_timeout_ms: u64,
    /// Retries on connect errors, 429 and 5xx, made only while nothing has
    /// been sent to the client yet.
    pub max_retries: u32,
    /// First retry delay; doubles each retry, with jitter.
    pub retry_initial_backoff_ms: u64,
    /// Ceiling on one retry delay, also on an upstream's `Retry-After`.
    pub retry_max_backoff_ms: u64,
    /// Idle keep-alive connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout_secs: u64,
}

/// One OpenAI-compatible provider.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// A name for logs and errors.
    #[serde(default = "default_upstream_name")]
    pub name: String,
    /// Base URL in the OpenAI SDK's sense, ending before `/chat/completions`
    /// (for example `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`).
    pub url: String,
    /// Key sent upstream as `Authorization: Bearer`; none if empty.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Models this upstream serves: exact names, or prefixes ending in `*`.
    /// Empty means it serves any model no other upstream claims.
    #[serde(default)]
    pub models: Vec<String>,
}

/// Diagnostics output.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `uno_server=debug,info`.
    pub filter: String,
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
}

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn default_tenant() -> String {
    "default".to_owned()
}

fn default_upstream_name() -> String {
    "default".to_owned()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024 * 1024,
            shutdown_grace_secs: 30,
            header_timeout_secs: 10,
            body_timeout_secs: 20,
            body_min_rate: 500,
            idle_timeout_secs: 90,
            max_connections: 10_000,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout_ms: 5_000,
            read_timeout_ms: 300_000,
            max_retries: 2,
            retry_initial_backoff_ms: 100,
            retry_max_backoff_ms: 5_000,
            pool_max_idle_per_host: 512,
            pool_idle_timeout_secs: 90,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            upstreams: vec![UpstreamConfig {
                name: default_upstream_name(),
                url: "https://api.openai.com/v1".to_owned(),
                api_key: None,
                models: Vec::new(),
            }],
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            log_writer: LogWriterConfig::default(),
            retention: RetentionConfig::default(),
            admin: AdminConfig::default(),
            feedback: FeedbackConfig::default(),
            learn: LearnConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl HttpConfig {
    /// [`HttpConfig::connect_timeout_ms`] as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// [`HttpConfig::read_timeout_ms`] as a duration.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }
}

/// A configuration that cannot be used, with what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The TOML file does not parse or names unknown keys.
    #[error("config file: {0}")]
    File(String),
    /// An environment variable has a value of the wrong form.
    #[error("environment variable {name}={value:?}: {problem}")]
    Env {
        /// The variable.
        name: String,
        /// Its value (never a secret: secret-bearing variables are strings
        /// and cannot fail to parse).
        value: String,
        /// What was expected.
        problem: String,
    },
    /// The settings parse but contradict each other or are out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Every environment variable uno reads, with the key it overrides. The
/// README's configuration reference is generated from the same list.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("UNO_CONFIG", "path of the TOML config file"),
    ("UNO_LISTEN", "server.listen"),
    ("UNO_MAX_BODY_BYTES", "server.max_body_bytes"),
    ("UNO_SHUTDOWN_GRACE_SECS", "server.shutdown_grace_secs"),
    ("UNO_HEADER_TIMEOUT_SECS", "server.header_timeout_secs"),
    ("UNO_BODY_TIMEOUT_SECS", "server.body_timeout_secs"),
    ("UNO_IDLE_TIMEOUT_SECS", "server.idle_timeout_secs"),
    ("UNO_MAX_CONNECTIONS", "server.max_connections"),
    ("UNO_AUTH_DISABLED", "auth.disabled"),
    (
        "UNO_API_KEYS",
        "auth.keys: comma-separated keys, each `key` (tenant `default`) or `tenant=key`",
    ),
    ("UNO_UPSTREAM_URL", "upstreams[0].url"),
    ("UNO_UPSTREAM_API_KEY", "upstreams[0].api_key"),
    ("UNO_CONNECT_TIMEOUT_MS", "http.connect_timeout_ms"),
    ("UNO_READ_TIMEOUT_MS", "http.read_timeout_ms"),
    ("UNO_MAX_RETRIES", "http.max_retries"),
    ("UNO_LOG", "log.filter"),
    ("UNO_LOG_FORMAT", "log.format (text or json)"),
    ("DATABASE_URL", "database.url"),
    ("UNO_DATABASE_URL", "database.url (wins over DATABASE_URL)"),
    ("UNO_JOURNAL_DIR", "log_writer.journal_dir"),
    ("UNO_RETENTION_METADATA_DAYS", "retention.metadata_days"),
    ("UNO_RETENTION_CONTENT_DAYS", "retention.content_days"),
    ("UNO_ADMIN_KEY", "admin.key"),
    ("UNO_WORKER_IN_SERVE", "learn.in_serve"),
    ("UNO_LEARN_MODEL", "learn.model"),
    ("UNO_LEARN_URL", "learn.url"),
    ("UNO_LEARN_API_KEY", "learn.api_key"),
    (
        "UNO_EMBEDDER",
        "learn.embedder (local, upstream or hashing)",
    ),
    ("UNO_EMBEDDER_PATH", "learn.embedder_path"),
    ("UNO_METRICS_TOKEN", "metrics.token"),
    ("UNO_METRICS_LISTEN", "metrics.listen"),
];

impl Config {
    /// Parses a TOML document over the defaults.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|err| ConfigError::File(err.to_string()))
    }

    /// Applies `UNO_*` overrides. Returns warnings (unknown `UNO_*` names)
    /// for the caller to print.
    pub fn apply_env<I, K, V>(&mut self, vars: I) -> Result<Vec<String>, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut warnings = Vec::new();
        let mut uno_database_url = None;
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            if name == "DATABASE_URL" {
                if !value.is_empty() {
                    self.database.url = value.to_owned();
                }
                continue;
            }
            if !name.starts_with("UNO_") {
                continue;
            }
            match name {
                "UNO_DATABASE_URL" => uno_database_url = Some(value.to_owned()),
                "UNO_JOURNAL_DIR" => self.log_writer.journal_dir = value.to_owned(),
                "UNO_RETENTION_METADATA_DAYS" => {
                    self.retention.metadata_days = parse_env(name, value)?
                }
                "UNO_RETENTION_CONTENT_DAYS" => self.retention.content_days = parse_env(name, value)?,
                "UNO_ADMIN_KEY" => {
                    self.admin.key = Some(value.to_owned()).filter(|k| !k.is_empty())
                }
                "UNO_CONFIG" => {}
                "UNO_WORKER_IN_SERVE" => self.learn.in_serve = parse_bool(name, value)?,
                "UNO_LEARN_MODEL" => self.learn.model = value.to_owned(),
                "UNO_LEARN_URL" => self.learn.url = value.to_owned(),
                "UNO_LEARN_API_KEY" => {
                    self.learn.api_key = Some(value.to_owned()).filter(|k| !k.is_empty())
                }
                "UNO_EMBEDDER" => {
                    self.learn.embedder = match value.to_ascii_lowercase().as_str() {
                        "local" => EmbedderKind::Local,
                        "upstream" => EmbedderKind::Upstream,
                        "hashing" => EmbedderKind::Hashing,
                        _ => {
                            return Err(ConfigError::Env {
                                name: name.to_owned(),
                                value: value.to_owned(),
                                problem: "expected `local`, `upstream` or `hashing`".to_owned(),
                            });
                        }
                    }
                }
                "UNO_EMBEDDER_PATH" => self.learn.embedder_path = value.to_owned(),
                "UNO_LISTEN" => self.server.listen = parse_env(name, value)?,
                "UNO_MAX_BODY_BYTES" => self.server.max_body_bytes = parse_env(name, value)?,
                "UNO_SHUTDOWN_GRACE_SECS" => {
                    self.server.shutdown_grace_secs = parse_env(name, value)?
                }
                "UNO_HEADER_TIMEOUT_SECS" => {
                    self.server.header_timeout_secs = parse_env(name, value)?
                }
                "UNO_BODY_TIMEOUT_SECS" => self.server.body_timeout_secs = parse_env(name, value)?,
                "UNO_IDLE_TIMEOUT_SECS" => self.server.idle_timeout_secs = parse_env(name, value)?,
                "UNO_MAX_CONNECTIONS" => self.server.max_connections = parse_env(name, value)?,
                "UNO_AUTH_DISABLED" => self.auth.disabled = parse_bool(name, value)?,
                "UNO_API_KEYS" => self.auth.keys = parse_keys(value),
                "UNO_UPSTREAM_URL" => self.first_upstream().url = value.to_owned(),
                "UNO_UPSTREAM_API_KEY" => {
                    self.first_upstream().api_key = Some(value.to_owned()).filter(|k| !k.is_empty())
                }
                "UNO_CONNECT_TIMEOUT_MS" => self.http.connect_timeout_ms = parse_env(name, value)?,
                "UNO_READ_TIMEOUT_MS" => self.http.read_timeout_ms = parse_env(name, value)?,
                "UNO_MAX_RETRIES" => self.http.max_retries = parse_env(name, value)?,
                "UNO_LOG" => self.log.filter = value.to_owned(),
                "UNO_LOG_FORMAT" => {
                    self.log.format = match value.to_ascii_lowercase().as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        _ => {
                            return Err(ConfigError::Env {
                                name: name.to_owned(),
                                value: value.to_owned(),
                                problem: "expected `text` or `json`".to_owned(),
                            });
                        }
                    }
                }
                _ if self.metrics.apply_env(name, value)? => {}
                other => warnings.push(format!(
                    "ignoring unknown environment variable {other}; `uno config` lists the known ones"
                )),
            }
        }
        if let Some(url) = uno_database_url.filter(|u| !u.is_empty()) {
            self.database.url = url;
        }
        Ok(warnings)
    }

    fn first_upstream(&mut self) -> &mut UpstreamConfig {
        if self.upstreams.is_empty() {
            self.upstreams.push(Config::default().upstreams.remove(0));
        }
        &mut self.upstreams[0]
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.upstreams.is_empty() {
            return Err(ConfigError::Invalid(
                "no upstream configured; add an [[upstreams]] table or set UNO_UPSTREAM_URL".into(),
            ));
        }
        for upstream in &self.upstreams {
            let url = upstream.url.as_str();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "upstream {:?}: url {url:?} must start with http:// or https://",
                    upstream.name
                )));
            }
        }
        if self.server.max_body_bytes == 0 {
            return Err(ConfigError::Invalid(
                "server.max_body_bytes must be greater than 0".into(),
            ));
        }
        let server = &self.server;
        if server.header_timeout_secs == 0
            || server.body_timeout_secs == 0
            || server.idle_timeout_secs == 0
            || server.max_connections == 0
        {
            return Err(ConfigError::Invalid(
                "server.header_timeout_secs, body_timeout_secs, idle_timeout_secs and \
                 max_connections must be greater than 0"
                    .into(),
            ));
        }
        if self.http.read_timeout_ms == 0 || self.http.connect_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "http.connect_timeout_ms and http.read_timeout_ms must be greater than 0".into(),
            ));
        }
        let db = self.database.url.as_str();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(
                "database.url (DATABASE_URL) must start with sqlite: or postgres://".into(),
            ));
        }
        let w = &self.log_writer;
        if w.batch_size == 0
            || w.queue_capacity == 0
            || w.queue_max_bytes == 0
            || w.batch_max_bytes == 0
            || w.journal_segment_bytes == 0
        {
            return Err(ConfigError::Invalid(
                "log_writer.batch_size, queue_capacity, queue_max_bytes, batch_max_bytes and journal_segment_bytes must be greater than 0".into(),
            ));
        }
        if w.durability_window_ms < 10 {
            return Err(ConfigError::Invalid(format!(
                "log_writer.durability_window_ms must be at least 10 (a batch needs time to reach the database or the journal), not {}",
                w.durability_window_ms
            )));
        }
        if self.admin.key.as_deref().is_some_and(|k| k.len() < 16) {
            return Err(ConfigError::Invalid(
                "admin.key (UNO_ADMIN_KEY) must be at least 16 characters".into(),
            ));
        }
        self.learn.validate().map_err(ConfigError::Invalid)?;
        self.metrics.validate().map_err(ConfigError::Invalid)?;
        if let Some(key) = self.auth.keys.iter().find(|k| k.key.trim().is_empty()) {
            return Err(ConfigError::Invalid(format!(
                "auth.keys: a key for tenant {:?} is empty",
                key.tenant
            )));
        }
        Ok(())
    }
}

fn parse_env<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|err: T::Err| ConfigError::Env {
            name: name.to_owned(),
            value: value.to_owned(),
            problem: err.to_string(),
        })
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::Env {
            name: name.to_owned(),
            value: value.to_owned(),
            problem: "expected true or false".to_owned(),
        }),
    }
}

fn parse_keys(value: &str) -> Vec<ApiKeyConfig> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((tenant, key)) if !tenant.is_empty() => ApiKeyConfig {
                key: key.to_owned(),
                tenant: tenant.to_owned(),
            },
            _ => ApiKeyConfig {
                key: item.to_owned(),
                tenant: default_tenant(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        config.validate().unwrap();
    }

    #[test]
    fn file_values_are_read_and_unknown_keys_rejected() {
        let config = Config::from_toml(
            r#"
            [server]
            listen = "0.0.0.0:9000"
            [[upstreams]]
            name = "vllm"
            url = "http://10.0.0.2:8000/v1"
            models = ["qwen*"]
            [[auth.keys]]
            key = "k1"
            tenant = "acme"
            "#,
        )
        .unwrap();
        assert_eq!(config.server.listen.port(), 9000);
        assert_eq!(config.upstreams[0].models, vec!["qwen*"]);
        assert_eq!(config.auth.keys[0].tenant, "acme");

        let err = Config::from_toml("[server]\nlisten_addr = \"x\"").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let mut config = Config::default();
        let warnings = config
            .apply_env([
                ("UNO_LISTEN", "127.0.0.1:9999"),
                ("UNO_UPSTREAM_URL", "http://127.0.0.1:1/v1"),
                ("UNO_UPSTREAM_API_KEY", "up-key"),
                ("UNO_API_KEYS", "k1, acme=k2"),
                ("UNO_AUTH_DISABLED", "false"),
                ("UNO_MAX_RETRIES", "5"),
                ("UNO_LOG_FORMAT", "JSON"),
                ("UNO_TYPO", "1"),
                ("PATH", "/bin"),
            ])
            .unwrap();
        assert_eq!(config.server.listen.port(), 9999);
        assert_eq!(config.upstreams[0].url, "http://127.0.0.1:1/v1");
        assert_eq!(config.upstreams[0].api_key.as_deref(), Some("up-key"));
        assert_eq!(config.auth.keys.len(), 2);
        assert_eq!(config.auth.keys[0].tenant, "default");
        assert_eq!(config.auth.keys[1].tenant, "acme");
        assert_eq!(config.auth.keys[1].key, "k2");
        assert_eq!(config.http.max_retries, 5);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("UNO_TYPO"));
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let err = Config::default()
            .apply_env([("UNO_MAX_BODY_BYTES", "lots")])
            .unwrap_err();
        assert!(err.to_string().contains("UNO_MAX_BODY_BYTES"), "{err}");
        let err = Config::default()
            .apply_env([("UNO_AUTH_DISABLED", "maybe")])
            .unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");
    }

    #[test]
    fn validation_catches_bad_upstream_url() {
        let mut config = Config::default();
        config.upstreams[0].url = "api.openai.com".into();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("http://")
        );
        config.upstreams.clear();
        assert!(config.validate().is_err());
    }

    #[test]
    fn every_env_var_is_handled() {
        for (name, _) in ENV_VARS {
            let value = match *name {
                "UNO_LISTEN" | "UNO_METRICS_LISTEN" => "127.0.0.1:1",
                "UNO_AUTH_DISABLED" => "true",
                "UNO_LOG_FORMAT" => "text",
                "UNO_WORKER_IN_SERVE" => "false",
                "UNO_EMBEDDER" => "hashing",
                "UNO_UPSTREAM_URL"
                | "UNO_UPSTREAM_API_KEY"
                | "UNO_API_KEYS"
                | "UNO_LOG"
                | "UNO_CONFIG" => "x",
                _ => "7",
            };
            let warnings = Config::default().apply_env([(*name, value)]).unwrap();
            assert!(warnings.is_empty(), "{name} is listed but not handled");
        }
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The shipped example must parse to exactly the defaults, so it cannot
    /// drift from the code it documents.
    #[test]
    fn example_config_is_the_defaults() {
        let text = include_str!("../../../config/uno.example.toml");
        assert_eq!(Config::from_toml(text).unwrap(), Config::default());
        for (name, _) in ENV_VARS {
            if !matches!(
                *name,
                "UNO_CONFIG"
                    | "UNO_API_KEYS"
                    | "UNO_DATABASE_URL"
                    | "UNO_ADMIN_KEY"
                    | "UNO_LEARN_API_KEY"
            ) {
                assert!(
                    text.contains(name),
                    "example config does not mention {name}"
                );
            }
        }
    }
}

#[cfg(test)]
mod database_env {
    use super::*;

    #[test]
    fn database_url_comes_from_either_variable() {
        let mut c = Config::default();
        c.apply_env([("DATABASE_URL", "postgres://a/b")]).unwrap();
        assert_eq!(c.database.url, "postgres://a/b");
        let mut c = Config::default();
        c.apply_env([
            ("UNO_DATABASE_URL", "sqlite:x.db"),
            ("DATABASE_URL", "postgres://a/b"),
        ])
        .unwrap();
        assert_eq!(c.database.url, "sqlite:x.db", "UNO_DATABASE_URL wins");
        c.database.url = "mysql://x".into();
        assert!(c.validate().is_err());
    }
}
