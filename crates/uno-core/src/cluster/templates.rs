//! Question forms: the words a cluster's questions wrap around their
//! subject ("What does {…} mean?", "How long should I cook {…}?"), so
//! that a new question in one of those forms about a subject the cluster
//! never saw is still recognised as the cluster's (issue 23, routing
//! recall).
//!
//! Why: the example router's space is lexical. "What is a firewall?" asked
//! of a glossary whose logged questions defined inflation, APIs and
//! mortgages shares only the form with them, and the new subject's words,
//! which nobody used, weigh most; such questions were half of the in-topic
//! queries passed through. A form alone is weak evidence, since unseen
//! topics share openings too ("How often should I check for a flat
//! tyre?" against "How often should I water roses?"), so a form counts
//! only where the cluster shows it is one: its slot holds a *subject*, a
//! run of words the cluster's questions also ask about in another form
//! ("inflation" in "What is inflation?" and in "What does inflation
//! mean?"), or the same words frame another of its questions around a
//! different subject ("What does a mortgage mean?"), and the words around
//! the slot carry weight of their own (not only what every topic says).
//! "water roses" is asked in no other form, and "water basil" shares
//! "water" with it, so "How often should I {…}" is no form of the
//! gardening cluster ("How often should I water {…}" is).
//!
//! Texts are sequences of word hashes (see `uno_llm::HashingEmbedder::
//! word_hashes`), with the words every topic uses (low routing weight)
//! left out, the same way for the cluster's questions and for a query.

use serde::{Deserialize, Serialize};

/// A question form: the words before and after its subject slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RouteTemplate {
    /// Word hashes before the slot, in order.
    pub before: Vec<u64>,
    /// Word hashes after the slot, in order.
    pub after: Vec<u64>,
}

/// Share of the tenant's rare-word weight a word must weigh to count in a
/// form (lighter words, the openings and fillers every topic uses, are
/// left out of both the forms and the queries).
pub const TEMPLATE_WORD_SHARE: f32 = 0.3;

/// Share of the rare-word weight a form's words must weigh together: a
/// form made only of light words says nothing about a topic.
pub const TEMPLATE_MIN_SHARE: f32 = 0.4;

/// Longest subject (in kept words) a form's slot is cut around.
pub const MAX_SUBJECT_WORDS: usize = 6;

/// Most forms a cluster keeps, those cut from the most examples first
/// (the snapshot stays small, and a miss checks them all).
pub const MAX_TEMPLATES: usize = 512;

/// Whether `span` (a subject candidate cut from example `from` at
/// `start`) is asked about elsewhere in `examples` in another context: it
/// occurs in another example next to at least one kept word, and the words
/// beside it there differ from those beside it in `from`.
fn asked_in_another_form<W: AsRef<[u64]>>(
    examples: &[W],
    from: usize,
    start: usize,
    len: usize,
) -> bool {
    let own = examples[from].as_ref();
    let neighbours = |words: &[u64], at: usize| {
        let left = at.checked_sub(1).and_then(|i| words.get(i)).copied();
        let right = words.get(at + len).copied();
        (left, right)
    };
    let own_context = neighbours(own, start);
    let span = &own[start..start + len];
    examples.iter().enumerate().any(|(k, words)| {
        let words = words.as_ref();
        k != from
            && words.len() >= len
            && (0..=words.len() - len).any(|i| {
                if &words[i..i + len] != span {
                    return false;
                }
                let context = neighbours(words, i);
                (context.0.is_some() || context.1.is_some()) && context != own_context
            })
    })
}

/// Whether the words around `span` (cut from example `from` at `start`)
/// frame another example too, around a subject with none of `span`'s
/// words: two questions ask different things in one form ("What does
/// inflation mean?", "What does a hedge fund mean?").
fn framed_in_another_example<W: AsRef<[u64]>>(
    examples: &[W],
    from: usize,
    start: usize,
    len: usize,
) -> bool {
    let own = examples[from].as_ref();
    let (before, rest) = own.split_at(start);
    let (span, after) = rest.split_at(len);
    examples.iter().enumerate().any(|(k, words)| {
        let words = words.as_ref();
        k != from
            && words.len() > before.len() + after.len()
            && words.starts_with(before)
            && words.ends_with(after)
            && words[before.len()..words.len() - after.len()]
                .iter()
                .all(|w| !span.contains(w))
    })
}

