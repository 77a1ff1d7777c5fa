//! Client API keys: generated here, stored only as SHA-256 digests.
//!
//! Keys are 32 random bytes, so a fast hash is enough (no password-style
//! stretching is needed against guessing); the digest is also what the
//! server's cache is keyed by, so a lookup is one hash.

use chrono::{DateTime, Utc};
use rand::Rng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What is known about a stored key (never the secret).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    /// The key's id.
    pub id: Uuid,
    /// The tenant it names.
    pub tenant: String,
    /// The first characters of the secret, to tell keys apart.
    pub prefix: String,
    /// An optional label.
    pub name: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A newly created key: its record, its secret (shown once) and the digest
/// that is stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The stored part.
    pub info: KeyInfo,
    /// The secret to hand to the user, once.
    pub secret: String,
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
}

/// The digest under which a key is stored and looked up.
pub fn hash_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.trim().as_bytes()).into()
}

/// A fresh key for `tenant`.
pub fn generate(tenant: &str, name: Option<&str>) -> NewKey {
    let bytes: [u8; 24] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret = format!("uno-sk-{hex}");
    let prefix = secret[..19].to_owned();
    NewKey {
        hash: hash_key(&secret),
        info: KeyInfo {
            id: Uuid::now_v7(),
            tenant: tenant.to_owned(),
            prefix,
            name: name.map(str::to_owned),
            created_at: Utc::now(),
            revoked_at: None,
        },
        secret,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hash_consistently() {
        let a = generate("t", None);
        let b = generate("t", Some("ci"));
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("uno-sk-"));
        assert_eq!(a.secret.len(), 7 + 48);
        assert_eq!(hash_key(&a.secret), a.hash);
        assert!(a.secret.starts_with(&a.info.prefix));
    }
}
