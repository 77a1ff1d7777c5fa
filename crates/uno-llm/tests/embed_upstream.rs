//! The upstream embedder against the mock OpenAI-compatible server.

use std::sync::Arc;

use uno_core::config::{Config, HttpConfig, UpstreamConfig};
use uno_llm::UpstreamClient;
use uno_llm::embed::{EmbedError, Embedder, UpstreamEmbedder};
use uno_testkit::MockUpstream;

fn config(upstreams: Vec<UpstreamConfig>) -> Config {
    Config {
        upstreams,
        http: HttpConfig {
            max_retries: 0,
            connect_timeout_ms: 2_000,
            read_timeout_ms: 5_000,
            ..HttpConfig::default()
        },
        ..Config::default()
    }
}

fn client(url: &str) -> UpstreamClient {
    let config = config(vec![UpstreamConfig {
        name: "mock".into(),
        url: url.into(),
        api_key: Some("sk-test".into()),
        models: Vec::new(),
    }]);
    match UpstreamClient::new(&config) {
        Ok(client) => client,
        Err(err) => panic!("{err}"),
    }
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text number {i}")).collect()
}

fn embedding_requests(mock: &MockUpstream) -> Vec<serde_json::Value> {
    mock.requests()
        .into_iter()
        .filter(|r| r.path == "/v1/embeddings")
        .map(|r| r.json())
        .collect()
}

