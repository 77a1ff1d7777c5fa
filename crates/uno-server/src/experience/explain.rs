//! Explaining a routing decision: which cluster a request goes to, how far
//! it lies from every cluster and each one's threshold, the path, and the
//! block (or the critic's rules) it would get. Behind `uno route` and the
//! admin API's `POST /admin/v1/tenants/{tenant}/route`.
//!
//! The decision is [`route::decide`], the same function serving calls, so
//! an explanation cannot drift from what the proxy does; only the list of
//! distances is extra, computed the way routing measures them.

use std::fmt;
#[cfg(test)]
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use uno_core::ApiError;
use uno_core::interaction::ServePath;
use uno_core::snapshot::{Mode, Snapshot};
use uno_core::wire::ChatRequestView;

use super::loaded::{LoadError, LoadedSnapshot};
use super::reflective::CRITIC_RULES;
use super::route::{self, ServingPolicy};

/// The model named in a request built from a bare text (any name does:
/// routing does not read it).
const MODEL: &str = "uno-route";

/// One cluster's distance to the routing text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterDistance {
    /// The cluster id.
    pub id: String,
    /// Its mode.
    pub mode: &'static str,
    /// The routing text's distance to the cluster: to its routing
    /// centroid, or with example routing the cosine distance to its most
    /// similar example.
    pub distance: f32,
    /// Its unseen threshold: farther texts are not its.
    pub threshold: f32,
    /// Whether the text lies within the threshold.
    pub within: bool,
    /// Whether the text has none of the cluster's defining features
    /// (`uno_core::cluster::defining_features`), or names another
    /// cluster's mark that is a stranger here
    /// (`uno_core::cluster::route_marks`), so that the cluster
    /// cannot take it whatever its distance.
    pub excluded: bool,
}

/// What a tenant's active snapshot does with one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The tenant.
    pub tenant: String,
    /// The active snapshot's version; `None` without one.
    pub snapshot_version: Option<i64>,
    /// The text routing reads: the user's own words.
    pub text: String,
    /// Every routable cluster, nearest first.
    pub clusters: Vec<ClusterDistance>,
    /// The cluster the request is routed to; `None` when unseen or not
    /// routed.
    pub cluster: Option<String>,
    /// `passthrough`, `primary` or `reflective`: how it is served (before
    /// the holdout share, which serves a random part untouched).
    pub path: &'static str,
    /// Why, in words.
    pub reason: String,
    /// The rule block added to the system message (primary).
    pub block: Option<String>,
    /// The rules the critic is shown (reflective): the cluster's served
    /// rules most like the text.
    pub critic_rules: Vec<String>,
    /// Percent of treated requests served untouched (`learn.holdout_percent`).
    pub holdout_percent: u8,
    /// Shadow mode: the path is logged but requests are served untouched.
    pub shadow: bool,
}

/// Why a request could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The request is malformed (an OpenAI-shaped 400).
    #[error("{}", .0.message)]
    BadRequest(ApiError),
    /// The active snapshot cannot be served; the proxy keeps serving the
    /// one before it.
    #[error("the active snapshot cannot be served: {0}")]
    Load(#[from] LoadError),
}

/// A chat request body for `text`, as one user message.
pub fn text_request(text: &str) -> Vec<u8> {
    serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": text}]})
        .to_string()
        .into_bytes()
}

/// A chat request body from the admin API's body: `text` (one user
/// message) or `messages`, with any other chat request field (`tools`,
/// `response_format`, …) kept, as routing reads them; `model` is optional.
pub fn request_from(mut body: Map<String, Value>) -> Result<Vec<u8>, ApiError> {
    let text = body.remove("text");
    match (text, body.contains_key("messages")) {
        (Some(_), true) => {
            return Err(ApiError::bad_request("give text or messages, not both").with_param("text"));
        }
        (Some(Value::String(text)), false) => {
            body.insert(
                "messages".to_owned(),
                serde_json::json!([{"role": "user", "content": text}]),
            );
        }
        (Some(_), false) => {
            return Err(ApiError::bad_request("text: expected a string").with_param("text"));
        }
        (None, true) => {}
        (None, false) => {
            return Err(ApiError::bad_request(
                "give the text to route (text) or a conversation (messages)",
            )
            .with_param("messages"));
        }
    }
    body.entry("model")
        .or_insert_with(|| Value::String(MODEL.to_owned()));
    Ok(Value::Object(body).to_string().into_bytes())
}

/// Explains how `tenant`'s active `snapshot` serves the chat request
/// `body` under `policy`.
pub fn explain_request(
    snapshot: Option<&Snapshot>,
    policy: &ServingPolicy,
    tenant: &str,
    body: &[u8],
) -> Result<Explanation, ExplainError> {
    let view = ChatRequestView::parse(body).map_err(ExplainError::BadRequest)?;
    let loaded = snapshot.map(LoadedSnapshot::load).transpose()?;
    Ok(explain(loaded.as_ref(), policy, tenant, &view))
}

