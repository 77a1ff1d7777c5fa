//! Interaction ids: UUIDv7, so that ids sort by time and index well.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The id of one proxied exchange. Feedback refers to it, logs key on it, and
/// it is returned to the client in `x-uno-interaction-id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InteractionId(pub Uuid);

impl InteractionId {
    /// A fresh time-ordered id.
    pub fn new() -> Self {
        InteractionId(Uuid::now_v7())
    }

    /// Renders into a stack buffer, so that putting the id in a header does
    /// not allocate.
    pub fn encode<'b>(&self, buf: &'b mut [u8; uuid::fmt::Hyphenated::LENGTH]) -> &'b str {
        self.0.hyphenated().encode_lower(buf)
    }
}

impl Default for InteractionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for InteractionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Why a client-supplied interaction id was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "x-uno-interaction-id must be a UUID (for example 0190b6f4-8c1e-7d3a-9f00-1a2b3c4d5e6f), got {0:?}"
)]
pub struct InvalidInteractionId(pub String);

impl FromStr for InteractionId {
    type Err = InvalidInteractionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s.trim())
            .map(InteractionId)
            .map_err(|_| InvalidInteractionId(s.chars().take(80).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_v7_and_increase() {
        let a = InteractionId::new();
        let b = InteractionId::new();
        assert_eq!(a.0.get_version_num(), 7);
        assert!(b > a);
    }

    #[test]
    fn parses_uuid_and_rejects_garbage() {
        let id: InteractionId = "0190b6f4-8c1e-7d3a-9f00-1a2b3c4d5e6f".parse().unwrap();
        let mut buf = [0u8; 36];
        assert_eq!(id.encode(&mut buf), "0190b6f4-8c1e-7d3a-9f00-1a2b3c4d5e6f");
        let err = "not-a-uuid".parse::<InteractionId>().unwrap_err();
        assert!(err.to_string().contains("must be a UUID"));
    }
}
