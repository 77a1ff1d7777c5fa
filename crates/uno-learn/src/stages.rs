//! The per-log stages (method §2.1, §2.5 embeddings, §2.6): distil R_f and
//! R_0, embed the query and the rules, score each rule's novelty.
//!
//! Each is a function from a leased [`LearnLog`] to a [`StageOutput`]; the
//! worker stores the output and the next stage in one guarded statement.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::Deserialize;
use uno_llm::embed::{Embedder, cosine};
use uno_llm::{ChatError, ChatModel, Sampling};
use uno_store::learn::{LearnLog, StageOutput};

use crate::prompts::{self, Lang};

/// Why a stage failed; the worker records it and retries later.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// An LLM call failed after its retries.
    #[error("{what}: {source}")]
    Chat {
        /// The step.
        what: &'static str,
        /// The failure.
        source: ChatError,
    },
    /// Embedding failed.
    #[error("embedding: {0}")]
    Embed(#[from] uno_llm::embed::EmbedError),
}

fn chat_err(what: &'static str) -> impl FnOnce(ChatError) -> StageError {
    move |source| StageError::Chat { what, source }
}

#[derive(Deserialize)]
struct FeedbackRules {
    satisfied: bool,
    rules: Vec<String>,
}

#[derive(Deserialize)]
struct Rules {
    rules: Vec<String>,
}

#[derive(Deserialize)]
struct Coverage {
    covered: bool,
}

/// The method caps R_0 at five rules by instruction; small models ignore
/// instructions, so the cap is also applied here.
const MAX_PRIOR_RULES: usize = 5;