/// The forms of a cluster whose examples are `examples` (each a sequence
/// of kept word hashes): every cut of an example around a subject asked in
/// another form ([`asked_in_another_form`]), or whose frame another
/// example fits around a different subject ([`framed_in_another_example`]),
/// whose surrounding words weigh,
/// by `weight`, at least `min_weight` together. Sorted, without repeats,
/// at most [`MAX_TEMPLATES`].
pub fn cluster_templates<W: AsRef<[u64]>>(
    examples: &[W],
    weight: impl Fn(u64) -> f32,
    min_weight: f32,
) -> Vec<RouteTemplate> {
    let mut found: Vec<RouteTemplate> = Vec::new();
    for (e, words) in examples.iter().enumerate() {
        let words = words.as_ref();
        for start in 0..words.len() {
            for len in 1..=MAX_SUBJECT_WORDS.min(words.len() - start) {
                if start == 0 && len == words.len() {
                    continue;
                }
                if !asked_in_another_form(examples, e, start, len)
                    && !framed_in_another_example(examples, e, start, len)
                {
                    continue;
                }
                let before = &words[..start];
                let after = &words[start + len..];
                let w: f32 = before.iter().chain(after).map(|&h| weight(h)).sum();
                if w >= min_weight {
                    found.push(RouteTemplate {
                        before: before.to_vec(),
                        after: after.to_vec(),
                    });
                }
            }
        }
    }
    // Each form once, with how many cuts gave it (its support).
    found.sort();
    let mut forms: Vec<(usize, RouteTemplate)> = Vec::new();
    for t in found {
        match forms.last_mut() {
            Some((n, last)) if *last == t => *n += 1,
            _ => forms.push((1, t)),
        }
    }
    if forms.len() > MAX_TEMPLATES {
        forms.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        forms.truncate(MAX_TEMPLATES);
    }
    let mut out: Vec<RouteTemplate> = forms.into_iter().map(|(_, t)| t).collect();
    out.sort();
    out
}

/// What a cluster publishes for routing by form: its forms
/// ([`cluster_templates`], words weighing [`TEMPLATE_MIN_SHARE`] of the
/// tenant's rare-word weight `rare` together) and the words its examples
/// are made of, sorted, once each (none when it has no form). `examples`
/// are the cluster's examples' kept words (`uno_llm::HashingEmbedder::
/// form_words`). The worker and the load harness both publish this.
pub fn question_forms<W: AsRef<[u64]>>(
    examples: &[W],
    weight: impl Fn(u64) -> f32,
    rare: f32,
) -> (Vec<RouteTemplate>, Vec<u64>) {
    let templates = cluster_templates(examples, weight, TEMPLATE_MIN_SHARE * rare);
    let mut words: Vec<u64> = Vec::new();
    if !templates.is_empty() {
        words = examples
            .iter()
            .flat_map(|e| e.as_ref().iter().copied())
            .collect();
        words.sort_unstable();
        words.dedup();
    }
    (templates, words)
}

