//! Deciding, per request, which learned experience applies (method §6.2
//! steps 1–3): none without a snapshot or when switched off; none for
//! requests the method does not apply to (unless `learn.route_tools` /
//! `learn.route_response_format` say otherwise, tools or a response
//! format; and a conversation without user text); else the nearest cluster
//! of the request's own tenant to the user's own words
//! ([`uno_core::query`]), if they lie within its unseen threshold, and that
//! cluster's mode, less a deterministic holdout share.
//!
//! Every turn of a conversation is routed, not only the first: a follow-up
//! on a learned topic is routed on its user's words (with earlier user
//! turns when it is short) and gets the same treatment a first turn on that
//! topic gets.
//!
//! [`decide`] is the pure part (the routing text, the cluster, the mode);
//! serving ([`plan`]) and the explanation of `uno route` and the admin API
//! ([`super::explain`]) both call it, so an explanation cannot drift from
//! what serving does.

use std::sync::Arc;

use http::HeaderMap;
use uno_core::InteractionId;
use uno_core::interaction::{ExperienceTrace, ServePath};
use uno_core::snapshot::Mode;
use uno_core::wire::ChatRequestView;

use super::loaded::{LoadedCluster, LoadedSnapshot, Routed};

/// The request header that switches learned experience off for one request.
pub const LEARNING_HEADER: &str = "x-uno-learning";

/// The serving side of `[learn]`.
#[derive(Debug, Clone, Default)]
pub struct ServingPolicy {
    /// Percent of treated requests served untouched (path `holdout`).
    pub holdout_percent: u8,
    /// Tenants never treated.
    pub disabled_tenants: Vec<String>,
    /// Route and log only; serve untouched.
    pub shadow: bool,
    /// Route requests with tools, functions or a tool choice.
    pub route_tools: bool,
    /// Route requests with a `response_format`.
    pub route_response_format: bool,
}

/// What to do with one request.
#[derive(Debug)]
pub struct Plan {
    /// What is logged and sent back in headers.
    pub trace: ExperienceTrace,
    /// The snapshot the request is served under, held for its whole life.
    pub snapshot: Option<Arc<LoadedSnapshot>>,
    /// The cluster it was routed to (index into the snapshot's clusters).
    pub cluster: Option<usize>,
    /// How to serve it.
    pub action: Action,
}

/// How to serve a request.
#[derive(Debug)]
pub enum Action {
    /// Forward the client's bytes untouched.
    Forward,
    /// Add the cluster's rule block to the system message.
    Primary,
    /// Draft, critique with the cluster's rules, revise.
    Reflective {
        /// Where the query was routed.
        routed: Routed,
        /// The query text (for the critic and revision prompts).
        query: String,
    },
}

impl Plan {
    fn forward(snapshot: Option<Arc<LoadedSnapshot>>) -> Plan {
        Plan {
            trace: ExperienceTrace {
                snapshot_version: snapshot.as_ref().map(|s| s.version),
                path: Some(ServePath::Passthrough),
                ..ExperienceTrace::default()
            },
            snapshot,
            cluster: None,
            action: Action::Forward,
        }
    }

    /// The routed cluster.
    pub fn routed_cluster(&self) -> Option<&LoadedCluster> {
        self.snapshot.as_ref()?.clusters.get(self.cluster?)
    }
}

/// Plans how to serve a parsed chat request of `tenant`.
pub fn plan(
    snapshot: Option<Arc<LoadedSnapshot>>,
    policy: &ServingPolicy,
    tenant: &str,
    id: InteractionId,
    headers: &HeaderMap,
    view: &ChatRequestView<'_>,
) -> Plan {
    let Some(loaded) = snapshot.as_ref().filter(|s| s.routes()) else {
        return Plan::forward(snapshot);
    };
    if learning_off(headers) || policy.disabled_tenants.iter().any(|t| t == tenant) {
        return Plan::forward(snapshot);
    }
    let Ok(decision) = decide(loaded, policy, view) else {
        return Plan::forward(snapshot);
    };
    let Some(routed) = decision.routed else {
        return Plan::forward(snapshot);
    };
    let Some(cluster) = loaded.clusters.get(routed.cluster) else {
        return Plan::forward(snapshot);
    };
    let mut trace = ExperienceTrace {
        snapshot_version: Some(loaded.version),
        cluster_id: Some(cluster.id.clone()),
        path: Some(ServePath::Passthrough),
        ..ExperienceTrace::default()
    };
    let Some(mut path) = decision.treated else {
        return Plan {
            trace,
            snapshot,
            cluster: Some(routed.cluster),
            action: Action::Forward,
        };
    };
    if in_holdout(id, policy.holdout_percent) {
        path = ServePath::Holdout;
    }
    if policy.shadow {
        trace.shadow = Some(path);
        path = ServePath::Passthrough;
    }
    trace.path = Some(path);
    let cluster = Some(routed.cluster);
    let action = match path {
        ServePath::Primary => Action::Primary,
        ServePath::Reflective => Action::Reflective {
            routed,
            query: reflective_query(view),
        },
        ServePath::Passthrough | ServePath::Holdout => Action::Forward,
    };
    Plan {
        trace,
        snapshot,
        cluster,
        action,
    }
}

