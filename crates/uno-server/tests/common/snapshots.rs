//! Snapshots for tests: clusters routed by the hashing embedder, built the
//! way the worker builds them, so a test can publish one and send requests
//! that route to it.

use uno_core::cluster::{centroids, unseen_thresholds};
use uno_core::snapshot::{ClusterExperience, Gap, Mode, Rule, Snapshot};
use uno_learn::prompts::{Lang, experience_block};
use uno_llm::{Embedder, HashingEmbedder};

/// The routing space's dimension.
pub const ROUTE_DIM: usize = 256;

/// A cluster whose routing centroid is the mean of `members` in the
/// routing space, with a threshold a margin beyond its farthest member (so
/// a new query on the topic, which shares no member's number, still routes).
pub fn cluster(id: &str, mode: Mode, members: &[String], rules: &[&str]) -> ClusterExperience {
    let embedder = HashingEmbedder::new(ROUTE_DIM).unwrap();
    let points: Vec<f32> = members.iter().flat_map(|m| embedder.embed_one(m)).collect();
    let labels = vec![0; members.len()];
    let centroid = centroids(&points, ROUTE_DIM, &labels, 1).unwrap();
    let farthest = unseen_thresholds(&points, ROUTE_DIM, &labels, &centroid, 1.0).unwrap()[0];
    let served: Vec<String> = rules.iter().map(|r| (*r).to_owned()).collect();
    ClusterExperience {
        id: id.into(),
        size: members.len(),
        lang: "en".into(),
        centroid: vec![],
        unseen_threshold: 0.0,
        route_centroid: centroid,
        route_threshold: farthest * 1.5,
        mode,
        decision: "test".into(),
        gap: Gap::default(),
        high_gap: false,
        validation: None,
        block: if served.is_empty() {
            String::new()
        } else {
            experience_block(Lang::En, &served)
        },
        rules: served
            .into_iter()
            .map(|text| Rule::new(text, 3, vec![], true))
            .collect(),
        ..ClusterExperience::default()
    }
}

pub fn snapshot(tenant: &str, clusters: Vec<ClusterExperience>) -> Snapshot {
    Snapshot {
        embedder_id: "hashing:v1:256".into(),
        dim: ROUTE_DIM,
        route_embedder: HashingEmbedder::new(ROUTE_DIM).unwrap().id().to_owned(),
        logs: 20,
        clusters,
        ..Snapshot::empty(tenant)
    }
}