/// Whether the query `words` (kept word hashes) is in `template`'s form:
/// it starts with the words before the slot, ends with those after, and
/// puts at least one word in the slot, each of which `subject_word`
/// accepts (the proxy accepts words the tenant never used, and words of
/// the cluster's own questions: a word another topic uses is that topic's
/// subject, not this one's).
pub fn fits_template(
    words: &[u64],
    template: &RouteTemplate,
    subject_word: impl Fn(u64) -> bool,
) -> bool {
    let frame = template.before.len() + template.after.len();
    words.len() > frame
        && words.starts_with(&template.before)
        && words.ends_with(&template.after)
        && words[template.before.len()..words.len() - template.after.len()]
            .iter()
            .all(|&h| subject_word(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Word "hashes" for a text: each word's bytes summed with its length
    /// (distinct for these tests' words).
    fn words(text: &str) -> Vec<u64> {
        text.split_whitespace()
            .map(|w| {
                w.bytes()
                    .fold(w.len() as u64 * 1000, |h, b| h * 31 + u64::from(b))
            })
            .collect()
    }

    /// Each text's word "hashes", as a cluster's examples.
    fn examples(texts: &[&str]) -> Vec<Vec<u64>> {
        texts.iter().map(|t| words(t)).collect()
    }

    /// The form with `before` and `after` (words separated by spaces).
    fn form(before: &str, after: &str) -> RouteTemplate {
        RouteTemplate {
            before: words(before),
            after: words(after),
        }
    }

    fn one(_: u64) -> f32 {
        1.0
    }

    #[test]
    fn a_form_counts_where_its_subject_is_asked_in_another_form() {
        let examples = examples(&[
            "does inflation mean",
            "define inflation me",
            "does mortgage mean",
            "define api me",
        ]);
        let templates = cluster_templates(&examples, one, 2.0);
        let define = form("define", "me");
        let does = form("does", "mean");
        assert!(templates.contains(&define), "{templates:?}");
        assert!(templates.contains(&does), "{templates:?}");
        let any = |_: u64| true;
        assert!(fits_template(&words("define firewall me"), &define, any));
        assert!(fits_template(&words("does hedge fund mean"), &does, any));
        // Not the form: other words around, or nothing in the slot.
        assert!(!fits_template(&words("does kitten need weeks"), &does, any));
        assert!(!fits_template(&words("define me"), &define, any));
        // A slot word the caller refuses (another topic's word).
        let python = words("python")[0];
        assert!(!fits_template(&words("define python me"), &define, |h| h != python));
    }

    #[test]
    fn a_phrase_asked_in_one_form_only_is_no_subject() {
        // "water roses" only ever follows "often": "often {…}" is no form.
        let examples = examples(&["often water roses", "often water roses", "prune basil"]);
        let templates = cluster_templates(&examples, one, 1.0);
        let often = form("often", "");
        assert!(!templates.contains(&often), "{templates:?}");
        // "roses" is asked in no other context either.
        assert!(
            templates.iter().all(|t| t.before != words("often water")),
            "{templates:?}"
        );
    }

    #[test]
    fn a_frame_around_two_different_subjects_is_a_form() {
        // No subject is asked twice, but "does {…} mean" frames two.
        let examples = examples(&[
            "does inflation mean",
            "does hedge fund mean",
            "often water roses",
            "often water basil",
        ]);
        let templates = cluster_templates(&examples, one, 1.0);
        let does = form("does", "mean");
        assert!(templates.contains(&does), "{templates:?}");
        // The slots "water roses" and "water basil" share a word: "often
        // {…}" is no form, "often water {…}" is.
        assert!(!templates.contains(&form("often", "")), "{templates:?}");
        assert!(
            templates.contains(&form("often water", "")),
            "{templates:?}"
        );
        // One question alone frames nothing.
        let alone = cluster_templates(&examples[..1], one, 1.0);
        assert!(alone.is_empty(), "{alone:?}");
    }

    #[test]
    fn a_whole_question_asked_again_under_an_opening_is_no_subject() {
        // The opening "sorry basic" before a whole question: the question
        // recurs, but alone (no word beside it), so it is no slot.
        let examples = examples(&["sorry basic getting csv python", "getting csv python"]);
        let templates = cluster_templates(&examples, one, 1.0);
        let opening = form("sorry basic", "");
        assert!(!templates.contains(&opening), "{templates:?}");
        // Within the question, "getting" is asked beside other words: a
        // form that keeps the question's own words is fine.
        assert!(!templates.is_empty());
    }

    #[test]
    fn light_forms_are_not_kept() {
        let examples = examples(&["does inflation mean", "define inflation me"]);
        assert!(cluster_templates(&examples, |_| 0.5, 1.5).is_empty());
        assert!(!cluster_templates(&examples, |_| 1.0, 1.5).is_empty());
        // What a cluster publishes: no words without a form; with forms,
        // its words sorted, once each (TEMPLATE_MIN_SHARE of 3.75 is 1.5).
        assert_eq!(question_forms(&examples, |_| 0.5, 3.75), (vec![], vec![]));
        let (forms, mut words) = question_forms(&examples, |_| 1.0, 3.75);
        assert!(!forms.is_empty());
        let published = words.clone();
        words.sort_unstable();
        words.dedup();
        assert_eq!(published, words);
        assert_eq!(words.len(), 5, "does, inflation, mean, define, me");
    }
}