/// Why a request is not routed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It has tools, functions or a tool choice, and `learn.route_tools`
    /// is off.
    Tools,
    /// It asks for a `response_format`, and `learn.route_response_format`
    /// is off.
    ResponseFormat,
    /// No user message has text (nothing of the user's to route on).
    NoUserText,
}

impl Skip {
    /// Why, in words.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Tools => {
                "the request has tools, functions or a tool choice (learn.route_tools is off)"
            }
            Skip::ResponseFormat => {
                "the request asks for a response_format (learn.route_response_format is off)"
            }
            Skip::NoUserText => "no user message has text to route on",
        }
    }
}

/// What a snapshot decides for a request before the holdout share, shadow
/// mode and the switches of one request or tenant apply.
#[derive(Debug)]
pub struct Decision {
    /// The cluster it was routed to; `None` when it is unseen (beyond its
    /// nearest cluster's threshold).
    pub routed: Option<Routed>,
    /// The routed cluster's treatment: `None` for a passthrough cluster
    /// (or a primary one without a block).
    pub treated: Option<ServePath>,
}

/// Routes `view` in `loaded` on its routing text
/// ([`uno_core::query::user_words`]): the pure step serving and
/// explanations share.
pub fn decide(
    loaded: &LoadedSnapshot,
    policy: &ServingPolicy,
    view: &ChatRequestView<'_>,
) -> Result<Decision, Skip> {
    if let Some(skip) = excluded(view, policy) {
        return Err(skip);
    }
    let text = uno_core::query::user_words(&view.messages);
    if text.is_empty() {
        return Err(Skip::NoUserText);
    }
    let routed = loaded.route_parts(&text);
    let treated = routed
        .as_ref()
        .and_then(|r| loaded.clusters.get(r.cluster))
        .and_then(treatment);
    Ok(Decision { routed, treated })
}

/// The path a routed cluster's mode gives.
fn treatment(cluster: &LoadedCluster) -> Option<ServePath> {
    match cluster.mode {
        Mode::Passthrough => None,
        Mode::Primary if cluster.block.is_empty() => None,
        Mode::Primary => Some(ServePath::Primary),
        Mode::Reflective => Some(ServePath::Reflective),
    }
}

/// `x-uno-learning: off` (or `false`, `0`, `no`).
fn learning_off(headers: &HeaderMap) -> bool {
    headers
        .get(LEARNING_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim();
            ["off", "false", "0", "no"]
                .iter()
                .any(|off| v.eq_ignore_ascii_case(off))
        })
}

/// Why the request is outside what UNO applies to, if it is: its answer
/// must be free text, so without tools and without a requested output
/// format, unless the policy lets either in (the block goes into the
/// system message whatever the request asks for, and a reflective draft
/// that is a tool call, with no text to critique, is answered as it is).
/// Any turn of a conversation qualifies.
fn excluded(view: &ChatRequestView<'_>, policy: &ServingPolicy) -> Option<Skip> {
    let tools = view.tools.is_some() || view.functions.is_some() || view.tool_choice.is_some();
    if tools && !policy.route_tools {
        Some(Skip::Tools)
    } else if view.response_format.is_some() && !policy.route_response_format {
        Some(Skip::ResponseFormat)
    } else {
        None
    }
}

/// Whether the request is routed at all (see [`excluded`]).
#[cfg(test)]
fn qualifies(view: &ChatRequestView<'_>, policy: &ServingPolicy) -> bool {
    excluded(view, policy).is_none()
}

