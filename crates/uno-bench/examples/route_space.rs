//! How well a routing space separates topics, measured on the routes of a
//! `uno-bench --community --json FILE` run (issue 23): each tenant's
//! clustered training queries are the examples, each test query goes to
//! the topic of its most similar example when that similarity reaches a
//! bar, and for a sweep of bars it prints the share of new in-topic
//! queries routed right and wrong and the share of unseen-topic queries
//! taken. Spaces: `minilm` (the local MiniLM's sentence embeddings, the
//! clustering space), `static` (each word embedded alone by MiniLM, the
//! words' vectors centred, weighted by inverse document frequency and
//! summed: a static table in the model2vec manner). `time` measures one
//! MiniLM embedding of a short query, the request-path cost of routing in
//! MiniLM itself.
//!
//! ```sh
//! scripts/install-models.sh
//! cargo run --release -p uno-bench --features local-embed -- --community \
//!     --seeds 1,2,3,4,5 --embedder local --json community.json
//! cargo run --release -p uno-bench --features local-embed --example route_space -- \
//!     community.json minilm
//! ```
//!
//! The uno column of `--community` is what the proxy's own router does on
//! the same queries; this tool asks what another space would do.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;
use uno_llm::LocalEmbedder;

const MODEL_DIR: &str = "target/models/all-MiniLM-L6-v2";

/// One test query: its topic, whether nobody taught it, and its text.
struct Query {
    topic: String,
    unseen: bool,
    text: String,
}

/// Texts' vectors: the examples', then the queries'.
type Vectors = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// Per bar: (in-topic queries, routed right, routed wrong, unseen
/// queries, unseen taken).
type Tally = [usize; 5];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let embedder = LocalEmbedder::load(MODEL_DIR)
        .with_context(|| format!("no MiniLM in {MODEL_DIR}: run scripts/install-models.sh"))?;
    if args.first().map(String::as_str) == Some("time") {
        return time_one_query(embedder.with_batch_size(1));
    }
    let (Some(path), Some(space)) = (args.first(), args.get(1)) else {
        bail!("usage: route_space COMMUNITY.json minilm|static, or route_space time");
    };
    if space != "minilm" && space != "static" {
        bail!("the space is minilm or static, not {space}");
    }
    let run: Value = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?,
    )?;
    let bars: Vec<f32> = (6..=18).map(|i| i as f32 * 0.05).collect();
    let mut tally: Vec<Tally> = vec![[0; 5]; bars.len()];
    for seed in run["seeds"].as_array().context("no seeds in the file")? {
        for tenant in ["acme", "globex"] {
            let examples = training_queries(seed, tenant);
            let queries = test_queries(seed, tenant, &examples);
            let (ex, qs) = if space == "minilm" {
                let texts: Vec<String> = examples.iter().map(|e| e.1.clone()).collect();
                let asked: Vec<String> = queries.iter().map(|q| q.text.clone()).collect();
                (
                    embedder.embed_blocking(&texts)?,
                    embedder.embed_blocking(&asked)?,
                )
            } else {
                static_vectors(&embedder, &examples, &queries)?
            };
            for (q, v) in queries.iter().zip(&qs) {
                let (best, topic) = ex
                    .iter()
                    .zip(&examples)
                    .map(|(e, (t, _))| (dot(e, v), t))
                    .fold((f32::NEG_INFINITY, ""), |a, (s, t)| {
                        if s > a.0 { (s, t.as_str()) } else { a }
                    });
                for (bar, t) in bars.iter().zip(&mut tally) {
                    let taken = best >= *bar;
                    if q.unseen {
                        t[3] += 1;
                        t[4] += usize::from(taken);
                    } else {
                        t[0] += 1;
                        t[1] += usize::from(taken && topic == q.topic);
                        t[2] += usize::from(taken && topic != q.topic);
                    }
                }
            }
        }
    }
    println!("space {space}: nearest training query, by similarity bar");
    for (bar, t) in bars.iter().zip(&tally) {
        let pct = |a: usize, n: usize| 100.0 * a as f64 / n.max(1) as f64;
        println!(
            "  bar {bar:.2}: in-topic right {:5.1}%  wrong {:4.1}%  passed {:5.1}%   unseen taken {:5.1}%",
            pct(t[1], t[0]),
            pct(t[2], t[0]),
            pct(t[0] - t[1] - t[2], t[0]),
            pct(t[4], t[3])
        );
    }
    Ok(())
}

