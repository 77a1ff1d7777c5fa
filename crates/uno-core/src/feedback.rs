//! Feedback on interactions: explicit (thumbs, comments, corrections posted
//! to `/v1/feedback`) and implicit (a user's follow-up turn in a conversation
//! that continues a logged answer, which is the signal the UNO method learns
//! from).

use std::time::SystemTime;

use uuid::Uuid;

use crate::ids::InteractionId;

/// Thumbs up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rating {
    /// The answer helped.
    Up,
    /// The answer did not help.
    Down,
}

impl Rating {
    /// `+1` or `-1`, as stored.
    pub fn as_i16(self) -> i16 {
        match self {
            Rating::Up => 1,
            Rating::Down => -1,
        }
    }

    /// The stored value back to a rating.
    pub fn from_i16(value: i16) -> Option<Rating> {
        match value {
            1 => Some(Rating::Up),
            -1 => Some(Rating::Down),
            _ => None,
        }
    }
}

/// Feedback a client posted about one interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplicitFeedback {
    /// Stable per (tenant, interaction, end user): see [`explicit_feedback_id`].
    pub id: Uuid,
    /// The tenant whose key posted it.
    pub tenant: String,
    /// The interaction it is about.
    pub interaction_id: InteractionId,
    /// Who gave it; empty when the client did not say.
    pub end_user: String,
    /// Thumbs up or down, if given.
    pub rating: Option<Rating>,
    /// Free text, if given.
    pub comment: Option<String>,
    /// What the answer should have been, if given.
    pub expected_output: Option<String>,
    /// When it was received.
    pub at: SystemTime,
}

/// Namespace for feedback ids (a fixed random UUID).
const FEEDBACK_NAMESPACE: Uuid = Uuid::from_u128(0x4d1e_7a52_9c0b_4f55_8a3e_61d2_b7c4_09f1);

/// The id of a user's explicit feedback on an interaction. Deterministic, so
/// that posting twice updates one row instead of adding a second, without
/// the API having to read the database first.
pub fn explicit_feedback_id(tenant: &str, interaction: InteractionId, end_user: &str) -> Uuid {
    let name = format!("explicit\u{0}{tenant}\u{0}{}\u{0}{end_user}", interaction.0);
    Uuid::new_v5(&FEEDBACK_NAMESPACE, name.as_bytes())
}

/// The id of the implicit feedback that the follow-up request `source`
/// gives. One follow-up gives at most one such row, however often the log
/// record carrying it is replayed.
pub fn implicit_feedback_id(tenant: &str, source: InteractionId) -> Uuid {
    let name = format!("implicit\u{0}{tenant}\u{0}{}", source.0);
    Uuid::new_v5(&FEEDBACK_NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_ids_are_stable_per_interaction_and_user() {
        let i = InteractionId::new();
        let a = explicit_feedback_id("t", i, "u1");
        assert_eq!(a, explicit_feedback_id("t", i, "u1"));
        assert_ne!(a, explicit_feedback_id("t", i, "u2"));
        assert_ne!(a, explicit_feedback_id("t2", i, "u1"));
        assert_ne!(a, explicit_feedback_id("t", InteractionId::new(), "u1"));
        assert_ne!(a, implicit_feedback_id("t", i));
    }

    #[test]
    fn ratings_round_trip() {
        for r in [Rating::Up, Rating::Down] {
            assert_eq!(Rating::from_i16(r.as_i16()), Some(r));
        }
        assert_eq!(Rating::from_i16(0), None);
    }
}