/// The query the reflective critic and revision are given. A first turn:
/// every message's text, blank-line separated (the prompt, as the method's
/// query and the learning log's). A later turn: the conversation with each
/// message's role, so the critic judges, and the revision rewrites, the
/// draft as an answer to the latest turn in its context (the revision call
/// carries only its own prompt, not the client's messages).
pub fn reflective_query(view: &ChatRequestView<'_>) -> String {
    let later_turn = view
        .messages
        .iter()
        .any(|m| m.role != "system" && m.role != "developer" && m.role != "user");
    let mut out = String::new();
    for m in &view.messages {
        let text = m.text();
        if text.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        if later_turn {
            out.push_str(role_label(&m.role));
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// How [`reflective_query`] names a role.
fn role_label(role: &str) -> &str {
    match role {
        "system" | "developer" => "System",
        "user" => "User",
        "assistant" => "Assistant",
        "tool" | "function" => "Tool",
        other => other,
    }
}

/// Whether interaction `id` falls in the holdout share: a hash of the id,
/// so the choice is random across requests yet the same for one id.
pub fn in_holdout(id: InteractionId, percent: u8) -> bool {
    if percent == 0 {
        return false;
    }
    let v = id.0.as_u128();
    let mut z = (v as u64) ^ ((v >> 64) as u64);
    // splitmix64's finaliser: a UUIDv7's leading bits are a clock.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z % 100 < u64::from(percent)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn holdout_share_is_close_to_the_percent() {
        let n = 20_000;
        let held = (0..n)
            .filter(|_| in_holdout(InteractionId::new(), 10))
            .count();
        assert!((1_600..2_400).contains(&held), "{held} of {n}");
        let id = InteractionId::new();
        assert_eq!(in_holdout(id, 37), in_holdout(id, 37));
        assert!(!in_holdout(id, 0));
        assert!(in_holdout(id, 100));
    }

    #[test]
    fn text_requests_of_any_turn_qualify() {
        let strict = ServingPolicy::default();
        for body in [
            r#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"Q"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"Q"},{"role":"assistant","content":"A"},{"role":"user","content":"more"}]}"#,
        ] {
            let view = ChatRequestView::parse(body.as_bytes()).unwrap();
            assert!(qualifies(&view, &strict), "{body}");
        }
        for body in [
            r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"tools":[]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"functions":[]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"tool_choice":"none"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"response_format":{"type":"json_object"}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"Q"},{"role":"assistant","content":"A"},{"role":"user","content":"more"}],"tools":[]}"#,
        ] {
            let view = ChatRequestView::parse(body.as_bytes()).unwrap();
            assert!(!qualifies(&view, &strict), "{body}");
        }
    }

    #[test]
    fn the_reflective_query_is_the_prompt_or_the_labelled_conversation() {
        let first = br#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"Q"}]}"#;
        let view = ChatRequestView::parse(first).unwrap();
        assert_eq!(reflective_query(&view), "S\n\nQ");
        let later = br#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"Q"},{"role":"assistant","content":"A"},{"role":"user","content":"and \"more\"?"}]}"#;
        let view = ChatRequestView::parse(later).unwrap();
        assert_eq!(
            reflective_query(&view),
            "System: S\n\nUser: Q\n\nAssistant: A\n\nUser: and \"more\"?"
        );
    }

    #[test]
    fn the_policy_lets_tools_or_a_response_format_through() {
        let tools = ServingPolicy {
            route_tools: true,
            ..ServingPolicy::default()
        };
        let format = ServingPolicy {
            route_response_format: true,
            ..ServingPolicy::default()
        };
        let both = ServingPolicy {
            route_tools: true,
            route_response_format: true,
            ..ServingPolicy::default()
        };
        let parse = |b: &'static str| ChatRequestView::parse(b.as_bytes()).unwrap();
        let with_tools = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"tools":[],"tool_choice":"auto"}"#,
        );
        let with_functions =
            parse(r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"functions":[]}"#);
        let with_format = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"response_format":{"type":"json_object"}}"#,
        );
        let with_both = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"tools":[],"response_format":{"type":"json_object"}}"#,
        );
        let later_turn = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"Q"},{"role":"assistant","content":"A"},{"role":"user","content":"more"}],"tools":[]}"#,
        );
        assert!(qualifies(&with_tools, &tools) && qualifies(&with_functions, &tools));
        assert!(!qualifies(&with_format, &tools) && !qualifies(&with_both, &tools));
        assert!(qualifies(&with_format, &format) && !qualifies(&with_tools, &format));
        assert!(qualifies(&with_both, &both));
        assert!(
            qualifies(&later_turn, &both),
            "later turns qualify as first ones"
        );
    }

    #[test]
    fn the_learning_header_switches_off() {
        let mut h = HeaderMap::new();
        assert!(!learning_off(&h));
        h.insert(LEARNING_HEADER, "Off".parse().unwrap());
        assert!(learning_off(&h));
        h.insert(LEARNING_HEADER, "on".parse().unwrap());
        assert!(!learning_off(&h));
    }
}
