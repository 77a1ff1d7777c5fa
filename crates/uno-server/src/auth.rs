//! Client authentication: `Authorization: Bearer <uno key>` names a tenant.
//!
//! Keys are held only as SHA-256 digests, so the process never keeps the
//! secrets themselves after start and a lookup costs one hash. Two sets are
//! checked: keys from configuration, and keys from the database
//! (`uno keys create`), which a background task reloads every few seconds
//! into an atomically swapped map, so a revoked key stops working within
//! seconds and the request path never reads the database.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use uno_core::ApiError;
use uno_core::config::AuthConfig;

/// The tenant a request belongs to; everything it produces carries it.
pub type Tenant = Arc<str>;

/// Checks client keys against the configured set.
#[derive(Debug)]
pub struct Authenticator {
    disabled: bool,
    default_tenant: Tenant,
    keys: HashMap<[u8; 32], Tenant>,
    stored: ArcSwap<HashMap<[u8; 32], Tenant>>,
}

impl Authenticator {
    /// Builds the digest map from configuration.
    pub fn new(config: &AuthConfig) -> Self {
        let keys = config
            .keys
            .iter()
            .map(|k| (digest(k.key.trim()), Arc::from(k.tenant.as_str())))
            .collect();
        Authenticator {
            disabled: config.disabled,
            default_tenant: Arc::from("default"),
            keys,
            stored: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// Whether any key could ever succeed; used to warn at start.
    pub fn accepts_nothing(&self) -> bool {
        !self.disabled && self.keys.is_empty() && self.stored.load().is_empty()
    }

    /// Replaces the set of keys loaded from the database.
    pub fn replace_stored_keys(&self, keys: Vec<([u8; 32], String)>) {
        let map = keys
            .into_iter()
            .map(|(hash, tenant)| (hash, Arc::from(tenant.as_str())))
            .collect();
        self.stored.store(Arc::new(map));
    }

    fn lookup(&self, digest: &[u8; 32]) -> Option<Tenant> {
        self.keys
            .get(digest)
            .cloned()
            .or_else(|| self.stored.load().get(digest).cloned())
    }

    /// The tenant for a request's headers, or a 401 that says what is wrong.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Tenant, ApiError> {
        if self.disabled {
            return Ok(self.default_tenant.clone());
        }
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing API key: send your uno key as `Authorization: Bearer <key>` \
                 (create keys in auth.keys or UNO_API_KEYS)",
            ));
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "malformed Authorization header: expected `Authorization: Bearer <key>`",
                )
            })?;
        self.lookup(&digest(key)).ok_or_else(|| {
            ApiError::unauthorized(format!(
                "incorrect API key provided: {}; use a key configured for this uno server",
                redact(key)
            ))
        })
    }
}

/// Loads the stored keys, then reloads them every `interval`. Each load
/// that changes the set is also written to `cache` (when given), so that a
/// `uno serve` started while the database is unreachable still knows the
/// keys it last saw ([`load_key_cache`]).
pub async fn spawn_key_refresh(
    state: crate::AppState,
    store: uno_store::Store,
    interval: Duration,
    cache: Option<PathBuf>,
) -> tokio::task::JoinHandle<()> {
    let mut last = refresh_once(&state, &store, cache.as_deref(), None).await;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            last = refresh_once(&state, &store, cache.as_deref(), last).await;
        }
    })
}

/// One reload; returns the set now served (`last` when the load failed).
async fn refresh_once(
    state: &crate::AppState,
    store: &uno_store::Store,
    cache: Option<&Path>,
    last: Option<Vec<([u8; 32], String)>>,
) -> Option<Vec<([u8; 32], String)>> {
    match store.active_keys().await {
        Ok(mut keys) => {
            keys.sort();
            if last.as_ref() != Some(&keys) {
                state.auth().replace_stored_keys(keys.clone());
                if let Some(path) = cache
                    && let Err(err) = save_key_cache(path, &keys)
                {
                    tracing::warn!(%err, path = %path.display(), "cannot write the API key cache");
                }
            }
            Some(keys)
        }
        Err(err) => {
            tracing::warn!(%err, "cannot reload API keys; keeping the previous set");
            last
        }
    }
}

