//! The validation gate, prompt mode (method §2.7 as §6.1 adapts it): on a
//! cluster's held-out logs, answer with and without the rule block, judge
//! both against each log's own R_f with several samples, apply the length
//! and BLEU guards, and compute the win rate.
//!
//! Each held-out log's outcome is cached under a hash of everything that
//! produced it (model, prompt, block, standard, settings), so a worker killed
//! mid-validation, or the next re-clustering with an unchanged block, does
//! not pay for the same calls again.

use serde::{Deserialize, Serialize};
use uno_core::bleu::{passes_bleu_guard, passes_length_guard};
use uno_core::config::LearnConfig;
use uno_core::snapshot::Validation;
use uno_llm::{ChatModel, Message, Sampling};
use uno_store::Store;
use uno_store::learn::LearnLog;

use crate::prompts::{self, Lang};
use crate::stages::StageError;

/// One held-out log's judged outcome.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Mean judge score of the answer without the block.
    pub base_score: f64,
    /// Mean judge score of the answer with the block.
    pub candidate_score: f64,
    /// 1 win, 0.5 tie, 0 loss (guards applied).
    pub credit: f64,
    /// Whether a guard took the credit away.
    pub guarded: bool,
}

/// The prompt with the rule block added to the system message (appended to
/// an existing one, or as a new first message). The proxy's primary mode
/// applies the block the same way.
pub fn with_block(messages: &[Message], block: &str) -> Vec<Message> {
    let mut out = messages.to_vec();
    match out.first_mut() {
        Some(first) if first.role == "system" => {
            first.content = format!("{}\n\n{block}", first.content);
        }
        _ => out.insert(0, Message::system(block)),
    }
    out
}

/// The stored prompt (every message of the request, of whatever turn) as
/// messages.
pub fn prompt_of(log: &LearnLog) -> Vec<Message> {
    serde_json::from_str::<Vec<Message>>(&log.input.messages)
        .unwrap_or_else(|_| vec![Message::user(log.input.user_query.clone())])
}

/// The standard a log is judged against: R_f, else R_0 (method §2.3).
fn standard(log: &LearnLog) -> &[String] {
    if log.rules_f.is_empty() {
        &log.rules_0
    } else {
        &log.rules_f
    }
}

/// Validates `block` on `holdout`, up to `concurrency` logs at a time.
pub async fn validate(
    store: &Store,
    model: &ChatModel,
    config: &LearnConfig,
    block: &str,
    holdout: &[&LearnLog],
    concurrency: usize,
) -> Result<Validation, StageError> {
    let mut outcomes: Vec<Result<Outcome, StageError>> = Vec::with_capacity(holdout.len());
    for chunk in holdout.chunks(concurrency.max(1)) {
        let futures: Vec<_> = chunk
            .iter()
            .map(|log| judged(store, model, config, block, log))
            .collect();
        outcomes.extend(futures_util::future::join_all(futures).await);
    }
    let mut v = Validation {
        win_rate: 0.0,
        logs: holdout.len(),
        wins: 0,
        ties: 0,
        guarded: 0,
    };
    let mut credit = 0.0;
    for outcome in outcomes {
        let o = outcome?;
        credit += o.credit;
        v.wins += usize::from(o.credit == 1.0);
        v.ties += usize::from(o.credit == 0.5);
        v.guarded += usize::from(o.guarded);
    }
    v.win_rate = if v.logs == 0 {
        0.0
    } else {
        credit / v.logs as f64
    };
    Ok(v)
}