/// Explains how `snapshot` serves `view` for `tenant` under `policy`.
pub fn explain(
    snapshot: Option<&LoadedSnapshot>,
    policy: &ServingPolicy,
    tenant: &str,
    view: &ChatRequestView<'_>,
) -> Explanation {
    let parts = uno_core::query::user_words(&view.messages);
    let mut out = Explanation {
        tenant: tenant.to_owned(),
        snapshot_version: snapshot.map(|s| s.version),
        text: uno_core::query::join(&parts),
        clusters: Vec::new(),
        cluster: None,
        path: ServePath::Passthrough.as_str(),
        reason: String::new(),
        block: None,
        critic_rules: Vec::new(),
        holdout_percent: policy.holdout_percent,
        shadow: policy.shadow,
    };
    let Some(loaded) = snapshot else {
        out.reason = "the tenant has no active snapshot".to_owned();
        return out;
    };
    if !parts.is_empty() {
        out.clusters = loaded
            .distances(&parts)
            .into_iter()
            .filter_map(|(i, distance, excluded)| {
                let c = loaded.clusters.get(i)?;
                Some(ClusterDistance {
                    id: c.id.to_string(),
                    mode: c.mode.as_str(),
                    distance,
                    threshold: c.threshold,
                    within: !excluded && distance <= c.threshold,
                    excluded,
                })
            })
            .collect();
    }
    if !loaded.routes() {
        out.reason = "the active snapshot has no routing data".to_owned();
        return out;
    }
    if policy.disabled_tenants.iter().any(|t| t == tenant) {
        out.reason = "the tenant is in learn.disabled_tenants".to_owned();
        return out;
    }
    let decision = match route::decide(loaded, policy, view) {
        Ok(decision) => decision,
        Err(skip) => {
            out.reason = format!("not routed: {}", skip.as_str());
            return out;
        }
    };
    let Some(routed) = decision.routed else {
        out.reason = match out.clusters.first() {
            Some(c) => format!(
                "unseen: the nearest cluster, {}, is {:.4} away, beyond its threshold {:.4}",
                c.id, c.distance, c.threshold
            ),
            None => "unseen: no cluster is near".to_owned(),
        };
        return out;
    };
    let Some(cluster) = loaded.clusters.get(routed.cluster) else {
        return out;
    };
    out.cluster = Some(cluster.id.to_string());
    let Some(path) = decision.treated else {
        out.reason = format!(
            "routed to cluster {}, which is served untouched ({})",
            cluster.id,
            if cluster.mode == Mode::Primary {
                "primary without rules"
            } else {
                "passthrough"
            }
        );
        return out;
    };
    out.path = path.as_str();
    out.reason = format!(
        "routed to cluster {}, a {} cluster{}",
        cluster.id,
        path.as_str(),
        if routed.by_form {
            ", by one of its question forms (no example within its threshold)"
        } else {
            ""
        }
    );
    match path {
        ServePath::Primary => out.block = Some(cluster.block.clone()),
        ServePath::Reflective => {
            out.critic_rules = cluster.rules_like(&routed.vector, CRITIC_RULES);
        }
        ServePath::Passthrough | ServePath::Holdout => {}
    }
    out
}

