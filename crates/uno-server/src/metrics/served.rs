//! What the interaction records say: latencies, time to first token, and
//! per-cluster serve counts, recorded as each record passes to the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uno_core::interaction::{InteractionRecord, InteractionSink, ServePath};
use uno_core::metrics::{
    ADDED_LATENCY_BOUNDS, Exposition, Histogram, Kind, UPSTREAM_LATENCY_BOUNDS, label_value,
};

/// Chat latencies, from the finished records.
#[derive(Debug)]
pub struct ChatLatencies {
    /// Upstream's share of each request.
    pub upstream: Histogram,
    /// Total minus upstream: what uno itself added.
    pub added: Histogram,
    /// Time to the first streamed byte, for streamed requests.
    pub first_token: Histogram,
}

impl Default for ChatLatencies {
    fn default() -> Self {
        ChatLatencies {
            upstream: Histogram::new(UPSTREAM_LATENCY_BOUNDS),
            added: Histogram::new(ADDED_LATENCY_BOUNDS),
            first_token: Histogram::new(UPSTREAM_LATENCY_BOUNDS),
        }
    }
}

impl ChatLatencies {
    fn record(&self, record: &InteractionRecord) {
        if let Some(upstream) = record.upstream_latency {
            self.upstream.observe(upstream);
        }
        if let Some(added) = record.added_latency() {
            self.added.observe(added);
        }
        if record.stream
            && let Some(first) = record.time_to_first_byte
        {
            self.first_token.observe(first);
        }
    }

    /// Appends the three latency families.
    pub fn write(&self, page: &mut Exposition) {
        page.family(
            "uno_upstream_latency_seconds",
            Kind::Histogram,
            "Time the upstream took per request.",
        );
        self.upstream
            .write_samples(page, "uno_upstream_latency_seconds", "route=\"chat\"");
        page.family(
            "uno_added_latency_seconds",
            Kind::Histogram,
            "Time uno added per request: total minus upstream (routing, injection, reflective passes, queuing).",
        );
        self.added
            .write_samples(page, "uno_added_latency_seconds", "route=\"chat\"");
        page.family(
            "uno_time_to_first_token_seconds",
            Kind::Histogram,
            "Time from receiving a streamed request to sending its first byte.",
        );
        self.first_token
            .write_samples(page, "uno_time_to_first_token_seconds", "");
    }
}

type ByCluster = HashMap<Arc<str>, HashMap<Arc<str>, [u64; 4]>>;

/// Requests routed to a cluster, by tenant, cluster and path. Tenant and
/// cluster ids are already shared strings in the record, so counting a
/// request clones two `Arc`s the first time and nothing after.
#[derive(Debug, Default)]
pub struct ClusterServes {
    counts: Mutex<ByCluster>,
}

const PATHS: [ServePath; 4] = [
    ServePath::Passthrough,
    ServePath::Primary,
    ServePath::Reflective,
    ServePath::Holdout,
];

impl ClusterServes {
    fn record(&self, tenant: &Arc<str>, cluster: &Arc<str>, path: ServePath) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let clusters = match counts.get_mut(&**tenant) {
            Some(clusters) => clusters,
            None => counts.entry(tenant.clone()).or_default(),
        };
        let slots = match clusters.get_mut(&**cluster) {
            Some(slots) => slots,
            None => clusters.entry(cluster.clone()).or_default(),
        };
        slots[path as usize] += 1;
    }

    /// Serves of one cluster by path (tests).
    pub fn get(&self, tenant: &str, cluster: &str, path: ServePath) -> u64 {
        self.counts
            .lock()
            .ok()
            .and_then(|c| {
                c.get(tenant)
                    .and_then(|t| t.get(cluster))
                    .map(|s| s[path as usize])
            })
            .unwrap_or(0)
    }

    /// Appends `uno_cluster_served_total`.
    pub fn write(&self, page: &mut Exposition) {
        page.family(
            "uno_cluster_served_total",
            Kind::Counter,
            "Requests routed to a learned cluster, by tenant, cluster and the path that served them.",
        );
        let mut rows = Vec::new();
        if let Ok(counts) = self.counts.lock() {
            for (tenant, clusters) in counts.iter() {
                for (cluster, slots) in clusters {
                    rows.push((tenant.clone(), cluster.clone(), *slots));
                }
            }
        }
        rows.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        for (tenant, cluster, slots) in rows {
            for path in PATHS {
                let count = slots[path as usize];
                if count == 0 {
                    continue;
                }
                page.sample(
                    "uno_cluster_served_total",
                    &format!(
                        "tenant=\"{}\",cluster=\"{}\",path=\"{}\"",
                        label_value(&tenant),
                        label_value(&cluster),
                        path.as_str()
                    ),
                    count as f64,
                );
            }
        }
    }
}

/// The sink the request path submits to: records what the metrics need
/// from each record (atomic adds and one short lock), then hands the record
/// on to the log untouched.
pub struct MeteredSink {
    inner: Arc<dyn InteractionSink>,
    latencies: Arc<ChatLatencies>,
    serves: Arc<ClusterServes>,
}

impl MeteredSink {
    /// Wraps `inner`.
    pub fn new(
        inner: Arc<dyn InteractionSink>,
        latencies: Arc<ChatLatencies>,
        serves: Arc<ClusterServes>,
    ) -> Self {
        MeteredSink {
            inner,
            latencies,
            serves,
        }
    }
}

impl InteractionSink for MeteredSink {
    fn submit(&self, record: InteractionRecord) {
        self.latencies.record(&record);
        if let (Some(cluster), Some(path)) = (&record.experience.cluster_id, record.experience.path)
        {
            self.serves.record(&record.tenant, cluster, path);
        }
        self.inner.submit(record);
    }
}