/// Writes the stored keys' digests (never the keys) and tenants to
/// `path`, readable by its owner only, replacing it whole (a crash leaves
/// the old file or the new one, never half of one).
pub fn save_key_cache(path: &Path, keys: &[([u8; 32], String)]) -> std::io::Result<()> {
    use std::io::Write;
    let lines: Vec<serde_json::Value> = keys
        .iter()
        .map(|(hash, tenant)| {
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            serde_json::json!({"sha256": hex, "tenant": tenant})
        })
        .collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(serde_json::Value::Array(lines).to_string().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The keys [`save_key_cache`] wrote, or `None` when there is no readable
/// cache.
pub fn load_key_cache(path: &Path) -> Option<Vec<([u8; 32], String)>> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mut keys = Vec::new();
    for entry in value.as_array()? {
        let hex = entry["sha256"].as_str()?;
        let tenant = entry["tenant"].as_str()?;
        if hex.len() != 64 {
            return None;
        }
        let mut hash = [0u8; 32];
        for (i, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        keys.push((hash, tenant.to_owned()));
    }
    Some(keys)
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The digest a key is compared by (client and admin keys alike).
pub fn key_digest(key: &str) -> [u8; 32] {
    digest(key.trim())
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// Shows just enough of a key for a person to tell which one they sent.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "****".to_owned();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use uno_core::config::ApiKeyConfig;

    fn auth() -> Authenticator {
        Authenticator::new(&AuthConfig {
            disabled: false,
            keys: vec![
                ApiKeyConfig {
                    key: "uno-key-alpha-0001".into(),
                    tenant: "alpha".into(),
                },
                ApiKeyConfig {
                    key: "uno-key-beta-0002".into(),
                    tenant: "beta".into(),
                },
            ],
            ..AuthConfig::default()
        })
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn keys_map_to_tenants() {
        let a = auth();
        assert_eq!(
            &*a.authenticate(&headers("Bearer uno-key-alpha-0001"))
                .unwrap(),
            "alpha"
        );
        assert_eq!(
            &*a.authenticate(&headers("Bearer uno-key-beta-0002"))
                .unwrap(),
            "beta"
        );
    }

    #[test]
    fn wrong_missing_and_malformed_keys_are_401() {
        let a = auth();
        let err = a
            .authenticate(&headers("Bearer uno-key-gamma-0003"))
            .unwrap_err();
        assert_eq!(err.status, 401);
        assert!(err.message.contains("uno****0003"), "{}", err.message);
        assert!(!err.message.contains("gamma"), "key must be redacted");
        assert_eq!(a.authenticate(&HeaderMap::new()).unwrap_err().status, 401);
        assert_eq!(
            a.authenticate(&headers("Basic abc")).unwrap_err().status,
            401
        );
    }

    #[test]
    fn stored_keys_are_swapped_in_and_out() {
        let a = auth();
        let h = headers("Bearer uno-sk-stored-0003");
        assert!(a.authenticate(&h).is_err());
        a.replace_stored_keys(vec![(digest("uno-sk-stored-0003"), "gamma".into())]);
        assert_eq!(&*a.authenticate(&h).unwrap(), "gamma");
        a.replace_stored_keys(vec![]);
        assert!(a.authenticate(&h).is_err(), "revoked keys stop working");
    }

    #[test]
    fn disabled_auth_uses_default_tenant() {
        let a = Authenticator::new(&AuthConfig {
            disabled: true,
            ..AuthConfig::default()
        });
        assert_eq!(&*a.authenticate(&HeaderMap::new()).unwrap(), "default");
        assert!(!a.accepts_nothing());
        assert!(Authenticator::new(&AuthConfig::default()).accepts_nothing());
    }
}