async fn judged(
    store: &Store,
    model: &ChatModel,
    config: &LearnConfig,
    block: &str,
    log: &LearnLog,
) -> Result<Outcome, StageError> {
    let prompt = prompt_of(log);
    let key = cache_key(model.model(), &prompt, block, standard(log), config);
    let tenant = &log.input.tenant;
    if let Ok(Some(hit)) = store.learn_cache_get(tenant, &key).await
        && let Ok(outcome) = serde_json::from_str::<Outcome>(&hit)
    {
        return Ok(outcome);
    }
    let sampling = Sampling {
        temperature: 0.1,
        top_p: None,
        max_tokens: config.answer_max_tokens,
        seed: Some(config.seed),
    };
    let base = model
        .text(&prompt, sampling)
        .await
        .map_err(|source| StageError::Chat {
            what: "validation answer without the block",
            source,
        })?;
    let candidate = model
        .text(&with_block(&prompt, block), sampling)
        .await
        .map_err(|source| StageError::Chat {
            what: "validation answer with the block",
            source,
        })?;
    let lang = Lang::of(&log.input.query);
    let base_score = judge(model, config, lang, log, &base).await;
    let candidate_score = judge(model, config, lang, log, &candidate).await;
    let length_ok = passes_length_guard(&base, &candidate, config.length_min_ratio);
    let bleu_ok = passes_bleu_guard(&base, &candidate, config.bleu_min);
    let credit = if !length_ok || !bleu_ok || candidate_score < base_score {
        0.0
    } else if candidate_score > base_score {
        1.0
    } else {
        0.5
    };
    let outcome = Outcome {
        base_score,
        candidate_score,
        credit,
        guarded: (!length_ok || !bleu_ok) && candidate_score >= base_score,
    };
    if let Ok(text) = serde_json::to_string(&outcome)
        && let Err(err) = store.learn_cache_put(tenant, &key, &text).await
    {
        tracing::warn!(%err, "could not cache a validation outcome; it will be recomputed");
    }
    Ok(outcome)
}

#[derive(Deserialize)]
struct Judgement {
    score: f64,
}

/// The mean of `judge_samples` judgements: the first greedy, the rest at
/// T = 1.0, top_p 0.9, seeds 43, 44, … (method §2.3). A failed sample
/// counts as 0, as in the method; scores are clamped to 1..=10.
async fn judge(
    model: &ChatModel,
    config: &LearnConfig,
    lang: Lang,
    log: &LearnLog,
    answer: &str,
) -> f64 {
    let messages = prompts::judge(lang, &log.input.query, standard(log), answer);
    let mut total = 0.0;
    for j in 0..config.judge_samples {
        let sampling = if j == 0 {
            Sampling {
                temperature: 0.0,
                top_p: None,
                max_tokens: config.judge_max_tokens,
                seed: Some(config.seed),
            }
        } else {
            Sampling {
                temperature: 1.0,
                top_p: Some(0.9),
                max_tokens: config.judge_max_tokens,
                seed: Some(config.seed + u64::from(j)),
            }
        };
        match model
            .json::<Judgement>(&messages, sampling, "judgement", &prompts::judge_schema())
            .await
        {
            Ok(j) if j.score.is_finite() => total += j.score.clamp(1.0, 10.0),
            Ok(_) => {}
            Err(err) => tracing::debug!(%err, "a judge sample failed; it counts as 0"),
        }
    }
    total / f64::from(config.judge_samples.max(1))
}

fn cache_key(
    model: &str,
    prompt: &[Message],
    block: &str,
    standard: &[String],
    config: &LearnConfig,
) -> String {
    let parts = [
        "validation:v1".to_owned(),
        model.to_owned(),
        serde_json::to_string(prompt).unwrap_or_default(),
        block.to_owned(),
        serde_json::to_string(standard).unwrap_or_default(),
        format!(
            "{}|{}|{}|{}|{}|{}",
            config.judge_max_tokens,
            config.judge_samples,
            config.bleu_min,
            config.length_min_ratio,
            config.answer_max_tokens,
            config.seed
        ),
    ];
    crate::content_key::content_key(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_joins_the_system_message_or_leads() {
        let with_system = with_block(&[Message::system("Be brief."), Message::user("Q")], "RULES");
        assert_eq!(with_system[0].content, "Be brief.\n\nRULES");
        assert_eq!(with_system.len(), 2);
        let without = with_block(&[Message::user("Q")], "RULES");
        assert_eq!(without[0].role, "system");
        assert_eq!(without[0].content, "RULES");
        assert_eq!(without[1].content, "Q");
    }
}
