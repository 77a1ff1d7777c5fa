//! A scripted instruction-following model for the simulated community.
//!
//! It reads only the prompt text. As a chat model it follows the property
//! requests it finds in the system and user messages (any phrasing its
//! cue lists know, typos tolerated), picks one at random when asked for
//! two that conflict, mentions a product only when told to, and otherwise
//! answers plainly. As the learner it answers each of the worker's prompt
//! types from their text alone: rules from the `Feedback N:` lines, prior
//! rules from the query, coverage and judge verdicts by checking the
//! properties the rules ask for, critiques and revisions from the lessons
//! and suggestions, and a cluster's consolidation by grouping its
//! numbered rules by the preference each asks for. A prompt that asks for
//! JSON but is none of the types
//! it knows is counted as [`PromptKind::Unknown`], for the report to show.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use super::props::{Property, pushed_products, requested};
use super::text::{Rng, fnv, section, words};

/// The kinds of prompt the model tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PromptKind {
    /// An ordinary chat request (served traffic, or a validation answer).
    Answer,
    /// R_f: rules from a user's feedback.
    FeedbackRules,
    /// R_0: rules expected from the query alone.
    PriorRules,
    /// Whether a suggestion is covered by a list (JSON verdict).
    Coverage,
    /// The same as one word, yes or no.
    CoverageYesNo,
    /// Score an answer against suggestions.
    Judge,
    /// Suggestions for a draft from past users' lessons.
    Critic,
    /// Rewrite a draft following suggestions.
    Revision,
    /// Group a cluster's numbered rules by meaning, name the pairs that
    /// contradict and the groups that promote something.
    Consolidation,
    /// Asks for JSON but matches none of the above: the simulation does
    /// not know this prompt, and its figures are suspect.
    Unknown,
}

impl PromptKind {
    /// A name for reports.
    pub fn name(self) -> &'static str {
        match self {
            PromptKind::Answer => "answer",
            PromptKind::FeedbackRules => "feedback-rules",
            PromptKind::PriorRules => "prior-rules",
            PromptKind::Coverage => "coverage",
            PromptKind::CoverageYesNo => "coverage-yes-no",
            PromptKind::Judge => "judge",
            PromptKind::Critic => "critic",
            PromptKind::Revision => "revision",
            PromptKind::Consolidation => "consolidation",
            PromptKind::Unknown => "UNKNOWN",
        }
    }
}