/// A tenant's clustered training queries with the topic each was asked on.
fn training_queries(seed: &Value, tenant: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for cluster in seed["clusters"].as_array().into_iter().flatten() {
        if cluster["tenant"] != tenant {
            continue;
        }
        for m in cluster["member_questions"].as_array().into_iter().flatten() {
            if let (Some(topic), Some(text)) = (m[0].as_str(), m[1].as_str()) {
                out.push((topic.to_owned(), text.to_owned()));
            }
        }
    }
    out
}

/// A tenant's first-turn test queries on the topics that have examples,
/// and on unseen topics.
fn test_queries(seed: &Value, tenant: &str, examples: &[(String, String)]) -> Vec<Query> {
    seed["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["tenant"] == tenant)
        .filter_map(|r| {
            let topic = r["topic"].as_str()?.to_owned();
            let unseen = r["unseen"].as_bool()?;
            (unseen || examples.iter().any(|e| e.0 == topic)).then(|| Query {
                topic,
                unseen,
                text: r["question"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The `static` space: every word embedded alone, centred on the words'
/// mean (MiniLM's vectors share one large direction), and a text the
/// unit sum of its words weighted by their rarity in the examples.
fn static_vectors(
    embedder: &LocalEmbedder,
    examples: &[(String, String)],
    queries: &[Query],
) -> anyhow::Result<Vectors> {
    let mut vocab: Vec<String> = examples
        .iter()
        .map(|e| e.1.as_str())
        .chain(queries.iter().map(|q| q.text.as_str()))
        .flat_map(words)
        .collect();
    vocab.sort();
    vocab.dedup();
    let mut vectors = embedder.embed_blocking(&vocab)?;
    let dim = vectors.first().map_or(0, Vec::len);
    let mut mean = vec![0.0f32; dim];
    for v in &vectors {
        for (m, x) in mean.iter_mut().zip(v) {
            *m += x / vectors.len() as f32;
        }
    }
    for v in &mut vectors {
        for (x, m) in v.iter_mut().zip(&mean) {
            *x -= m;
        }
        normalise(v);
    }
    let table: HashMap<String, Vec<f32>> = vocab.into_iter().zip(vectors).collect();
    let mut df: HashMap<String, usize> = HashMap::new();
    for (_, text) in examples {
        let mut ws = words(text);
        ws.sort();
        ws.dedup();
        for w in ws {
            *df.entry(w).or_default() += 1;
        }
    }
    let n = examples.len() as f32;
    let embed = |text: &str| {
        let mut v = vec![0.0f32; dim];
        for w in words(text) {
            let weight = ((n + 1.0) / (df.get(&w).copied().unwrap_or(0) as f32 + 1.0)).ln() + 1.0;
            if let Some(wv) = table.get(&w) {
                for (x, y) in v.iter_mut().zip(wv) {
                    *x += weight * y;
                }
            }
        }
        normalise(&mut v);
        v
    };
    Ok((
        examples.iter().map(|e| embed(&e.1)).collect(),
        queries.iter().map(|q| embed(&q.text)).collect(),
    ))
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One short query through MiniLM, 200 times: p50 and p99.
fn time_one_query(embedder: LocalEmbedder) -> anyhow::Result<()> {
    let queries = [
        "How long should I cook risotto?".to_owned(),
        "What's machine learning exactly?".to_owned(),
    ];
    for q in &queries {
        embedder.embed_blocking(std::slice::from_ref(q))?;
    }
    let mut ms = Vec::new();
    for i in 0..200 {
        let started = Instant::now();
        embedder.embed_blocking(std::slice::from_ref(&queries[i % 2]))?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "MiniLM, one short query: p50 {:.2} ms, p99 {:.2} ms",
        ms[100], ms[197]
    );
    Ok(())
}