#[tokio::test]
async fn batches_and_keeps_order() {
    let mock = MockUpstream::start().await;
    let embedder = UpstreamEmbedder::builder(client(&mock.base_url()), "mock-embedding")
        .dim(8)
        .batch_size(4)
        .build()
        .unwrap();
    assert_eq!(embedder.id(), "upstream:mock-embedding:8");

    let input = texts(10);
    let batched = embedder.embed(&input).await.unwrap();

    let requests = embedding_requests(&mock);
    assert_eq!(requests.len(), 3, "10 texts in batches of 4");
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| r["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [4, 4, 2]);
    let sent: Vec<String> = requests
        .iter()
        .flat_map(|r| r["input"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent, input, "inputs sent in order");
    assert!(requests.iter().all(|r| r["model"] == "mock-embedding"));
    assert!(requests.iter().all(|r| r.get("dimensions").is_none()));
    let auth = &mock.requests()[0].headers["authorization"];
    assert_eq!(auth, "Bearer sk-test");

    // Each text's vector is the one it gets on its own: order preserved.
    let one_by_one = UpstreamEmbedder::builder(client(&mock.base_url()), "mock-embedding")
        .dim(8)
        .batch_size(1)
        .build()
        .unwrap();
    for (text, vector) in input.iter().zip(&batched) {
        let alone = one_by_one.embed(std::slice::from_ref(text)).await.unwrap();
        assert_eq!(&alone[0], vector, "{text}");
        assert_eq!(vector.len(), 8);
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    assert_ne!(batched[0], batched[1]);
}

#[tokio::test]
async fn empty_input_sends_nothing() {
    let mock = MockUpstream::start().await;
    let embedder = UpstreamEmbedder::builder(client(&mock.base_url()), "m")
        .dim(8)
        .build()
        .unwrap();
    assert!(embedder.embed(&[]).await.unwrap().is_empty());
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn probing_learns_the_dimension() {
    let mock = MockUpstream::start().await;
    let embedder = UpstreamEmbedder::builder(client(&mock.base_url()), "mock-embedding")
        .probe()
        .await
        .unwrap();
    assert_eq!(embedder.dim(), 8);
    assert_eq!(embedder.id(), "upstream:mock-embedding:8");
    assert_eq!(embedding_requests(&mock).len(), 1);
    // Building without a dimension and without probing is refused.
    let err = UpstreamEmbedder::builder(client(&mock.base_url()), "m")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("dimension"), "{err}");
}

#[tokio::test]
async fn sends_dimensions_when_asked() {
    let mock = MockUpstream::start().await;
    let embedder = UpstreamEmbedder::builder(client(&mock.base_url()), "mock-embedding")
        .dim(32)
        .send_dimensions(true)
        .build()
        .unwrap();
    let v = embedder.embed(&texts(3)).await.unwrap();
    assert!(v.iter().all(|v| v.len() == 32));
    assert_eq!(embedding_requests(&mock)[0]["dimensions"], 32);
}

#[tokio::test]
async fn wrong_dimension_is_an_error() {
    let mock = MockUpstream::start().await;
    let embedder = UpstreamEmbedder::builder(client(&mock.base_url()), "mock-embedding")
        .dim(16)
        .build()
        .unwrap();
    match embedder.embed(&texts(2)).await {
        Err(EmbedError::Dimension { expected, got, .. }) => {
            assert_eq!((expected, got), (16, 8));
        }
        other => panic!("expected a dimension error, got {other:?}"),
    }
}

#[tokio::test]
async fn error_status_carries_the_upstream_message() {
    let mock = MockUpstream::start().await;
    // The mock has no /v2 routes: it answers 404 in OpenAI's error shape.
    let url = format!("http://{}/v2", mock.addr());
    let embedder = UpstreamEmbedder::builder(client(&url), "mock-embedding")
        .dim(8)
        .build()
        .unwrap();
    let err = embedder.embed(&texts(1)).await.unwrap_err();
    match &err {
        EmbedError::Status {
            upstream,
            status,
            message,
            model,
        } => {
            assert_eq!(&**upstream, "mock");
            assert_eq!(*status, 404);
            assert_eq!(model, "mock-embedding");
            assert!(message.contains("Unknown request URL"), "{message}");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("404") && text.contains("Unknown request URL"),
        "{text}"
    );
}

#[tokio::test]
async fn unreachable_upstream_is_a_transport_error() {
    let mock = MockUpstream::start().await;
    let url = mock.base_url();
    mock.shutdown().await;
    let embedder = UpstreamEmbedder::builder(client(&url), "m")
        .dim(8)
        .build()
        .unwrap();
    let err = embedder.embed(&texts(1)).await.unwrap_err();
    assert!(matches!(err, EmbedError::Upstream(_)), "{err:?}");
}

#[tokio::test]
async fn picks_the_named_upstream() {
    let mock = MockUpstream::start().await;
    let config = config(vec![
        UpstreamConfig {
            name: "chat".into(),
            url: "http://127.0.0.1:9/v1".into(),
            api_key: None,
            models: Vec::new(),
        },
        UpstreamConfig {
            name: "embeddings".into(),
            url: mock.base_url(),
            api_key: None,
            models: vec!["bge-*".into()],
        },
    ]);
    let client = UpstreamClient::new(&config).unwrap();
    // By model claim...
    let by_model = UpstreamEmbedder::builder(client.clone(), "bge-small")
        .dim(8)
        .build()
        .unwrap();
    assert_eq!(by_model.embed(&texts(1)).await.unwrap().len(), 1);
    // ...or by name.
    let by_name = UpstreamEmbedder::builder(client.clone(), "anything")
        .upstream("embeddings")
        .dim(8)
        .build()
        .unwrap();
    assert_eq!(by_name.embed(&texts(1)).await.unwrap().len(), 1);
    assert_eq!(mock.request_count(), 2);
    let err = UpstreamEmbedder::builder(client, "m")
        .upstream("nope")
        .dim(8)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
}

#[tokio::test]
async fn works_behind_arc_dyn() {
    let mock = MockUpstream::start().await;
    let embedder: Arc<dyn Embedder> = Arc::new(
        UpstreamEmbedder::builder(client(&mock.base_url()), "mock-embedding")
            .dim(8)
            .build()
            .unwrap(),
    );
    let worker = {
        let embedder = Arc::clone(&embedder);
        tokio::spawn(async move { embedder.embed(&texts(5)).await })
    };
    assert_eq!(worker.await.unwrap().unwrap().len(), 5);
}
