//! Training data from rated interactions, in the JSONL formats that
//! OpenAI fine-tuning and Hugging Face TRL accept.
//!
//! - SFT: each up-rated answer as a chat example,
//!   `{"messages": [...prompt, {"role": "assistant", "content": answer}]}`
//!   (both OpenAI and TRL's `SFTTrainer` read this conversational form).
//! - DPO: preference pairs from (a) a user's `expected_output` preferred over
//!   the answer they rated, and (b) an up-rated answer preferred over a
//!   down-rated answer to the same prompt. OpenAI's preference format is
//!   `{"input": {"messages"}, "preferred_output", "non_preferred_output"}`;
//!   TRL's is `{"prompt", "chosen", "rejected"}` with message lists.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use uuid::Uuid;

/// An interaction with one explicit rating or correction on it.
#[derive(Debug, Clone, PartialEq)]
pub struct RatedInteraction {
    /// The interaction.
    pub interaction_id: Uuid,
    /// The request body as sent (JSON text).
    pub request: String,
    /// The answer, if content is still retained.
    pub response_text: Option<String>,
    /// +1 / -1, if rated.
    pub rating: Option<i16>,
    /// The answer the user wanted, if given.
    pub expected_output: Option<String>,
}

/// Which dataset to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    /// Supervised fine-tuning examples.
    Sft,
    /// Preference pairs.
    Dpo,
}

/// Whose JSONL layout to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// OpenAI fine-tuning.
    OpenAi,
    /// Hugging Face TRL.
    Trl,
}

/// The prompt messages of a stored request, reduced to the fields both
/// fine-tuning formats accept.
fn prompt_messages(request: &str) -> Option<Vec<Value>> {
    let parsed: Value = serde_json::from_str(request).ok()?;
    let messages = parsed.get("messages")?.as_array()?;
    let cleaned: Vec<Value> = messages
        .iter()
        .filter_map(|m| {
            let role = m.get("role")?.as_str()?;
            let mut out =
                json!({"role": role, "content": m.get("content").cloned().unwrap_or(Value::Null)});
            if let Some(name) = m.get("name") {
                out["name"] = name.clone();
            }
            Some(out)
        })
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

fn pair(format: ExportFormat, prompt: &[Value], chosen: &str, rejected: &str) -> Value {
    match format {
        ExportFormat::OpenAi => json!({
            "input": {"messages": prompt},
            "preferred_output": [assistant(chosen)],
            "non_preferred_output": [assistant(rejected)],
        }),
        ExportFormat::Trl => json!({
            "prompt": prompt,
            "chosen": [assistant(chosen)],
            "rejected": [assistant(rejected)],
        }),
    }
}

/// Builds the dataset lines (one JSON object each, no newline).
pub fn build(rows: &[RatedInteraction], kind: ExportKind, format: ExportFormat) -> Vec<String> {
    match kind {
        ExportKind::Sft => sft(rows),
        ExportKind::Dpo => dpo(rows, format),
    }
}

fn sft(rows: &[RatedInteraction]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    rows.iter()
        .filter(|r| r.rating == Some(1))
        .filter(|r| seen.insert(r.interaction_id))
        .filter_map(|r| {
            let mut messages = prompt_messages(&r.request)?;
            messages.push(assistant(r.response_text.as_deref()?));
            Some(json!({"messages": messages}).to_string())
        })
        .collect()
}

/// The answers rated up and down for one prompt.
struct RatedAnswers<'a> {
    prompt: Vec<Value>,
    up: Vec<&'a str>,
    down: Vec<&'a str>,
}

fn dpo(rows: &[RatedInteraction], format: ExportFormat) -> Vec<String> {
    let mut lines = Vec::new();
    // (a) corrections: what the user wanted over what they got.
    for row in rows {
        let (Some(expected), Some(answer)) = (&row.expected_output, &row.response_text) else {
            continue;
        };
        if expected.trim().is_empty() || expected == answer {
            continue;
        }
        if let Some(prompt) = prompt_messages(&row.request) {
            lines.push(pair(format, &prompt, expected, answer).to_string());
        }
    }
    // (b) for each prompt, every up-rated answer over every down-rated one.
    let mut by_prompt: BTreeMap<String, RatedAnswers<'_>> = BTreeMap::new();
    for row in rows {
        let (Some(rating), Some(answer)) = (row.rating, row.response_text.as_deref()) else {
            continue;
        };
        let Some(prompt) = prompt_messages(&row.request) else {
            continue;
        };
        let key = Value::Array(prompt.clone()).to_string();
        let entry = by_prompt.entry(key).or_insert_with(|| RatedAnswers {
            prompt,
            up: Vec::new(),
            down: Vec::new(),
        });
        let list = if rating > 0 {
            &mut entry.up
        } else {
            &mut entry.down
        };
        if !list.contains(&answer) {
            list.push(answer);
        }
    }
    for answers in by_prompt.values() {
        for up in &answers.up {
            for down in answers.down.iter().filter(|d| *d != up) {
                lines.push(pair(format, &answers.prompt, up, down).to_string());
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rated(
        request_text: &str,
        answer: &str,
        rating: Option<i16>,
        expected: Option<&str>,
    ) -> RatedInteraction {
        RatedInteraction {
            interaction_id: Uuid::now_v7(),
            request: json!({"model": "m", "messages": [{"role": "user", "content": request_text}], "temperature": 0.2}).to_string(),
            response_text: Some(answer.to_owned()),
            rating,
            expected_output: expected.map(str::to_owned),
        }
    }

    #[test]
    fn sft_keeps_up_rated_answers_only() {
        let rows = [
            rated("q1", "good", Some(1), None),
            rated("q2", "bad", Some(-1), None),
        ];
        let lines = build(&rows, ExportKind::Sft, ExportFormat::OpenAi);
        assert_eq!(lines.len(), 1);
        let v: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["messages"][0], json!({"role": "user", "content": "q1"}));
        assert_eq!(
            v["messages"][1],
            json!({"role": "assistant", "content": "good"})
        );
    }

    #[test]
    fn dpo_pairs_corrections_and_up_over_down() {
        let rows = [
            rated("q", "meh", Some(-1), Some("what I wanted")),
            rated("q", "great", Some(1), None),
            rated("other", "x", Some(1), None),
        ];
        let openai = build(&rows, ExportKind::Dpo, ExportFormat::OpenAi);
        assert_eq!(openai.len(), 2, "{openai:?}");
        let first: Value = serde_json::from_str(&openai[0]).unwrap();
        assert_eq!(first["preferred_output"][0]["content"], "what I wanted");
        assert_eq!(first["non_preferred_output"][0]["content"], "meh");
        let second: Value = serde_json::from_str(&openai[1]).unwrap();
        assert_eq!(second["preferred_output"][0]["content"], "great");
        assert_eq!(second["non_preferred_output"][0]["content"], "meh");
        assert_eq!(second["input"]["messages"][0]["content"], "q");

        let trl = build(&rows, ExportKind::Dpo, ExportFormat::Trl);
        let v: Value = serde_json::from_str(&trl[1]).unwrap();
        assert_eq!(v["chosen"][0]["content"], "great");
        assert_eq!(v["rejected"][0]["content"], "meh");
        assert_eq!(v["prompt"][0]["role"], "user");
    }
}
