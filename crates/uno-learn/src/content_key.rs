//! The one key the worker gives content it caches or compares by: a
//! SHA-256 over length-prefixed parts (so `["ab", "c"]` and `["a", "bc"]`
//! differ), as 32 hex characters. Learning logs (their feedback hash),
//! validation outcomes and consolidation replies are keyed this way.

use sha2::{Digest, Sha256};

/// The key of `parts`, in order.
pub fn content_key<S: AsRef<str>>(parts: &[S]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        let part = part.as_ref();
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::content_key;

    #[test]
    fn parts_are_length_prefixed_and_ordered() {
        assert_ne!(content_key(&["ab", "c"]), content_key(&["a", "bc"]));
        assert_ne!(content_key(&["a", "b"]), content_key(&["b", "a"]));
        assert_eq!(content_key(&["a", "b"]), content_key(&["a", "b"]));
        assert_eq!(content_key(&["x"]).len(), 32);
    }
}