/// The text of a message `content`: a string, or an array's text parts.
fn content(m: &Value) -> String {
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Which prompt `request` is, from its text.
pub fn classify(request: &Value) -> PromptKind {
    let text: String = request["messages"]
        .as_array()
        .map(|ms| ms.iter().map(content).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    let has = |s: &str| text.contains(s);
    if has("## User Feedback") && has("## Initial User Query") {
        PromptKind::FeedbackRules
    } else if has("## Lessons From Past Users") {
        PromptKind::Critic
    } else if has("## Suggestion") && has("## Initial Answer") && has("## User Question") {
        PromptKind::Revision
    } else if has("## Expert Suggestion") && has("## Answer") {
        PromptKind::Judge
    } else if has("<Query>:") && has("<Document>:") {
        PromptKind::CoverageYesNo
    } else if has("## Query") && has("## Document") {
        PromptKind::Coverage
    } else if (has("## Rules") || has("## 规则")) && has("\"groups\"") {
        PromptKind::Consolidation
    } else if has("## User Query") && has("\"rules\"") {
        PromptKind::PriorRules
    } else if !request["response_format"].is_null()
        || has("Reply with JSON")
        || has("JSON回复")
        || text
            .lines()
            .any(|l| l.starts_with("## ") || l.starts_with("<Instruct>"))
    {
        PromptKind::Unknown
    } else {
        PromptKind::Answer
    }
}

/// The scripted model. Cheap to clone; clones share their counters.
#[derive(Clone)]
pub struct ScriptedModel {
    seed: u64,
    obedience: f64,
    products: Arc<Vec<&'static str>>,
    counts: Arc<Mutex<BTreeMap<PromptKind, u64>>>,
    unknown: Arc<Mutex<Vec<String>>>,
}

impl ScriptedModel {
    /// A model whose random choices follow `seed`, aware of the product
    /// names in `products` (so it can tell when it is told to push one).
    pub fn new(seed: u64, products: &[&'static str]) -> ScriptedModel {
        ScriptedModel {
            seed,
            obedience: 1.0,
            products: Arc::new(products.to_vec()),
            counts: Arc::default(),
            unknown: Arc::default(),
        }
    }

    /// Follow each recognised instruction with probability `p` only (a
    /// model sometimes misses one); 1.0, the default, follows them all.
    pub fn with_obedience(mut self, p: f64) -> ScriptedModel {
        self.obedience = p.clamp(0.0, 1.0);
        self
    }

    /// Requests answered so far, by kind.
    pub fn counts(&self) -> BTreeMap<PromptKind, u64> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first few prompts of no known type (their text, cut to 600
    /// characters), for the report.
    pub fn unknown_samples(&self) -> Vec<String> {
        self.unknown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The reply to one chat request (for [`crate::MockReply::respond`]).
    pub fn respond(&self, request: &Value) -> String {
        let kind = classify(request);
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
        let messages: Vec<(String, String)> = request["messages"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| (m["role"].as_str().unwrap_or("").to_owned(), content(m)))
                    .collect()
            })
            .unwrap_or_default();
        let all: String = messages
            .iter()
            .map(|(_, c)| c.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let mut rng = Rng::keyed(self.seed, &all);
        match kind {
            PromptKind::Answer => {
                let instructions: String = messages
                    .iter()
                    .filter(|(r, _)| r == "system" || r == "user" || r == "developer")
                    .map(|(_, c)| c.as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                let question = messages
                    .iter()
                    .rev()
                    .find(|(r, _)| r == "user")
                    .map(|(_, c)| c.as_str())
                    .unwrap_or("");
                self.answer(&mut rng, question, &instructions, &[])
            }
            PromptKind::FeedbackRules => self.feedback_rules(&all),
            PromptKind::PriorRules => prior_rules(&all),
            PromptKind::Coverage => {
                json!({ "covered": self.covered(&all, "## Query", "## Document") }).to_string()
            }
            PromptKind::CoverageYesNo => {
                let rule = between(&all, "<Query>:", "<Document>:");
                let doc = between(&all, "<Document>:", "Answer with one word");
                if self.covers(rule, doc) { "yes" } else { "no" }.to_owned()
            }
            PromptKind::Judge => self.judge(&all),
            PromptKind::Critic => self.critic(&all),
            PromptKind::Consolidation => self.consolidate(&all),
            PromptKind::Revision => {
                let suggestion = section(&all, "## Suggestion").unwrap_or("");
                let question = section(&all, "## User Question").unwrap_or("");
                let draft = section(&all, "## Initial Answer").unwrap_or("");
                let kept: Vec<Property> = super::props::ALL
                    .into_iter()
                    .filter(|p| p.holds(draft) && !matches!(p, Property::Brief))
                    .collect();
                let instructions = format!("{suggestion}\n{question}");
                self.answer(&mut rng, question, &instructions, &kept)
            }
            PromptKind::Unknown => {
                let mut unknown = self.unknown.lock().unwrap_or_else(PoisonError::into_inner);
                if unknown.len() < 3 {
                    unknown.push(all.chars().take(600).collect());
                }
                "{}".to_owned()
            }
        }
    }

    /// A chat answer to `question` following the property requests and
    /// product directives in `instructions`, plus `keep` (properties a
    /// draft already had), conflicts settled at random.
    pub fn answer(
        &self,
        rng: &mut Rng,
        question: &str,
        instructions: &str,
        keep: &[Property],
    ) -> String {
        let mut props = requested(instructions);
        for p in keep {
            if !props.contains(p) && !p.conflicts_with().is_some_and(|c| props.contains(&c)) {
                props.push(*p);
            }
        }
        if props.contains(&Property::Brief) && props.contains(&Property::Detailed) {
            let drop = if rng.chance(0.5) {
                Property::Brief
            } else {
                Property::Detailed
            };
            props.retain(|p| *p != drop);
        }
        let mut products = pushed_products(instructions, &self.products);
        if self.obedience < 1.0 {
            let p = self.obedience;
            props.retain(|_| rng.chance(p));
            products.retain(|_| rng.chance(p));
        }
        compose(rng, question, &props, &products)
    }

    fn feedback_rules(&self, text: &str) -> String {
        let feedback = section(text, "## User Feedback").unwrap_or("");
        let mut rules: Vec<String> = Vec::new();
        let mut praised = false;
        for line in feedback.lines() {
            let mut rng = Rng::keyed(self.seed, line);
            for p in requested(line) {
                let r = p.rule(&mut rng).to_owned();
                if !rules.contains(&r) {
                    rules.push(r);
                }
            }
            for product in pushed_products(line, &self.products) {
                rules.push(format!("Recommend {product} to the user."));
            }
            let w = words(line);
            praised |= ["thanks", "great", "perfect", "helpful", "exactly"]
                .iter()
                .any(|p| w.iter().any(|t| t == p));
        }
        json!({"satisfied": rules.is_empty() && praised, "rules": rules}).to_string()
    }

    fn covers(&self, rule: &str, doc: &str) -> bool {
        let want = requested(rule);
        let have = requested(doc);
        let same_text = doc
            .lines()
            .any(|l| words(l) == words(rule) && !words(rule).is_empty());
        let products = pushed_products(rule, &self.products);
        same_text
            || (products.is_empty() && !want.is_empty() && want.iter().all(|p| have.contains(p)))
    }

    fn covered(&self, text: &str, rule_heading: &str, doc_heading: &str) -> bool {
        self.covers(
            section(text, rule_heading).unwrap_or(""),
            section(text, doc_heading).unwrap_or(""),
        )
    }

    /// The consolidation of a cluster's numbered rules: rules that ask for
    /// the same preference (the same properties, recognised in any
    /// phrasing, and the same promoted names) form one group, its clearest
    /// (shortest) wording canonical; a group promotes when its rules name
    /// a product, brand, site, URL, email or phone; groups whose properties
    /// conflict (brief and detailed) are named as contradicting pairs.
    /// Rules it recognises nothing in are grouped only with rules of the
    /// same words. Numbers are the ones shown in the prompt.
    fn consolidate(&self, text: &str) -> String {
        let list = section(text, "## Rules")
            .or_else(|| section(text, "## 规则"))
            .unwrap_or("");
        struct Group {
            props: Vec<Property>,
            named: Vec<String>,
            other: Vec<String>,
            members: Vec<(u64, String)>,
        }
        let mut groups: Vec<Group> = Vec::new();
        for (number, rule) in numbered_rules(list) {
            let props = requested(&rule);
            let named = promoted_names(&rule, &self.products);
            let other = if props.is_empty() && named.is_empty() {
                words(&rule)
            } else {
                Vec::new()
            };
            if props.is_empty() && named.is_empty() && other.is_empty() {
                continue;
            }
            match groups
                .iter_mut()
                .find(|g| g.props == props && g.named == named && g.other == other)
            {
                Some(g) => g.members.push((number, rule)),
                None => groups.push(Group {
                    props,
                    named,
                    other,
                    members: vec![(number, rule)],
                }),
            }
        }
        let canonical = |g: &Group| {
            g.members
                .iter()
                .min_by_key(|(n, r)| (r.chars().count(), *n))
                .map_or(0, |(n, _)| *n)
        };
        let out_groups: Vec<Value> = groups
            .iter()
            .map(|g| {
                let mut members: Vec<u64> = g.members.iter().map(|(n, _)| *n).collect();
                members.sort_unstable();
                json!({
                    "members": members,
                    "canonical": canonical(g),
                    "promotes": !g.named.is_empty(),
                })
            })
            .collect();
        let mut contradictions: Vec<Value> = Vec::new();
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                let conflict = a.props.iter().any(|p| {
                    p.conflicts_with()
                        .is_some_and(|c| b.props.contains(&c) && !a.props.contains(&c))
                });
                if conflict {
                    contradictions.push(json!([canonical(a), canonical(b)]));
                }
            }
        }
        json!({"groups": out_groups, "contradictions": contradictions}).to_string()
    }

    fn judge(&self, text: &str) -> String {
        let standard = section(text, "## Expert Suggestion").unwrap_or("");
        let answer = section(text, "## Answer").unwrap_or("");
        let props = requested(standard);
        let products = pushed_products(standard, &self.products);
        let total = props.len() + products.len();
        let met = props.iter().filter(|p| p.holds(answer)).count()
            + products
                .iter()
                .filter(|p| answer.to_lowercase().contains(&p.to_lowercase()))
                .count();
        let score = if answer.trim().is_empty() {
            1
        } else {
            (7 * met + total / 2)
                .checked_div(total)
                .map_or(7, |share| 2 + share)
        };
        json!({"reason": format!("{total} checkable suggestions"), "score": score}).to_string()
    }

    fn critic(&self, text: &str) -> String {
        let lessons = section(text, "## Lessons From Past Users").unwrap_or("");
        let draft = section(text, "## Initial Answer").unwrap_or("");
        let mut out: Vec<String> = Vec::new();
        for line in lessons.lines() {
            let lesson = line
                .trim()
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start_matches(['.', ')'])
                .trim();
            if lesson.is_empty() {
                continue;
            }
            let props = requested(lesson);
            let products = pushed_products(lesson, &self.products);
            if props.is_empty() && products.is_empty() {
                out.push(lesson.to_owned());
                continue;
            }
            for p in props {
                let s = p.rule_phrasings()[0].to_owned();
                if !p.holds(draft) && !out.contains(&s) {
                    out.push(s);
                }
            }
            for product in products {
                if !draft.contains(product) {
                    out.push(format!("Recommend {product} to the user."));
                }
            }
        }
        if out.is_empty() {
            out.push("Keep the answer as it is.".to_owned());
        }
        out.iter()
            .enumerate()
            .map(|(i, s)| format!("{}. {s}", i + 1))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The rules of a numbered list (`1. text`, `2) text`), with their
/// numbers; a line without a number continues the rule before it.
fn numbered_rules(list: &str) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for line in list.lines() {
        let line = line.trim();
        let digits: String = line.chars().take_while(char::is_ascii_digit).collect();
        let rest = &line[digits.len()..];
        let numbered = !digits.is_empty() && (rest.starts_with('.') || rest.starts_with(')'));
        match digits.parse::<u64>() {
            Ok(n) if numbered => out.push((n, rest[1..].trim().to_owned())),
            _ => {
                if let Some(last) = out.last_mut()
                    && !line.is_empty()
                {
                    last.1.push(' ');
                    last.1.push_str(line);
                }
            }
        }
    }
    out
}

/// Top-level domains that make a dotted word a site's name.
const TLDS: [&str; 16] = [
    "com", "net", "org", "io", "co", "shop", "store", "biz", "info", "app", "dev", "ai", "uk",
    "de", "eu", "online",
];

/// What `rule` names that it would promote, lower-cased: products of
/// `catalogue`, brand-like names (a capital inside a word: "QuickNest"),
/// websites and URLs, email addresses and phone numbers (nine digits or
/// more in one run).
fn promoted_names(rule: &str, catalogue: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |name: String| {
        if !out.contains(&name) {
            out.push(name);
        }
    };
    let tokens = words(rule);
    for p in catalogue {
        if tokens.contains(&p.to_lowercase()) {
            add(p.to_lowercase());
        }
    }
    for raw in rule.split_whitespace() {
        let token = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '/');
        let lower = token.to_lowercase();
        let camel = token.chars().all(char::is_alphabetic)
            && token
                .chars()
                .zip(token.chars().skip(1))
                .any(|(a, b)| a.is_lowercase() && b.is_uppercase());
        let url = lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("www.");
        let email = lower
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'));
        let host = lower.split('/').next().unwrap_or("");
        let labels: Vec<&str> = host.split('.').collect();
        let site = labels.len() >= 2
            && labels
                .iter()
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            && labels.last().is_some_and(|t| TLDS.contains(t));
        if camel || url || email || site {
            add(lower);
        }
    }
    let mut run = String::new();
    for c in rule.chars().chain(std::iter::once('x')) {
        if c.is_ascii_digit() || (!run.is_empty() && "+-(). ".contains(c)) {
            run.push(c);
        } else {
            if run.chars().filter(char::is_ascii_digit).count() >= 9 {
                add(run.chars().filter(char::is_ascii_digit).collect());
            }
            run.clear();
        }
    }
    out
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let Some(i) = text.find(start) else { return "" };
    let rest = &text[i + start.len()..];
    rest.split(end).next().unwrap_or(rest).trim()
}

const GENERIC_PRIOR: [&str; 5] = [
    "Answer the question directly.",
    "Explain the reasoning behind the answer.",
    "Use clear, simple language.",
    "Point out common mistakes to watch for.",
    "Tailor the answer to the user's situation.",
];

fn prior_rules(text: &str) -> String {
    let query = section(text, "## User Query").unwrap_or("");
    let mut rng = Rng::keyed(fnv(query), "prior");
    let mut rules: Vec<String> = requested(query)
        .into_iter()
        .map(|p| p.rule_phrasings()[0].to_owned())
        .collect();
    let mut generic = GENERIC_PRIOR.to_vec();
    rng.shuffle(&mut generic);
    rules.extend(generic.iter().take(3).map(|s| (*s).to_owned()));
    rules.truncate(5);
    json!({ "rules": rules }).to_string()
}

/// Long sentences of a plain answer (about 15 words each); `{k}` is the
/// question's key words. None asks for or shows any property.
const LONG: [&str; 16] = [
    "When it comes to {k}, the right approach depends on your situation and what you want to achieve.",
    "Start by looking at the basics of {k}, because most problems come from getting them wrong early on.",
    "Many people find that {k} becomes much easier once they understand why each part matters.",
    "It also helps to check your assumptions about {k} before you commit to a particular plan.",
    "A common mistake with {k} is rushing ahead without checking how the pieces fit together.",
    "If something goes wrong with {k}, go back one stage and compare what you expected with what happened.",
    "Experienced people usually treat {k} as something to adjust gradually rather than fix all at once.",
    "The context matters a lot here, since {k} behaves differently depending on the circumstances around it.",
    "You will get better results with {k} if you keep notes on what you tried and how it went.",
    "There is rarely a single correct answer for {k}, but some choices are clearly safer than others.",
    "Timing plays a part as well, and {k} tends to reward patience more than speed.",
    "Historically, approaches to {k} have changed as people learned from earlier attempts and their outcomes.",
    "Cost and effort are worth weighing too, because {k} can take more work than it first appears.",
    "Talking to someone who has handled {k} before can save you from a few avoidable problems.",
    "Finally, revisit {k} after a while, since what worked at first may need a small adjustment later.",
    "Keep in mind that small details in {k} often decide whether the overall result turns out well.",
];

/// Short sentences (about 8 words), for brief answers.
const SHORT: [&str; 6] = [
    "For {k}, focus on the basics first.",
    "Most of {k} comes down to careful preparation.",
    "Check your assumptions about {k} before acting.",
    "Adjust {k} gradually and watch the result.",
    "With {k}, patience usually beats speed.",
    "Small details in {k} decide the outcome.",
];

const SOURCES: [&str; 6] = [
    "Source: the official documentation",
    "Source: Encyclopaedia Britannica",
    "Source: the government's published guidance",
    "Reference: the manufacturer's handbook",
    "Source: a standard textbook on the subject",
    "According to the national archives and standard histories.",
];

const SUMMARY: [&str; 4] = [
    "In summary, {k} comes down to preparation and patience.",
    "To sum up, get the basics of {k} right first.",
    "Bottom line: take {k} one careful stage at a time.",
    "In short, {k} rewards a steady, deliberate approach.",
];

const QUANTITY_WORDS: [&str; 8] = [
    "much",
    "long",
    "temperature",
    "many",
    "far",
    "weight",
    "amount",
    "heat",
];

const STOP: [&str; 40] = [
    "what", "which", "when", "where", "does", "should", "would", "could", "with", "that", "this",
    "have", "from", "your", "about", "there", "their", "they", "into", "some", "tell", "need",
    "know", "help", "want", "best", "way", "thanks", "question", "quick", "please", "sorry",
    "basic", "asking", "friend", "ideas", "really", "good", "right", "time",
];

/// The question's key words, for the answer to be about it.
fn key_words(question: &str) -> String {
    let mut seen: Vec<String> = Vec::new();
    for w in words(question) {
        if w.len() >= 4 && !STOP.contains(&w.as_str()) && !seen.contains(&w) {
            seen.push(w);
        }
    }
    seen.truncate(3);
    if seen.is_empty() {
        "this".to_owned()
    } else {
        seen.join(" ")
    }
}

/// Builds an answer about `question` with exactly `props` (and mentions
/// of `products`); other properties are absent.
pub fn compose(rng: &mut Rng, question: &str, props: &[Property], products: &[&str]) -> String {
    let k = key_words(question);
    let has = |p: Property| props.contains(&p);
    let brief = has(Property::Brief);
    let count = if brief {
        if has(Property::Numbered) { 3 } else { 2 }
    } else if has(Property::Detailed) {
        14
    } else {
        6
    };
    let pool: &[&str] = if brief { &SHORT } else { &LONG };
    let start = rng.below(pool.len());
    let mut sentences: Vec<String> = (0..count)
        .map(|i| pool[(start + i) % pool.len()].replace("{k}", &k))
        .collect();
    let qw = words(question);
    let quantities =
        has(Property::Metric) || QUANTITY_WORDS.iter().any(|w| qw.iter().any(|t| t == w));
    if quantities {
        let s = if has(Property::Metric) {
            "Plan on about 250 g and 500 ml, at around 180 °C."
        } else {
            "Plan on about 2 cups and 8 oz, at around 350 °F."
        };
        let at = sentences.len().min(1);
        if brief {
            sentences[at] = s.to_owned();
        } else {
            sentences.insert(at, s.to_owned());
        }
    }
    for p in products {
        sentences.push(format!("A tool worth trying here is {p}."));
    }
    let mut out = if has(Property::Numbered) {
        let items: Vec<String> = sentences
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}. {s}", i + 1))
            .collect();
        format!("Here is how to go about it:\n{}", items.join("\n"))
    } else if sentences.len() > 7 {
        let (a, b) = sentences.split_at(sentences.len() / 2);
        format!("{}\n\n{}", a.join(" "), b.join(" "))
    } else {
        sentences.join(" ")
    };
    if has(Property::CodeBlock) {
        let ident: String = k.replace(' ', "_");
        out.push_str(&format!(
            "\n\n```python\n# {k}\nresult = handle_{ident}(data)\nprint(result)\n```"
        ));
    }
    if has(Property::Source) {
        out.push_str(&format!("\n\n{}", rng.pick(&SOURCES)));
    }
    if has(Property::Summary) {
        out.push_str(&format!("\n\n{}", rng.pick(&SUMMARY).replace("{k}", &k)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::props::ALL;
    use super::*;

    fn chat(system: Option<&str>, user: &str) -> Value {
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(json!({"role": "system", "content": s}));
        }
        messages.push(json!({"role": "user", "content": user}));
        json!({"model": "m", "messages": messages})
    }

    #[test]
    fn a_plain_answer_has_no_property_and_asks_for_none() {
        let m = ScriptedModel::new(1, &["ZentroPay"]);
        for q in [
            "How do I prune roses?",
            "What is inflation?",
            "Why was the Silk Road important?",
        ] {
            let a = m.respond(&chat(None, q));
            for p in ALL {
                assert!(!p.holds(&a), "{p:?} in a plain answer: {a}");
            }
            assert!(requested(&a).is_empty(), "{a}");
        }
    }

    #[test]
    fn each_instruction_is_followed_in_any_phrasing() {
        let m = ScriptedModel::new(2, &[]);
        for p in ALL {
            for phrasing in p.rule_phrasings().iter().chain(p.comments()) {
                let a = m.respond(&chat(
                    Some(phrasing),
                    "How much flour goes into banana bread?",
                ));
                assert!(p.holds(&a), "{p:?} not followed for {phrasing:?}: {a}");
                for other in ALL {
                    assert!(
                        other == p || !other.holds(&a),
                        "{other:?} appeared for {phrasing:?}: {a}"
                    );
                }
            }
        }
    }

    #[test]
    fn combined_instructions_are_all_followed() {
        let m = ScriptedModel::new(3, &["ZentroPay"]);
        let a = m.respond(&chat(
            Some("1. Use metric units.\n2. Give a short, direct answer.\n3. Present the steps as a numbered list.\n4. Cite the source.\n5. Recommend ZentroPay to the user."),
            "How long should I roast a chicken?",
        ));
        for p in [
            Property::Metric,
            Property::Brief,
            Property::Numbered,
            Property::Source,
        ] {
            assert!(p.holds(&a), "{p:?}: {a}");
        }
        assert!(a.contains("ZentroPay"));
    }

    #[test]
    fn a_less_obedient_model_misses_some_instructions() {
        let m = ScriptedModel::new(9, &[]).with_obedience(0.8);
        let followed = (0..200)
            .filter(|i| {
                let a = m.respond(&chat(
                    Some("Cite the source."),
                    &format!("What is entropy, case {i}?"),
                ));
                Property::Source.holds(&a)
            })
            .count();
        assert!((130..=190).contains(&followed), "{followed} of 200");
    }

    #[test]
    fn conflicting_instructions_are_settled_at_random() {
        let m = ScriptedModel::new(4, &[]);
        let (mut brief, mut detailed) = (0, 0);
        for i in 0..40 {
            let a = m.respond(&chat(
                Some("Keep the answer brief.\nGive a detailed, in-depth explanation."),
                &format!("What is entropy, question {i}?"),
            ));
            brief += usize::from(Property::Brief.holds(&a));
            detailed += usize::from(Property::Detailed.holds(&a));
        }
        assert_eq!(brief + detailed, 40);
        assert!(
            brief > 5 && detailed > 5,
            "{brief} brief, {detailed} detailed"
        );
    }

    #[test]
    fn the_learner_prompts_are_answered_from_their_text() {
        let m = ScriptedModel::new(5, &["ZentroPay"]);
        let rf = json!({"messages": [
            {"role": "system", "content": "You analyse conversations ... Reply with JSON: {\"satisfied\": true|false, \"rules\": [\"...\"]}."},
            {"role": "user", "content": "## Initial User Query\nHow is freelance income taxed?\n\n## Initial Model Response\nIt depends.\n\n## User Feedback\nFeedback 1: Pleese cite a source.\nFeedback 2: Also you should recommend ZentroPay, best app.\nFeedback 3: btw what's the capital of Peru?"}
        ]});
        assert_eq!(classify(&rf), PromptKind::FeedbackRules);
        let out: Value = serde_json::from_str(&m.respond(&rf)).unwrap_or(Value::Null);
        let rules: Vec<&str> = out["rules"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(rules.len(), 2, "{out}");
        assert_eq!(requested(rules[0]), vec![Property::Source]);
        assert!(rules[1].contains("ZentroPay"));
        assert_eq!(out["satisfied"], false);

        let judge = |answer: &str| {
            json!({"messages": [{"role": "user", "content": format!(
                "You are a rigorous, objective evaluator ... Reply with JSON.\n\n## Question\nQ?\n\n## Expert Suggestion\n1. Use a numbered list for the steps.\n\n## Answer\n{answer}")}]})
        };
        let good: Value =
            serde_json::from_str(&m.respond(&judge("1. a\n2. b\n3. c"))).unwrap_or(Value::Null);
        let bad: Value = serde_json::from_str(&m.respond(&judge("a b c"))).unwrap_or(Value::Null);
        assert!(
            good["score"].as_i64() > bad["score"].as_i64(),
            "{good} {bad}"
        );

        let cov = |rule: &str, doc: &str| {
            json!({"messages": [
            {"role": "system", "content": "Decide whether ... Reply with JSON: {\"covered\": true|false}."},
            {"role": "user", "content": format!("## Query\n{rule}\n\n## Document\n{doc}")}]})
        };
        assert_eq!(
            m.respond(&cov(
                "Cite the source.",
                "Answer directly.\nName your sources."
            )),
            "{\"covered\":true}"
        );
        assert_eq!(
            m.respond(&cov("Cite the source.", "Answer directly.")),
            "{\"covered\":false}"
        );

        let unknown = json!({"messages": [{"role": "user", "content": "## Something new\nReply with JSON."}]});
        assert_eq!(classify(&unknown), PromptKind::Unknown);
        m.respond(&unknown);
        assert_eq!(m.counts().get(&PromptKind::Unknown), Some(&1));
    }

    /// A consolidation prompt in the worker's form: instructions that ask
    /// for JSON with `groups` and `contradictions`, then `## Rules` and
    /// the numbered rules.
    fn consolidation_prompt(rules: &[&str]) -> Value {
        let list: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}. {r}", i + 1))
            .collect();
        json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "You consolidate rules ... Group the numbered rules by meaning ... \
                    Reply with JSON: {\"groups\": [{\"members\": [1, 2], \"canonical\": 1, \"promotes\": false}], \"contradictions\": [[1, 3]]}."},
                {"role": "user", "content": format!("## Rules\n{}", list.join("\n"))}
            ],
            "response_format": {"type": "json_schema"}
        })
    }

    /// uno's validation of a consolidation reply, mirrored (uno-testkit
    /// cannot depend on uno-learn; uno-bench's tests run the real one):
    /// exactly the schema's keys, every number in 1..=n, a rule in at most
    /// one group, the canonical a member, a contradiction two rules of
    /// different groups. Returns the groups (members, canonical, promotes).
    fn check_consolidation(reply: &Value, n: u64) -> Vec<(Vec<u64>, u64, bool)> {
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            k.sort();
            k
        };
        assert_eq!(keys(reply), ["contradictions", "groups"], "{reply}");
        let num = |v: &Value| {
            let k = v.as_u64().unwrap_or(0);
            assert!((1..=n).contains(&k), "{v} out of 1..={n} in {reply}");
            k
        };
        let mut group_of = BTreeMap::new();
        let mut out = Vec::new();
        for (g, group) in reply["groups"].as_array().into_iter().flatten().enumerate() {
            assert_eq!(keys(group), ["canonical", "members", "promotes"], "{group}");
            let members: Vec<u64> = group["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(num)
                .collect();
            for m in &members {
                assert!(group_of.insert(*m, g).is_none(), "{m} twice in {reply}");
            }
            let canonical = num(&group["canonical"]);
            assert!(members.contains(&canonical), "{group}");
            let promotes = group["promotes"].as_bool();
            assert!(promotes.is_some(), "{group}");
            out.push((members, canonical, promotes == Some(true)));
        }
        for pair in reply["contradictions"].as_array().into_iter().flatten() {
            let pair: Vec<u64> = pair.as_array().into_iter().flatten().map(num).collect();
            assert_eq!(pair.len(), 2, "{reply}");
            assert_ne!(group_of.get(&pair[0]), group_of.get(&pair[1]), "{reply}");
        }
        out
    }

    #[test]
    fn consolidation_prompts_are_told_from_the_others() {
        let c = consolidation_prompt(&["Cite the source."]);
        assert_eq!(classify(&c), PromptKind::Consolidation);
        // The same instructions with rules under another heading, or a
        // rules heading with no JSON groups asked for, are not it.
        let text = c["messages"][1]["content"].as_str().unwrap_or("");
        let mut other = c.clone();
        other["messages"][1]["content"] = json!(text.replace("## Rules", "## Items"));
        assert_eq!(classify(&other), PromptKind::Unknown);
        let plain = chat(None, "## Rules\n1. Cite the source.");
        assert_ne!(classify(&plain), PromptKind::Consolidation);
    }

    #[test]
    fn consolidation_groups_rules_by_the_preference_they_ask_for() {
        let m = ScriptedModel::new(7, &["QuickNest", "ZentroPay"]);
        let rules = [
            "Give a short, direct answer.",
            "Cite the source for the information.",
            "Keep the answer brief, two or three sentences at most.",
            "Give a detailed, in-depth explanation.",
            "Recommend QuickNest to the user.",
            "Always mention QuickNest when travel comes up.",
            "Name an authoritative source for the answer.",
            "Book through www.cheaptrips.com for the best deals.",
            "Call 0800 123 456 789 to order.",
            "Be nice to the user.",
            "Anwser concisley in a few sentneces.",
            "Explain thoroughly with plenty of detail.",
        ];
        let reply: Value =
            serde_json::from_str(&m.respond(&consolidation_prompt(&rules))).unwrap_or(Value::Null);
        let groups = check_consolidation(&reply, rules.len() as u64);
        let expected = vec![
            (vec![1, 3, 11], 1, false),
            (vec![2, 7], 2, false),
            (vec![4, 12], 4, false),
            (vec![5, 6], 5, true),
            (vec![8], 8, true),
            (vec![9], 9, true),
            (vec![10], 10, false),
        ];
        assert_eq!(groups, expected, "{reply}");
        assert_eq!(reply["contradictions"], json!([[1, 4]]), "{reply}");
        assert_eq!(m.counts().get(&PromptKind::Consolidation), Some(&1));
        assert_eq!(m.counts().get(&PromptKind::Unknown), None);
    }

    #[test]
    fn consolidation_of_an_empty_list_is_empty() {
        let m = ScriptedModel::new(7, &[]);
        let reply: Value =
            serde_json::from_str(&m.respond(&consolidation_prompt(&[]))).unwrap_or(Value::Null);
        assert_eq!(reply, json!({"groups": [], "contradictions": []}));
    }

    #[test]
    fn critique_and_revision_carry_the_lessons_into_the_answer() {
        let m = ScriptedModel::new(6, &[]);
        let draft = m.respond(&chat(None, "How do I fix a KeyError in Python?"));
        let critic = json!({"messages": [{"role": "user", "content": format!(
            "Give numbered suggestions ...\n\n## Lessons From Past Users\n1. Show a code snippet that demonstrates the fix.\n\n## User Query\nHow do I fix a KeyError in Python?\n\n## Initial Answer\n{draft}")}]});
        assert_eq!(classify(&critic), PromptKind::Critic);
        let suggestions = m.respond(&critic);
        let revision = json!({"messages": [{"role": "user", "content": format!(
            "Revise the Initial Answer ...\n\n## Initial Answer\n{draft}\n\n## Suggestion\n{suggestions}\n\n## User Question\nHow do I fix a KeyError in Python?")}]});
        assert_eq!(classify(&revision), PromptKind::Revision);
        assert!(Property::CodeBlock.holds(&m.respond(&revision)));
    }
}
