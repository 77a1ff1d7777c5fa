//! Properties of the hashing embedder that clustering tests rely on.

use std::sync::Arc;

use uno_llm::embed::{Embedder, HashingEmbedder, cosine};

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[tokio::test]
async fn vectors_are_unit_length_and_deterministic() {
    let e = HashingEmbedder::new(64).unwrap();
    let input = texts(&[
        "How do I sort a list in Python?",
        "",
        "   ...   ",
        "我喜欢写代码",
        "a",
    ]);
    let a = e.embed(&input).await.unwrap();
    let b = e.embed(&input).await.unwrap();
    assert_eq!(a, b, "same input, same output");
    assert_eq!(a.len(), input.len());
    for v in &a {
        assert_eq!(v.len(), 64);
        assert!((norm(v) - 1.0).abs() < 1e-5, "norm {}", norm(v));
    }
    // Texts without words all map to one fixed vector.
    assert_eq!(a[1], a[2]);
    // A fresh embedder with the same dimension agrees (no hidden state).
    let again = HashingEmbedder::new(64).unwrap().embed_one("a");
    assert_eq!(again, a[4]);
}

#[tokio::test]
async fn shared_words_mean_higher_similarity() {
    let e = HashingEmbedder::default();
    let v = e
        .embed(&texts(&[
            "How do I sort a list in Python?",
            "How can I sort a Python list in reverse order?",
            "What is the capital city of France?",
            "Recommend a good recipe for vegetable soup.",
        ]))
        .await
        .unwrap();
    let near = cosine(&v[0], &v[1]);
    let far = cosine(&v[0], &v[2]);
    let farther = cosine(&v[0], &v[3]);
    assert!(near > 0.4, "paraphrases should be close: {near}");
    assert!(near > far + 0.2, "near {near} vs far {far}");
    assert!(near > farther + 0.2, "near {near} vs farther {farther}");
    assert!(
        farther.abs() < 0.3,
        "unrelated texts near orthogonal: {farther}"
    );
}

#[tokio::test]
async fn case_and_punctuation_do_not_matter_but_order_does() {
    let e = HashingEmbedder::default();
    assert_eq!(
        e.embed_one("Sort the LIST, please!"),
        e.embed_one("sort the list please")
    );
    // Bigrams make word order count a little, unigrams keep it close.
    let ab = e.embed_one("dog bites man");
    let ba = e.embed_one("man bites dog");
    let c = cosine(&ab, &ba);
    assert!(c < 0.999 && c > 0.5, "{c}");
}

#[tokio::test]
async fn ids_name_the_dimension_and_empty_input_is_free() {
    let small = HashingEmbedder::new(8).unwrap();
    let big = HashingEmbedder::new(512).unwrap();
    assert_eq!(small.id(), "hashing:v1:8");
    assert_ne!(small.id(), big.id());
    assert_eq!(big.dim(), 512);
    assert!(small.embed(&[]).await.unwrap().is_empty());
    assert!(HashingEmbedder::new(0).is_err());
}

#[tokio::test]
async fn usable_as_a_trait_object() {
    let boxed: Box<dyn Embedder> = Box::new(HashingEmbedder::new(16).unwrap());
    let shared: Arc<dyn Embedder> = Arc::new(HashingEmbedder::new(16).unwrap());
    let input = texts(&["one text"]);
    assert_eq!(
        boxed.embed(&input).await.unwrap(),
        shared.embed(&input).await.unwrap()
    );
    assert_eq!(shared.dim(), 16);
    // Spawnable: the future is Send.
    let task = tokio::spawn(async move { shared.embed(&texts(&["x"])).await });
    assert_eq!(task.await.unwrap().unwrap().len(), 1);
}

#[tokio::test]
async fn clusters_separate_by_topic() {
    // Two topics, three phrasings each: every within-topic pair must be more
    // similar than every cross-topic pair, which is what Ward clustering on
    // these vectors needs to recover the topics.
    let e = HashingEmbedder::default();
    let docs = texts(&[
        "python list sort reverse order",
        "sort a python list in reverse",
        "reverse sort of a list in python",
        "french recipe for onion soup",
        "onion soup recipe the french way",
        "how to cook french onion soup recipe",
    ]);
    let v = e.embed(&docs).await.unwrap();
    let topic = |i: usize| i / 3;
    let mut min_within = f32::MAX;
    let mut max_across = f32::MIN;
    for i in 0..v.len() {
        for j in (i + 1)..v.len() {
            let c = cosine(&v[i], &v[j]);
            if topic(i) == topic(j) {
                min_within = min_within.min(c);
            } else {
                max_across = max_across.max(c);
            }
        }
    }
    assert!(
        min_within > max_across,
        "within {min_within} vs across {max_across}"
    );
}
