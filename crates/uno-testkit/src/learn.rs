//! Learning logs that are ready for a rebuild, written without a model:
//! each user asks a cooking question and the distilled rules are given,
//! so a test can drive the worker's clustering, validation and publishing
//! (or the admin API on top of them) from a known state.

use std::future::Future;

use serde_json::json;
use uno_store::Store;
use uno_store::learn::{LearnLog, LogStage, NewLearnLog, StageOutput};
use uuid::Uuid;

use crate::mock::PLAIN_ANSWER;

/// The question user `i` asks: one topic, so the logs form one cluster.
pub fn cooking_query(i: usize) -> String {
    format!("How long should I boil spaghetti pasta batch {i} for dinner tonight?")
}

/// Writes one learning log per user (`users` of them, `user-0`…) for
/// `tenant`, and takes each through distil, embed and novelty: the `n`-th
/// log distilled gets `rules_for(n)` as R_f, `embed` produces the embed
/// stage's output (the worker's `stages::embed` with the test's embedder),
/// and every rule scores novelty 0.1 (a low gap). Asserts they are all
/// ready.
pub async fn ready_logs<E, Fut>(
    store: &Store,
    tenant: &str,
    users: usize,
    rules_for: impl Fn(usize) -> Vec<String>,
    embed: E,
) where
    E: Fn(LearnLog) -> Fut,
    Fut: Future<Output = StageOutput>,
{
    for i in 0..users {
        let user = format!("user-{i}");
        let log = NewLearnLog {
            tenant: tenant.into(),
            // Fixed per tenant and user: the worker splits a cluster's
            // logs into training and held-out ones by a seeded shuffle of
            // their ids, so random ids made which logs teach (and which
            // rules a snapshot holds) differ from run to run.
            interaction_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{tenant}/{i}").as_bytes()),
            created_at: 1,
            model: "mock-model".into(),
            end_user: Some(user.clone()),
            users: vec![user],
            lang: "en".into(),
            messages: json!([{"role": "user", "content": cooking_query(i)}]).to_string(),
            query: cooking_query(i),
            user_query: cooking_query(i),
            answer: PLAIN_ANSWER.into(),
            feedback: "Feedback 1: how many minutes?".into(),
            feedback_hash: format!("h{i}"),
            feedback_at: 1,
            rating: None,
        };
        store
            .upsert_learn_log(&log)
            .await
            .expect("upsert a learning log");
    }
    let mut distilled = 0;
    for _ in 0..3 {
        for log in store
            .lease_learn_logs("test", 100, 60)
            .await
            .expect("lease learning logs")
        {
            let id = log.input.interaction_id;
            let hash = log.input.feedback_hash.clone();
            let output = match log.stage {
                LogStage::Distil => {
                    distilled += 1;
                    StageOutput::Distilled {
                        satisfied: false,
                        rules_f: rules_for(distilled),
                        rules_0: vec!["Be brief.".into()],
                        by: "test".into(),
                    }
                }
                LogStage::Embed => embed(log).await,
                LogStage::Novelty | LogStage::Ready | LogStage::Failed => StageOutput::Scored {
                    novelty: vec![0.1; log.rules_f.len()],
                    by: "test".into(),
                },
            };
            assert!(
                store
                    .finish_learn_stage(id, "test", &hash, &output)
                    .await
                    .expect("finish a stage"),
                "the stage's output was stored"
            );
        }
    }
    assert_eq!(
        store
            .learn_stage_counts(Some(tenant))
            .await
            .expect("stage counts")
            .ready,
        users as u64
    );
}
