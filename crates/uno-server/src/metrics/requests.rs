//! `uno_requests_total`: every answered request by route, status and path.

use std::collections::HashMap;
use std::sync::Mutex;

use uno_core::metrics::{Exposition, Kind};

/// The route family a request went to, as the `route` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteLabel {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/embeddings`.
    Embeddings,
    /// `/v1/models…`.
    Models,
    /// `/v1/feedback`.
    Feedback,
    /// `/admin/…`.
    Admin,
    /// Anything else (`/health`, `/metrics`, `/ui`, unknown paths).
    Other,
}

impl RouteLabel {
    /// The label for a request path; a prefix match, no allocation.
    pub fn of_path(path: &str) -> RouteLabel {
        if let Some(rest) = path.strip_prefix("/v1/") {
            if rest.starts_with("chat/completions") {
                RouteLabel::Chat
            } else if rest.starts_with("embeddings") {
                RouteLabel::Embeddings
            } else if rest.starts_with("models") {
                RouteLabel::Models
            } else if rest.starts_with("feedback") {
                RouteLabel::Feedback
            } else {
                RouteLabel::Other
            }
        } else if path.starts_with("/admin/") {
            RouteLabel::Admin
        } else {
            RouteLabel::Other
        }
    }

    /// The label value (also the `route` field of the access log).
    pub fn as_str(self) -> &'static str {
        match self {
            RouteLabel::Chat => "chat",
            RouteLabel::Embeddings => "embeddings",
            RouteLabel::Models => "models",
            RouteLabel::Feedback => "feedback",
            RouteLabel::Admin => "admin",
            RouteLabel::Other => "other",
        }
    }
}

/// The `path` label: the `x-uno-path` a response carried, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathLabel {
    /// No experience path (not a chat request, or refused before routing).
    None,
    /// Forwarded untouched.
    Passthrough,
    /// Rule block injected.
    Primary,
    /// Draft, critique, revision.
    Reflective,
    /// Held out on purpose.
    Holdout,
}

impl PathLabel {
    /// The label for an `x-uno-path` header value.
    pub fn of_header(value: Option<&[u8]>) -> PathLabel {
        match value {
            Some(b"passthrough") => PathLabel::Passthrough,
            Some(b"primary") => PathLabel::Primary,
            Some(b"reflective") => PathLabel::Reflective,
            Some(b"holdout") => PathLabel::Holdout,
            _ => PathLabel::None,
        }
    }

    /// The label value (also the `path` field of the access log).
    pub fn as_str(self) -> &'static str {
        match self {
            PathLabel::None => "none",
            PathLabel::Passthrough => "passthrough",
            PathLabel::Primary => "primary",
            PathLabel::Reflective => "reflective",
            PathLabel::Holdout => "holdout",
        }
    }
}

/// Request counts. A short critical section under one mutex: the key is
/// three small copies, so a hit neither allocates nor hashes a string, and
/// at the label counts uno has the map stays tiny.
#[derive(Debug, Default)]
pub struct RequestCounts {
    counts: Mutex<HashMap<(RouteLabel, u16, PathLabel), u64>>,
}

impl RequestCounts {
    /// Counts one answered request.
    pub fn record(&self, route: RouteLabel, status: u16, path: PathLabel) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((route, status, path)).or_insert(0) += 1;
        }
    }

    /// How many requests matched exactly (tests).
    pub fn get(&self, route: RouteLabel, status: u16, path: PathLabel) -> u64 {
        self.counts
            .lock()
            .ok()
            .and_then(|c| c.get(&(route, status, path)).copied())
            .unwrap_or(0)
    }

    /// Appends `uno_requests_total`, sorted so scrapes are stable.
    pub fn write(&self, page: &mut Exposition) {
        page.family(
            "uno_requests_total",
            Kind::Counter,
            "Requests answered, by route, HTTP status and the experience path that served them.",
        );
        let mut rows: Vec<_> = match self.counts.lock() {
            Ok(counts) => counts.iter().map(|(k, v)| (*k, *v)).collect(),
            Err(_) => Vec::new(),
        };
        rows.sort_unstable();
        for ((route, status, path), count) in rows {
            page.sample(
                "uno_requests_total",
                &format!(
                    "route=\"{}\",status=\"{status}\",path=\"{}\"",
                    route.as_str(),
                    path.as_str()
                ),
                count as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes() {
        assert_eq!(
            RouteLabel::of_path("/v1/chat/completions"),
            RouteLabel::Chat
        );
        assert_eq!(RouteLabel::of_path("/v1/models/a/b"), RouteLabel::Models);
        assert_eq!(RouteLabel::of_path("/v1/feedback"), RouteLabel::Feedback);
        assert_eq!(
            RouteLabel::of_path("/v1/embeddings"),
            RouteLabel::Embeddings
        );
        assert_eq!(RouteLabel::of_path("/admin/v1/tenants"), RouteLabel::Admin);
        assert_eq!(RouteLabel::of_path("/v1/other"), RouteLabel::Other);
        assert_eq!(RouteLabel::of_path("/metrics"), RouteLabel::Other);
    }

    #[test]
    fn counts_are_kept_per_label_set() {
        let c = RequestCounts::default();
        c.record(RouteLabel::Chat, 200, PathLabel::Primary);
        c.record(RouteLabel::Chat, 200, PathLabel::Primary);
        c.record(RouteLabel::Chat, 401, PathLabel::None);
        assert_eq!(c.get(RouteLabel::Chat, 200, PathLabel::Primary), 2);
        let mut page = Exposition::new();
        c.write(&mut page);
        let text = page.finish();
        assert!(
            text.contains("uno_requests_total{route=\"chat\",status=\"200\",path=\"primary\"} 2\n")
        );
        assert!(
            text.contains("uno_requests_total{route=\"chat\",status=\"401\",path=\"none\"} 1\n")
        );
    }
}
