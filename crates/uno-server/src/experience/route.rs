//! Deciding, per request, which learned experience applies (method §6.2
//! steps 1–3): none without a snapshot or when switched off; none for
//! requests the method was not trained on (later turns of a conversation,
//! and, unless `learn.route_tools` / `learn.route_response_format` say
//! otherwise, tools or a response format); else the nearest cluster of the
//! request's own tenant, if the query lies within its unseen threshold, and
//! that cluster's mode, less a deterministic holdout share.

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
    if learning_off(headers)
        || policy.disabled_tenants.iter().any(|t| t == tenant)
        || !qualifies(view, policy)
    {
        return Plan::forward(snapshot);
    }
    let parts = query_parts(view);
    let Some(routed) = loaded.route_parts(&parts) else {
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
    let treated = match cluster.mode {
        Mode::Passthrough => None,
        Mode::Primary if cluster.block.is_empty() => None,
        Mode::Primary => Some(ServePath::Primary),
        Mode::Reflective => Some(ServePath::Reflective),
    };
    let Some(mut path) = treated else {
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
            query: parts.join("\n\n"),
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

/// Whether the request is what UNO learned from and applies to: a first
/// turn (no assistant message yet) whose answer is free text, so without
/// tools and without a requested output format. Either may be let in by
/// the policy: the block goes into the system message whatever the request
/// asks for, and a reflective draft that is a tool call (no text to
/// critique) is answered as it is.
fn qualifies(view: &ChatRequestView<'_>, policy: &ServingPolicy) -> bool {
    let tools = view.tools.is_some() || view.functions.is_some() || view.tool_choice.is_some();
    (policy.route_tools || !tools)
        && (policy.route_response_format || view.response_format.is_none())
        && !view.messages.iter().any(|m| m.role == "assistant")
}

/// The query as the worker builds it from a logged request: every
/// message's text, blank-line separated, empty ones skipped.
pub fn query_text(view: &ChatRequestView<'_>) -> String {
    query_parts(view).join("\n\n")
}

/// The non-empty message texts [`query_text`] joins: routing embeds them
/// without joining (borrowed where the JSON has no escapes).
fn query_parts<'v>(view: &'v ChatRequestView<'_>) -> Vec<std::borrow::Cow<'v, str>> {
    view.messages
        .iter()
        .map(|m| m.text())
        .filter(|t| !t.is_empty())
        .collect()
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
    fn only_first_turn_text_requests_qualify() {
        let strict = ServingPolicy::default();
        let ok = br#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"Q"}]}"#;
        let view = ChatRequestView::parse(ok).unwrap();
        assert!(qualifies(&view, &strict));
        assert_eq!(query_text(&view), "S\n\nQ");
        for body in [
            r#"{"model":"m","messages":[{"role":"user","content":"Q"},{"role":"assistant","content":"A"},{"role":"user","content":"more"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"tools":[]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"functions":[]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"tool_choice":"none"}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"Q"}],"response_format":{"type":"json_object"}}"#,
        ] {
            let view = ChatRequestView::parse(body.as_bytes()).unwrap();
            assert!(!qualifies(&view, &strict), "{body}");
        }
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
        assert!(!qualifies(&later_turn, &both), "later turns never qualify");
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
