//! The consolidation step against real databases and a scripted model: a
//! valid reply groups the merged rules (indices mapped back through the
//! prompt's order) and is cached, so the same rule set costs one call; an
//! invalid reply or one without JSON falls back to the merged rules as they
//! are and is cached too; a failed call falls back and is not cached.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde_json::json;
use uno_core::config::Config;
use uno_learn::prompts::Lang;
use uno_learn::rules::{Consolidation, Merged, by_meaning};
use uno_llm::{ChatModel, UpstreamClient};
use uno_store::Store;
use uno_testkit::{Backend, MockReply, MockUpstream, TestDatabase, both_backends};
use uuid::Uuid;

both_backends! {
    consolidation_replies_are_used_validated_and_cached,
}

fn merged(text: &str, user: &str) -> Merged {
    Merged {
        text: text.to_owned(),
        sources: vec![Uuid::now_v7()],
        users: BTreeSet::from([user.to_owned()]),
        texts: vec![text.to_owned()],
    }
}

fn model(url: &str) -> ChatModel {
    let mut config = Config::default();
    config.upstreams[0].url = url.to_owned();
    config.http.max_retries = 0;
    ChatModel::new(UpstreamClient::new(&config).unwrap(), "mock-model")
}

async fn consolidation_replies_are_used_validated_and_cached(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let reply = Arc::new(Mutex::new(String::new()));
    let script = Arc::clone(&reply);
    let mock = MockUpstream::builder()
        .default_reply(MockReply::respond(move |_| script.lock().unwrap().clone()))
        .start()
        .await;
    let m = model(&mock.base_url());
    // Shown sorted by text: 1 Alpha (index 1), 2 Beta (2), 3 Gamma (0).
    let rules = vec![
        merged("Gamma: give the time in minutes.", "a"),
        merged("Alpha: state the cooking time in minutes.", "b"),
        merged("Beta: use a table.", "c"),
    ];
    *reply.lock().unwrap() = json!({
        "groups": [{"members": [1, 3], "canonical": 3, "promotes": false},
                   {"members": [2], "canonical": 2, "promotes": true}],
        "contradictions": []
    })
    .to_string();
    let c = by_meaning(&store, &m, "t", Lang::En, &rules, 512).await;
    assert_eq!(c.groups[0].members, vec![0, 1]);
    assert_eq!(c.groups[0].canonical, 0, "Gamma's wording");
    assert_eq!(c.groups[1].members, vec![2]);
    assert!(c.groups[1].promotes);
    assert_eq!(mock.request_count(), 1);
    let prompt = uno_testkit::message_texts(&mock.requests()[0].json());
    assert!(
        prompt.contains("1. Alpha") && prompt.contains("3. Gamma"),
        "{prompt}"
    );
    // The same rule set, reordered by support: cached, no call.
    let reordered = vec![rules[2].clone(), rules[0].clone(), rules[1].clone()];
    let again = by_meaning(&store, &m, "t", Lang::En, &reordered, 512).await;
    assert_eq!(mock.request_count(), 1, "cached by the rule texts");
    assert_eq!(again.groups[0].members, vec![1, 2]);
    assert_eq!(again.groups[0].canonical, 1);

    // An invalid reply (rule 7 of 4): the merged rules stay as they are,
    // and the verdict is cached.
    let mut four = rules.clone();
    four.push(merged("Delta: cite sources.", "d"));
    *reply.lock().unwrap() =
        json!({"groups": [{"members": [7], "canonical": 7, "promotes": false}]}).to_string();
    let c = by_meaning(&store, &m, "t", Lang::En, &four, 512).await;
    assert_eq!(c, Consolidation::singletons(4));
    assert_eq!(mock.request_count(), 2);
    by_meaning(&store, &m, "t", Lang::En, &four, 512).await;
    assert_eq!(
        mock.request_count(),
        2,
        "an invalid reply is not paid twice"
    );

    // No JSON at all (three attempts): the same.
    let mut five = four.clone();
    five.push(merged("Epsilon: be brief.", "e"));
    *reply.lock().unwrap() = "I would group them by topic.".to_owned();
    let c = by_meaning(&store, &m, "t", Lang::En, &five, 512).await;
    assert_eq!(c, Consolidation::singletons(5));
    assert_eq!(mock.request_count(), 5);
    by_meaning(&store, &m, "t", Lang::En, &five, 512).await;
    assert_eq!(mock.request_count(), 5);

    // A call that fails (nothing listens): merged rules, nothing cached, so
    // a working model is asked next time.
    let mut six = five.clone();
    six.push(merged("Zeta: add a summary.", "f"));
    let down = model("http://127.0.0.1:9");
    let c = by_meaning(&store, &down, "t", Lang::En, &six, 512).await;
    assert_eq!(c, Consolidation::singletons(6));
    *reply.lock().unwrap() = json!({"groups": [], "contradictions": []}).to_string();
    let c = by_meaning(&store, &m, "t", Lang::En, &six, 512).await;
    assert_eq!(c.groups.len(), 6);
    assert_eq!(mock.request_count(), 6, "the failure was not cached");

    // Nothing to consolidate: no call.
    assert!(
        by_meaning(&store, &m, "t", Lang::En, &[], 512)
            .await
            .groups
            .is_empty()
    );
    assert_eq!(mock.request_count(), 6);
    mock.shutdown().await;
}
