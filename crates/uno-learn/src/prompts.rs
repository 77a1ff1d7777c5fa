//! Every prompt the worker sends, in English and Chinese, in one place.
//!
//! They follow the intent, inputs and output format the UNO method describes
//! (`uno-method.md` §2.1–2.3, §2.8), in uno's own words. The language is
//! chosen by the text's script, as the method does: Chinese when the query
//! contains a CJK ideograph (U+4E00–U+9FA5).

use uno_llm::Message;

/// The language a prompt is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Chinese.
    Zh,
}

impl Lang {
    /// Chinese when `text` has a CJK ideograph, else English.
    pub fn of(text: &str) -> Lang {
        if text.chars().any(|c| ('\u{4E00}'..='\u{9FA5}').contains(&c)) {
            Lang::Zh
        } else {
            Lang::En
        }
    }

    /// The language stored as `code` ([`Lang::as_str`]): Chinese for `zh`,
    /// else English.
    pub fn from_code(code: &str) -> Lang {
        if code == Lang::Zh.as_str() {
            Lang::Zh
        } else {
            Lang::En
        }
    }

    /// `en` or `zh`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }
}

/// The JSON schema of a rule list, `{"rules": [string]}`.
pub fn rules_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {"rules": {"type": "array", "items": {"type": "string"}}},
        "required": ["rules"],
        "additionalProperties": false
    })
}

/// The JSON schema of the feedback analysis: rules plus whether the user was
/// satisfied.
pub fn feedback_rules_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "satisfied": {"type": "boolean"},
            "rules": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["satisfied", "rules"],
        "additionalProperties": false
    })
}

/// The JSON schema of a judgement, `{"reason": string, "score": 1..10}`.
pub fn judge_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "reason": {"type": "string"},
            "score": {"type": "integer", "minimum": 1, "maximum": 10}
        },
        "required": ["reason", "score"],
        "additionalProperties": false
    })
}

/// The JSON schema of a coverage verdict, `{"covered": bool}`.
pub fn coverage_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {"covered": {"type": "boolean"}},
        "required": ["covered"],
        "additionalProperties": false
    })
}

/// The JSON schema of a cluster's consolidation: groups of rule numbers
/// that state one preference, each with the number of the member whose
/// wording stands for the group and whether the group promotes a named
/// product, brand, site or contact; and pairs of rule numbers that ask for
/// opposite things.
pub fn consolidation_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "members": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                        "canonical": {"type": "integer", "minimum": 1},
                        "promotes": {"type": "boolean"}
                    },
                    "required": ["members", "canonical", "promotes"],
                    "additionalProperties": false
                }
            },
            "contradictions": {
                "type": "array",
                "items": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1},
                    "minItems": 2,
                    "maxItems": 2
                }
            }
        },
        "required": ["groups", "contradictions"],
        "additionalProperties": false
    })
}

/// Consolidation by meaning: which of a cluster's rules say the same thing
/// in other words, which contradict each other, and which promote a named
/// product, brand, site or contact. The model answers with rule numbers
/// only, so who supports what is counted by uno, never by the model.
pub fn consolidation(lang: Lang, rules: &[String]) -> Vec<Message> {
    match lang {
        Lang::En => vec![
            Message::system(
                "You consolidate rules that users' feedback taught an AI assistant on similar requests. \
                 Group the numbered rules by meaning: rules that ask for the same thing in different \
                 words belong to one group; rules that ask for different things belong to different \
                 groups. Every rule is in at most one group. For each group give its member numbers, \
                 the number of the member whose wording states the group best (canonical), and whether \
                 the group promotes a named product, brand, shop, website, URL, email address or phone \
                 number (promotes). Then list pairs of rule numbers that ask for opposite things (for \
                 example \"be brief\" and \"be detailed\") as contradictions. Reply with JSON: \
                 {\"groups\": [{\"members\": [1, 2], \"canonical\": 1, \"promotes\": false}], \
                 \"contradictions\": [[1, 3]]}.",
            ),
            Message::user(format!("## Rules\n{}", numbered(rules))),
        ],
        Lang::Zh => vec![
            Message::system(
                "你负责整合用户反馈在类似请求上教给AI助手的规则。请按含义对编号规则分组：用不同措辞要求同一件事的规则\
                 归为一组，要求不同事情的规则分在不同组。每条规则最多属于一组。对每组给出成员编号、最能表述该组的成员编号\
                 （canonical），以及该组是否推广具名的产品、品牌、商店、网站、网址、电子邮箱或电话号码（promotes）。\
                 然后把要求相反的规则编号对（例如“简短”与“详细”）列为 contradictions。以JSON回复：\
                 {\"groups\": [{\"members\": [1, 2], \"canonical\": 1, \"promotes\": false}], \
                 \"contradictions\": [[1, 3]]}。",
            ),
            Message::user(format!("## 规则\n{}", numbered(rules))),
        ],
    }
}