/// Trims, and drops duplicates and rules that say nothing: small models
/// echo the schema's placeholder (`"..."`) or emit bare punctuation, and a
/// rule without a letter or digit cannot instruct anyone.
fn clean(rules: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(rules.len());
    for r in rules {
        let r = r.trim().to_owned();
        if r.chars().any(char::is_alphanumeric) && !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// Stage 1: R_f (with satisfaction) from the feedback, and R_0 from the
/// query alone, both at T = 0.1, seed 42, as JSON.
pub async fn distil(
    model: &ChatModel,
    log: &LearnLog,
    max_tokens: u32,
) -> Result<StageOutput, StageError> {
    let lang = Lang::of(&log.input.query);
    let sampling = Sampling::precise(max_tokens);
    let with_feedback: FeedbackRules = model
        .json(
            &prompts::feedback_rules(
                lang,
                &log.input.user_query,
                &log.input.answer,
                &log.input.feedback,
            ),
            sampling,
            "feedback_rules",
            &prompts::feedback_rules_schema(),
        )
        .await
        .map_err(chat_err("feedback rules"))?;
    let prior: Rules = model
        .json(
            &prompts::prior_rules(lang, &log.input.query),
            sampling,
            "prior_rules",
            &prompts::rules_schema(),
        )
        .await
        .map_err(chat_err("prior rules"))?;
    let mut rules_0 = clean(prior.rules);
    rules_0.truncate(MAX_PRIOR_RULES);
    Ok(StageOutput::Distilled {
        satisfied: with_feedback.satisfied,
        rules_f: clean(with_feedback.rules),
        rules_0,
        by: model.model().to_owned(),
    })
}

/// The rules part of the clustering text (method §2.5): the rules one per
/// line; empty when R_f is empty, and embedded all the same.
pub fn rules_text(rules: &[String]) -> String {
    rules.join("\n")
}

/// What stored query vectors are keyed by: the embedder and the version of
/// the text it embedded ([`uno_core::query::TEXT_VERSION`]). A change of
/// either sends logs back to be embedded again (the store resets logs
/// whose key differs), and clustering reads only logs of one key, so
/// vectors of another embedder or of an older text are never mixed in.
pub fn vector_key(embedder: &dyn Embedder) -> String {
    format!("{}+{}", embedder.id(), uno_core::query::TEXT_VERSION)
}

/// Stage 2: the query (the user's own words, [`crate::source::route_text`])
/// and the rules, embedded separately.
pub async fn embed(embedder: &dyn Embedder, log: &LearnLog) -> Result<StageOutput, StageError> {
    let texts = [
        crate::source::route_text(&log.input),
        rules_text(&log.rules_f),
    ];
    let mut vectors = embedder.embed(&texts).await?;
    let rules_vec = vectors.pop().unwrap_or_default();
    let query_vec = vectors.pop().unwrap_or_default();
    Ok(StageOutput::Embedded {
        embedder_id: vector_key(embedder),
        query_vec,
        rules_vec,
    })
}

/// How novelty is scored (method §2.6: novelty = 1 − P(covered)).
#[derive(Clone)]
pub enum NoveltyScorer {
    /// An LLM judge.
    Llm {
        /// Sampled verdicts when logprobs are unavailable.
        samples: u32,
        /// Whether the upstream gave logprobs: 0 unknown, 1 yes, 2 no.
        logprobs: Arc<AtomicU8>,
        /// Rules whose best cosine similarity to a prior rule falls
        /// outside this band are scored by the embedding alone (`1 −
        /// similarity`), without asking the judge: a rule nothing in R_0
        /// resembles is novel, one R_0 states almost word for word is
        /// covered. Only the rules in between cost judge calls.
        prefilter: Option<Prefilter>,
    },
    /// One minus the best cosine similarity to a prior rule.
    Embedding(Arc<dyn Embedder>),
}

/// The embedding pre-filter of the LLM novelty judge; see
/// [`NoveltyScorer::Llm`].
#[derive(Clone)]
pub struct Prefilter {
    /// The embedder (the worker's).
    pub embedder: Arc<dyn Embedder>,
    /// Below this best similarity a rule is novel without a judge call.
    pub novel_below: f32,
    /// Above it, covered without a judge call.
    pub covered_above: f32,
}

impl NoveltyScorer {
    /// An LLM scorer.
    pub fn llm(samples: u32) -> Self {
        NoveltyScorer::Llm {
            samples: samples.max(1),
            logprobs: Arc::new(AtomicU8::new(0)),
            prefilter: None,
        }
    }

    /// An LLM scorer that asks the judge only about rules whose best
    /// embedding similarity to R_0 lies within `[novel_below,
    /// covered_above]`.
    pub fn llm_with_prefilter(samples: u32, prefilter: Prefilter) -> Self {
        NoveltyScorer::Llm {
            samples: samples.max(1),
            logprobs: Arc::new(AtomicU8::new(0)),
            prefilter: Some(prefilter),
        }
    }

    /// Stored with the scores, so a change of scorer re-scores.
    pub fn id(&self) -> String {
        match self {
            NoveltyScorer::Llm {
                prefilter: Some(p), ..
            } => format!(
                "llm-judge:v1+prefilter:{}:{}-{}",
                p.embedder.id(),
                p.novel_below,
                p.covered_above
            ),
            NoveltyScorer::Llm { .. } => "llm-judge:v1".to_owned(),
            NoveltyScorer::Embedding(e) => format!("embedding:{}", e.id()),
        }
    }

    /// Stage 3: novelty of each rule of R_f against R_0; empty when either
    /// is empty (the method scores only logs with both).
    pub async fn score(
        &self,
        model: &ChatModel,
        log: &LearnLog,
    ) -> Result<StageOutput, StageError> {
        let novelty = if log.rules_f.is_empty() || log.rules_0.is_empty() {
            Vec::new()
        } else {
            match self {
                NoveltyScorer::Embedding(embedder) => {
                    embedding_novelty(embedder.as_ref(), &log.rules_f, &log.rules_0).await?
                }
                NoveltyScorer::Llm {
                    samples,
                    logprobs,
                    prefilter,
                } => {
                    let lang = Lang::of(&log.input.query);
                    let similar = match prefilter {
                        Some(p) => Some(
                            embedding_novelty(p.embedder.as_ref(), &log.rules_f, &log.rules_0)
                                .await?,
                        ),
                        None => None,
                    };
                    let mut out = Vec::with_capacity(log.rules_f.len());
                    for (i, rule) in log.rules_f.iter().enumerate() {
                        if let (Some(p), Some(novelty)) =
                            (prefilter, similar.as_ref().and_then(|s| s.get(i)))
                        {
                            let best = 1.0 - *novelty;
                            if best < f64::from(p.novel_below) || best > f64::from(p.covered_above)
                            {
                                out.push(*novelty);
                                continue;
                            }
                        }
                        let covered =
                            p_covered(model, lang, rule, &log.rules_0, *samples, logprobs).await?;
                        out.push(1.0 - covered);
                    }
                    out
                }
            }
        };
        Ok(StageOutput::Scored {
            novelty,
            by: self.id(),
        })
    }
}

async fn embedding_novelty(
    embedder: &dyn Embedder,
    rules: &[String],
    prior: &[String],
) -> Result<Vec<f64>, StageError> {
    let mut texts = rules.to_vec();
    texts.extend_from_slice(prior);
    let vectors = embedder.embed(&texts).await?;
    let (r, p) = vectors.split_at(rules.len());
    Ok(r.iter()
        .map(|rv| {
            let best = p.iter().map(|pv| cosine(rv, pv)).fold(f32::MIN, f32::max);
            f64::from(1.0 - best).clamp(0.0, 1.0)
        })
        .collect())
}

/// P(covered): from logprobs when the upstream gives them (remembered after
/// the first try), else the share of `samples` sampled JSON verdicts that
/// say covered (T = 1.0, top_p 0.9, seeds 42, 43, …; failed samples are
/// left out, and all failing is an error).
async fn p_covered(
    model: &ChatModel,
    lang: Lang,
    rule: &str,
    prior: &[String],
    samples: u32,
    logprobs: &AtomicU8,
) -> Result<f64, StageError> {
    if logprobs.load(Ordering::Relaxed) != 2 {
        let p = model
            .yes_probability(&prompts::coverage_yes_no(lang, rule, prior))
            .await
            .map_err(chat_err("novelty (logprobs)"))?;
        match p {
            Some(p) => {
                logprobs.store(1, Ordering::Relaxed);
                return Ok(p);
            }
            None => {
                if logprobs.swap(2, Ordering::Relaxed) == 0 {
                    tracing::info!(
                        model = model.model(),
                        "upstream gives no logprobs; novelty from sampled verdicts"
                    );
                }
            }
        }
    }
    let messages = prompts::coverage(lang, rule, prior);
    let mut yes = 0u32;
    let mut answered = 0u32;
    let mut last_err = None;
    for j in 0..samples {
        let sampling = Sampling {
            temperature: 1.0,
            top_p: Some(0.9),
            max_tokens: 64,
            seed: Some(42 + u64::from(j)),
        };
        match model
            .json::<Coverage>(&messages, sampling, "coverage", &prompts::coverage_schema())
            .await
        {
            Ok(c) => {
                answered += 1;
                yes += u32::from(c.covered);
            }
            Err(err) => last_err = Some(err),
        }
    }
    match (answered, last_err) {
        (0, Some(err)) => Err(StageError::Chat {
            what: "novelty (sampled)",
            source: err,
        }),
        (0, None) => Ok(0.0),
        _ => Ok(f64::from(yes) / f64::from(answered)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_and_duplicates_are_not_rules() {
        let rules = super::clean(vec![
            "...".into(),
            " Cite the form number. ".into(),
            "Cite the form number.".into(),
            "".into(),
            "—".into(),
            "给出例子".into(),
        ]);
        assert_eq!(rules, vec!["Cite the form number.", "给出例子"]);
    }
}