impl fmt::Display for Explanation {
    /// The explanation as `uno route` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.snapshot_version {
            Some(v) => writeln!(f, "tenant {}, snapshot version {v}", self.tenant)?,
            None => writeln!(f, "tenant {}, no active snapshot", self.tenant)?,
        }
        writeln!(f, "\nrouting text (the user's own words):")?;
        if self.text.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for line in self.text.lines() {
            writeln!(f, "  {line}")?;
        }
        if !self.clusters.is_empty() {
            writeln!(f, "\nclusters, nearest first:")?;
            writeln!(
                f,
                "  {:<12} {:<12} {:>9} {:>9}",
                "cluster", "mode", "distance", "threshold"
            )?;
            for c in &self.clusters {
                writeln!(
                    f,
                    "  {:<12} {:<12} {:>9.4} {:>9.4}{}",
                    c.id,
                    c.mode,
                    c.distance,
                    c.threshold,
                    if c.within {
                        "  within"
                    } else if c.excluded {
                        "  kept out: lacks every word that defines it, or names another topic's"
                    } else {
                        ""
                    }
                )?;
            }
        }
        writeln!(
            f,
            "\ncluster: {}",
            self.cluster
                .as_deref()
                .unwrap_or("none (unseen → passthrough)")
        )?;
        writeln!(f, "path: {}", self.path)?;
        writeln!(f, "why: {}", self.reason)?;
        if self.path != ServePath::Passthrough.as_str() {
            if self.shadow {
                writeln!(
                    f,
                    "shadow mode is on: logged as {}, served untouched",
                    self.path
                )?;
            } else if self.holdout_percent > 0 {
                writeln!(
                    f,
                    "{}% of such requests are held out and served untouched",
                    self.holdout_percent
                )?;
            }
        }
        if let Some(block) = &self.block {
            writeln!(f, "\nblock added to the system message:")?;
            for line in block.lines() {
                writeln!(f, "  {line}")?;
            }
        }
        if !self.critic_rules.is_empty() {
            writeln!(f, "\nrules the critic is shown:")?;
            for (i, rule) in self.critic_rules.iter().enumerate() {
                writeln!(f, "  {}. {rule}", i + 1)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use uno_core::InteractionId;
    use uno_core::snapshot::{ClusterExperience, Rule};
    use uno_llm::HashingEmbedder;

    use super::*;

    fn cluster(id: &str, mode: Mode, texts: &[&str], rules: &[&str]) -> ClusterExperience {
        let e = HashingEmbedder::new(64).unwrap();
        let vectors: Vec<f32> = texts.iter().flat_map(|t| e.embed_one(t)).collect();
        let labels = vec![0; texts.len()];
        let centroid = uno_core::cluster::centroids(&vectors, 64, &labels, 1).unwrap();
        let threshold =
            uno_core::cluster::unseen_thresholds(&vectors, 64, &labels, &centroid, 1.0).unwrap()[0];
        ClusterExperience {
            id: id.into(),
            route_centroid: centroid,
            route_threshold: threshold * 1.2,
            mode,
            block: format!("block of {id}"),
            rules: rules
                .iter()
                .map(|t| Rule::new(*t, 3, vec![], true))
                .collect(),
            ..ClusterExperience::default()
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            version: 4,
            embedder_id: "x".into(),
            route_embedder: "hashing:v1:64".into(),
            logs: 4,
            clusters: vec![
                cluster(
                    "0",
                    Mode::Primary,
                    &["boil pasta water salt", "boil pasta water time"],
                    &[],
                ),
                cluster(
                    "1",
                    Mode::Reflective,
                    &["tax form freelance income", "tax form rental income"],
                    &["Cite the form number.", "Mention the deadline."],
                ),
            ],
            ..Snapshot::empty("t")
        }
    }

    #[test]
    fn the_explanation_is_what_serving_decides() {
        let snapshot = snapshot();
        let loaded = Arc::new(LoadedSnapshot::load(&snapshot).unwrap());
        let policy = ServingPolicy::default();
        for text in [
            "boil pasta water salt",
            "tax form freelance income",
            "quantum chromodynamics lecture",
            "",
        ] {
            let body = text_request(text);
            let view = ChatRequestView::parse(&body).unwrap();
            let e = explain(Some(&loaded), &policy, "t", &view);
            let plan = route::plan(
                Some(Arc::clone(&loaded)),
                &policy,
                "t",
                InteractionId::new(),
                &HeaderMap::new(),
                &view,
            );
            assert_eq!(
                e.cluster.as_deref(),
                plan.routed_cluster().map(|c| &*c.id),
                "{text}"
            );
            assert_eq!(
                Some(e.path),
                plan.trace.path.map(ServePath::as_str),
                "{text}"
            );
            if let Some(nearest) = e.clusters.first() {
                assert_eq!(nearest.within, e.cluster.is_some(), "{text}");
                assert!(
                    e.clusters
                        .windows(2)
                        .all(|w| w[0].distance <= w[1].distance)
                );
            }
        }
    }

    #[test]
    fn primary_shows_the_block_and_reflective_the_critic_rules() {
        let snapshot = snapshot();
        let policy = ServingPolicy::default();
        let primary = explain_request(
            Some(&snapshot),
            &policy,
            "t",
            &text_request("boil pasta water salt"),
        )
        .unwrap();
        assert_eq!(primary.path, "primary");
        assert_eq!(primary.block.as_deref(), Some("block of 0"));
        assert_eq!(primary.clusters.len(), 2);
        assert!(primary.to_string().contains("block of 0"));
        let reflective = explain_request(
            Some(&snapshot),
            &policy,
            "t",
            &text_request("tax form freelance income"),
        )
        .unwrap();
        assert_eq!(reflective.path, "reflective");
        assert_eq!(reflective.critic_rules.len(), 2);
        let unseen = explain_request(
            Some(&snapshot),
            &policy,
            "t",
            &text_request("quantum chromodynamics lecture"),
        )
        .unwrap();
        assert_eq!((unseen.cluster, unseen.path), (None, "passthrough"));
        assert!(unseen.reason.starts_with("unseen"), "{}", unseen.reason);
        let none = explain_request(None, &policy, "t", &text_request("x")).unwrap();
        assert_eq!(none.snapshot_version, None);
    }

    #[test]
    fn the_admin_body_becomes_a_chat_request() {
        let parse = |v: Value| request_from(v.as_object().unwrap().clone());
        let body = parse(serde_json::json!({"text": "hi", "tools": []})).unwrap();
        let view = ChatRequestView::parse(&body).unwrap();
        assert_eq!(view.messages[0].text(), "hi");
        assert!(view.tools.is_some());
        assert!(parse(serde_json::json!({"text": "a", "messages": []})).is_err());
        assert!(parse(serde_json::json!({"text": 5})).is_err());
        assert!(parse(serde_json::json!({})).is_err());
        let body = parse(serde_json::json!({"messages": [{"role": "user", "content": "q"}]}));
        assert!(ChatRequestView::parse(&body.unwrap()).is_ok());
    }
}