fn numbered(rules: &[String]) -> String {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{}. {r}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// R_f: rules distilled from what the user said after the first answer.
pub fn feedback_rules(lang: Lang, query: &str, answer: &str, feedback: &str) -> Vec<Message> {
    match lang {
        Lang::En => vec![
            Message::system(
                "You analyse conversations between a user and an AI assistant. You are given the user's \
                 initial query, the assistant's first answer, and what the user said afterwards (one or \
                 more rounds of feedback). Decide whether the user was satisfied with the answer to the \
                 initial query. Then distil, from the feedback only, rules that would have helped the \
                 assistant answer the initial query better. Keep only feedback about the initial query; \
                 ignore topic changes and small talk. If nothing relevant remains, or the user was simply \
                 satisfied, return an empty list. Write each rule as one clear instruction that says what \
                 to do (not what to avoid). Reply with JSON: {\"satisfied\": true|false, \"rules\": [\"...\"]}.",
            ),
            Message::user(format!(
                "## Initial User Query\n{query}\n\n## Initial Model Response\n{answer}\n\n## User Feedback\n{feedback}"
            )),
        ],
        Lang::Zh => vec![
            Message::system(
                "你负责分析用户与AI助手的对话。你会得到用户的初始问题、助手的第一次回答，以及用户之后的反馈（可能有多轮）。\
                 请判断用户对初始问题的回答是否满意，然后仅根据反馈，总结出能帮助助手更好地回答初始问题的规则。\
                 只保留与初始问题相关的反馈，忽略话题转移和闲聊。如果没有相关内容，或用户只是表示满意，返回空列表。\
                 每条规则写成一条清晰、可执行、正面表述的指令（说明应该做什么，而不是不该做什么）。\
                 以JSON回复：{\"satisfied\": true|false, \"rules\": [\"...\"]}。",
            ),
            Message::user(format!(
                "## 用户初始问题\n{query}\n\n## 模型初始回答\n{answer}\n\n## 用户反馈\n{feedback}"
            )),
        ],
    }
}

/// R_0: the rules the model expects to matter for a query, without feedback.
pub fn prior_rules(lang: Lang, query: &str) -> Vec<Message> {
    match lang {
        Lang::En => vec![
            Message::system(
                "Analyse the user's query and write at most 5 rules or suggestions that would help an AI \
                 assistant answer it well. They may be explicit requests in the query or needs you infer \
                 from it. Be specific to this query, avoid overlapping or overly broad rules, and write \
                 each as one clear instruction that says what to do. Reply with JSON: {\"rules\": [\"...\"]}.",
            ),
            Message::user(format!("## User Query\n{query}")),
        ],
        Lang::Zh => vec![
            Message::system(
                "分析用户的问题，写出最多5条能帮助AI助手更好回答该问题的规则或建议。可以是问题中的明确要求，\
                 也可以是推断出的隐含需求。要具体、有针对性，避免重复或过于宽泛，每条写成一条清晰、可执行、\
                 正面表述的指令。以JSON回复：{\"rules\": [\"...\"]}。",
            ),
            Message::user(format!("## 用户问题\n{query}")),
        ],
    }
}

/// Whether one suggestion is already covered by a list of suggestions: the
/// LLM-judge form of the method's reranker novelty test.
pub fn coverage(lang: Lang, rule: &str, prior: &[String]) -> Vec<Message> {
    match lang {
        Lang::En => vec![
            Message::system(
                "Decide whether the suggestion in Query is already semantically covered by the list of \
                 existing suggestions in Document. Reply with JSON: {\"covered\": true|false}.",
            ),
            Message::user(format!(
                "## Query\n{rule}\n\n## Document\n{}",
                prior.join("\n")
            )),
        ],
        Lang::Zh => vec![
            Message::system(
                "判断“查询”中的建议是否已在“文档”中已有建议列表里从语义上被涵盖。以JSON回复：{\"covered\": true|false}。",
            ),
            Message::user(format!("## 查询\n{rule}\n\n## 文档\n{}", prior.join("\n"))),
        ],
    }
}

/// The one-word form of [`coverage`], for upstreams that return
/// log-probabilities: P("yes") of the first token is P(covered).
pub fn coverage_yes_no(lang: Lang, rule: &str, prior: &[String]) -> Vec<Message> {
    match lang {
        Lang::En => vec![
            Message::system(
                "Judge whether the Document meets the requirements based on the Query and the Instruct \
                 provided. Note that the answer can only be \"yes\" or \"no\".",
            ),
            Message::user(format!(
                "<Instruct>: Decide whether the suggestion in Query is already semantically covered by \
                 the existing suggestions in Document.\n<Query>: {rule}\n<Document>: {}\n\
                 Answer with one word, yes or no.",
                prior.join("\n")
            )),
        ],
        Lang::Zh => vec![
            Message::system("根据查询和指令判断文档是否满足要求。只能回答“yes”或“no”。"),
            Message::user(format!(
                "<指令>: 判断查询中的建议是否已在文档的已有建议中从语义上被涵盖。\n<查询>: {rule}\n<文档>: {}\n\
                 只用一个词回答：yes 或 no。",
                prior.join("\n")
            )),
        ],
    }
}

/// The judge: score an answer against expert suggestions (the standard).
pub fn judge(lang: Lang, question: &str, rules: &[String], answer: &str) -> Vec<Message> {
    let standard = if rules.is_empty() {
        match lang {
            Lang::En => "1. The response is relevant to the question.".to_owned(),
            Lang::Zh => "1. 回答与问题相关。".to_owned(),
        }
    } else {
        numbered(rules)
    };
    match lang {
        Lang::En => vec![Message::user(format!(
            "You are a rigorous, objective evaluator of answer quality. Rate the Answer to the Question. \
             The Expert Suggestions are the primary standard; also consider accuracy, completeness, \
             clarity and logic, and relevance. Scores: 9-10 excellent, 7-8 good, 5-6 average, 3-4 poor, \
             1-2 very poor. Reply with JSON: {{\"reason\": \"...\", \"score\": 1-10}}.\n\n\
             ## Question\n{question}\n\n## Expert Suggestion\n{standard}\n\n## Answer\n{answer}"
        ))],
        Lang::Zh => vec![Message::user(format!(
            "你是严谨、客观的回答质量评估者。请为针对问题的回答打分。以专家建议为主要标准，同时考虑准确性、\
             完整性、清晰度与逻辑性以及相关性。分数：9-10优秀，7-8良好，5-6一般，3-4较差，1-2很差。\
             以JSON回复：{{\"reason\": \"...\", \"score\": 1-10}}。\n\n\
             ## 问题\n{question}\n\n## 专家建议\n{standard}\n\n## 回答\n{answer}"
        ))],
    }
}

/// The experience block the primary module puts in the system message.
pub fn experience_block(lang: Lang, rules: &[String]) -> String {
    match lang {
        Lang::En => format!(
            "Lessons from past users on requests like this one. Follow them where they apply:\n{}",
            numbered(rules)
        ),
        Lang::Zh => format!(
            "以往用户在类似请求上的经验，适用时请遵循：\n{}",
            numbered(rules)
        ),
    }
}

/// The critic: suggestions to improve a draft, informed by lessons from
/// past users on similar requests (the prompted form of the Critic LoRA).
pub fn critic(lang: Lang, query: &str, draft: &str, lessons: &[String]) -> Vec<Message> {
    match lang {
        Lang::En => vec![Message::user(format!(
            "Give numbered suggestions that would improve the Initial Answer to the User Query. Base them \
             on the lessons past users taught on similar requests, where they apply. Output only the \
             numbered suggestions.\n\n## Lessons From Past Users\n{}\n\n## User Query\n{query}\n\n\
             ## Initial Answer\n{draft}",
            numbered(lessons)
        ))],
        Lang::Zh => vec![Message::user(format!(
            "请给出能改进针对用户问题的初始回答的编号建议。在适用时，以以往用户在类似请求上的经验为依据。\
             只输出编号建议。\n\n## 以往用户的经验\n{}\n\n## 用户问题\n{query}\n\n## 初始回答\n{draft}",
            numbered(lessons)
        ))],
    }
}

/// The revision ("v2"): rewrite the draft following the suggestions.
pub fn revision(lang: Lang, query: &str, draft: &str, suggestions: &str) -> Vec<Message> {
    match lang {
        Lang::En => vec![Message::user(format!(
            "Revise the Initial Answer following the Suggestion, and output the complete revised answer \
             directly. Do not restate the question at the start.\n\n## Initial Answer\n{draft}\n\n\
             ## Suggestion\n{suggestions}\n\n## User Question\n{query}"
        ))],
        Lang::Zh => vec![Message::user(format!(
            "请根据建议修改初始回答，直接输出完整的修改后回答，开头不要复述问题。\n\n## 初始回答\n{draft}\n\n\
             ## 建议\n{suggestions}\n\n## 用户问题\n{query}"
        ))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_follows_the_script() {
        assert_eq!(Lang::of("What is BLEU?"), Lang::En);
        assert_eq!(Lang::of("什么是BLEU？"), Lang::Zh);
        let zh = feedback_rules(Lang::Zh, "问题", "回答", "反馈");
        assert!(zh[1].content.contains("用户初始问题"));
    }

    #[test]
    fn prompts_carry_their_inputs() {
        let m = feedback_rules(Lang::En, "Q?", "A.", "Feedback 1: too short");
        assert!(m[1].content.contains("## Initial User Query\nQ?"));
        assert!(m[1].content.contains("Feedback 1: too short"));
        let j = judge(Lang::En, "Q?", &["Be brief".into()], "A.");
        assert!(j[0].content.contains("1. Be brief"));
        let j = judge(Lang::En, "Q?", &[], "A.");
        assert!(j[0].content.contains("relevant to the question"));
        assert!(experience_block(Lang::En, &["x".into(), "y".into()]).ends_with("1. x\n2. y"));
    }
}
