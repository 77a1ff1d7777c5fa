//! The BLEU and length guards of UNO's validation gate (method §2.7, §6.4).
//!
//! When the background worker validates a cluster's experience (an Expert
//! adapter checkpoint or a rules-injected prompt), it answers each held-out
//! query twice: once with the base model ("init") and once with the
//! candidate. The judge's scores decide who is better, but two guards stop a
//! candidate from winning with an answer that is not a real answer:
//!
//! * the **length guard**: a candidate answer shorter than 10% of the base
//!   answer (in characters, `<think>` tags removed) scores nothing;
//! * the **BLEU guard**: a win (or a tie) also needs sentence-BLEU-4 of the
//!   candidate answer (hypothesis) against the base answer (reference) to be
//!   strictly above 0.05. This is what keeps a candidate from "winning" with an
//!   answer that has drifted far from what the base model would say:
//!   degenerate output, off-task text, or an answer tuned to please the judge.
//!
//! Everything here reproduces UNO's `code/main.py` (`smart_tokenize`,
//! `calculate_metrics` and the validation loop) and NLTK's
//! `sentence_bleu([ref], hyp, weights=(0.25,)*4,
//! smoothing_function=SmoothingFunction().method1)` bit for bit: the golden
//! test `tests/bleu_golden.rs` checks it against fixtures produced by
//! `scripts/golden/bleu_fixtures.py` with NLTK 3.10 and jieba 0.42.
//!
//! Tokenisation follows `smart_tokenize`: text containing a CJK character in
//! U+4E00..=U+9FA5 is segmented with jieba (precise mode with HMM, the Python
//! default, whitespace tokens kept as Python's `list(jieba.cut(text))` keeps
//! them); any other text is lower-cased and split on whitespace, as Python's
//! `text.strip().lower().split()`. The jieba segmenter is built once per
//! process, on first use (about 0.2 s in release builds, 0.6 s in debug, and
//! about 33 MB of memory for the dictionary).
//!
//! Fidelity notes. jieba-rs 0.11 differs from Python jieba 0.42 in three ways,
//! all corrected here: its dictionary lacks one entry (`B超`); it treats a
//! wider range of ideographs as segmentable (so the outer split uses Python's
//! class); and it joins ASCII runs across `.`, `_` and `-` where Python's HMM
//! fallback splits them (`GPT-4` → `GPT`, `-`, `4`). With those fixes it
//! matched Python on all 480 fixture texts and 6,000 random stress texts.
//! Lower-casing uses Rust's Unicode tables, which differ from Python 3.11's
//! (Unicode 14) only for 55 letters added in Unicode 15 and later.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The paper's BLEU guard threshold (`run.sh` `BLEU_RATIO`): a candidate
/// answer must have BLEU strictly greater than this against the base answer
/// for a win or a tie to count.
pub const BLEU_GUARD_MIN: f64 = 0.05;

/// The paper's length guard ratio (`main.py`): a candidate answer shorter than
/// this fraction of the base answer's length (in characters) scores nothing.
pub const LENGTH_GUARD_MIN_RATIO: f64 = 0.1;

/// NLTK's `SmoothingFunction().method1` epsilon: added to the numerator of any
/// n-gram precision whose clipped match count is zero, so one missing n-gram
/// order does not zero the geometric mean.
pub const SMOOTHING_EPSILON: f64 = 0.1;

/// BLEU-4: precisions of 1- to 4-grams, weighted uniformly (0.25 each), as the
/// method uses it.
pub const MAX_NGRAM_ORDER: usize = 4;

/// Whether `text` contains a CJK ideograph in U+4E00..=U+9FA5, the test
/// `smart_tokenize` (and the method's language selection) uses to choose jieba
/// over whitespace splitting. The range is the method's, not the full CJK
/// block: U+9FA6 and later, extension blocks and kana alone do not count.
pub fn contains_cjk(text: &str) -> bool {
    text.chars().any(|c| ('\u{4E00}'..='\u{9FA5}').contains(&c))
}

/// Whether Python's `str.isspace()` is true for `c`: the characters that
/// `str.split()` and `str.strip()` (without arguments) split on and strip.
///
/// This is Unicode's `White_Space` (Rust's `char::is_whitespace`) plus the
/// four ASCII information separators U+001C..=U+001F, which Python counts as
/// whitespace because their bidirectional class is B or S.
pub fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c)
}

/// Splits text into the tokens UNO's BLEU guard compares, exactly as the
/// method's `smart_tokenize` does.
///
/// * If the text contains a CJK ideograph (see [`contains_cjk`]), it is
///   segmented with jieba in precise mode with HMM (Python's
///   `list(jieba.cut(text))`): no lower-casing, and whitespace characters
///   stay as tokens of their own (`" "`, `"\n"`, `"\r\n"`), because the method
///   keeps them and they count as n-grams in BLEU.
/// * Otherwise it is lower-cased and split on whitespace (Python's
///   `text.strip().lower().split()`), so punctuation stays attached to words.
pub fn tokenize(text: &str) -> Vec<String> {
    if contains_cjk(text) {
        jieba_cut(text)
    } else {
        text.to_lowercase()
            .split(is_python_whitespace)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// The default-dictionary jieba segmenter, built on first use: parsing the
/// embedded dictionary takes a fraction of a second, so it is done once per
/// process rather than per call.
///
/// jieba-rs 0.11's `dict.txt` is Python jieba 0.42's minus one entry,
/// `B超 3 n`; adding it back makes the word set and the total frequency (which
/// every route probability is normalised by) the same as Python's.
static JIEBA: LazyLock<jieba_rs::Jieba> = LazyLock::new(|| {
    let mut jieba = jieba_rs::Jieba::new();
    if !jieba.has_word("B超") {
        jieba.add_word("B超", Some(3), Some("n"));
    }
    jieba
});

/// Python jieba's `re_han_default` class, `[\u4E00-\u9FD5a-zA-Z0-9+#&._%-]`:
/// the characters that form the blocks jieba segments with its dictionary.
///
/// jieba-rs uses a wider class (all of U+4E00..=U+9FFF and the CJK extension
/// blocks), so the outer split is done here with Python's class and only
/// blocks Python would segment are handed to jieba-rs.
fn is_python_jieba_han(c: char) -> bool {
    matches!(c,
        '\u{4E00}'..='\u{9FD5}'
        | 'a'..='z'
        | 'A'..='Z'
        | '0'..='9'
        | '+' | '#' | '&' | '.' | '_' | '%' | '-'
    )
}

/// Python jieba's `Tokenizer.cut(text, cut_all=False, HMM=True)`: blocks of
/// [`is_python_jieba_han`] characters are segmented with the dictionary and
/// HMM; every other character is a token of its own, except that `"\r\n"`
/// stays one token.
fn jieba_cut(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        let han = is_python_jieba_han(first);
        let end = rest
            .find(|c| is_python_jieba_han(c) != han)
            .unwrap_or(rest.len());
        let (block, tail) = rest.split_at(end);
        if han {
            for token in JIEBA.cut(block, true) {
                push_hmm_skip_split(token.word, &mut tokens);
            }
        } else {
            let mut chars = block.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                let mut j = i + c.len_utf8();
                if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
                    chars.next();
                    j += 1;
                }
                tokens.push(block[i..j].to_owned());
            }
        }
        rest = tail;
    }
    tokens
}

/// Pushes one jieba-rs token, re-split where jieba-rs departs from Python.
///
/// Runs that neither the dictionary nor the HMM covers (ASCII letters and
/// digits with `+#&._%-` between them) are split by Python jieba's
/// `finalseg` with `re_skip = ([a-zA-Z0-9]+(?:\.\d+)?%?)`: each match and
/// each gap between matches is a token, so `GPT-4` is `GPT`, `-`, `4` and
/// `v1.2.3` is `v1.2`, `.`, `3`. jieba-rs 0.11 instead joins alphanumeric runs
/// across any number of `.`, `_` and `-` (`GPT-4`, `v1.2.3`). No dictionary
/// word contains those three characters, so a token that starts with an
/// ASCII alphanumeric and contains one came from that joining, and splitting
/// it again with Python's pattern gives Python's tokens (the token starts and
/// ends with a match, so its pieces never merge with the gaps around it).
fn push_hmm_skip_split(token: &str, tokens: &mut Vec<String>) {
    let bytes = token.as_bytes();
    let joined = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().any(|b| matches!(b, b'.' | b'_' | b'-'));
    if !joined {
        tokens.push(token.to_owned());
        return;
    }
    let mut gap_start = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        if !bytes[pos].is_ascii_alphanumeric() {
            pos += 1;
            continue;
        }
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_alphanumeric() {
            pos += 1;
        }
        if pos + 1 < bytes.len() && bytes[pos] == b'.' && bytes[pos + 1].is_ascii_digit() {
            pos += 1;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
        }
        if pos < bytes.len() && bytes[pos] == b'%' {
            pos += 1;
        }
        if gap_start < start {
            tokens.push(token[gap_start..start].to_owned());
        }
        tokens.push(token[start..pos].to_owned());
        gap_start = pos;
    }
    if gap_start < bytes.len() {
        tokens.push(token[gap_start..].to_owned());
    }
}

/// Sentence-level BLEU-4 of `hypothesis` against one `reference`, as NLTK's
/// `sentence_bleu([reference], hypothesis, weights=(0.25, 0.25, 0.25, 0.25),
/// smoothing_function=SmoothingFunction().method1)` computes it.
///
/// * Modified precision p_n for n = 1..=4: hypothesis n-gram counts clipped by
///   the reference's, over `max(1, number of hypothesis n-grams)`, so an order
///   longer than the hypothesis has precision 0/1.
/// * If no unigram matches (which includes an empty hypothesis or reference),
///   the score is 0.
/// * Otherwise every zero numerator is replaced by [`SMOOTHING_EPSILON`]
///   (method1), so a hypothesis shorter than 4 tokens still scores, e.g. 1.0
///   precision on 1- and 2-grams gives `0.1^(2/4) ≈ 0.316`.
/// * Brevity penalty: 1 if the hypothesis is longer than the reference,
///   otherwise `exp(1 - r/c)` (r = reference length, c = hypothesis length).
///   With one reference the "closest reference length" is its length.
/// * Result: `BP · exp(Σ 0.25·ln p_n)`, the sum taken exactly like Python's
///   `math.fsum`.
pub fn sentence_bleu<R: AsRef<str>, H: AsRef<str>>(reference: &[R], hypothesis: &[H]) -> f64 {
    let reference: Vec<&str> = reference.iter().map(AsRef::as_ref).collect();
    let hypothesis: Vec<&str> = hypothesis.iter().map(AsRef::as_ref).collect();

    let mut numerators = [0usize; MAX_NGRAM_ORDER];
    let mut denominators = [0usize; MAX_NGRAM_ORDER];
    for n in 1..=MAX_NGRAM_ORDER {
        let (num, den) = modified_precision(&reference, &hypothesis, n);
        numerators[n - 1] = num;
        denominators[n - 1] = den;
    }
    if numerators[0] == 0 {
        return 0.0;
    }

    let bp = brevity_penalty(reference.len(), hypothesis.len());
    let weight = 1.0 / MAX_NGRAM_ORDER as f64;
    let terms: Vec<f64> = numerators
        .iter()
        .zip(denominators)
        .map(|(&num, den)| {
            let p = if num == 0 {
                SMOOTHING_EPSILON / den as f64
            } else {
                num as f64 / den as f64
            };
            weight * p.ln()
        })
        .collect();
    bp * python_fsum(&terms).exp()
}

/// NLTK's `modified_precision` for one reference: (clipped matches, max(1,
/// hypothesis n-gram count)). The denominator is kept unreduced, as NLTK's
/// `Fraction(..., _normalize=False)` keeps it, because method1 divides the
/// epsilon by it.
fn modified_precision(reference: &[&str], hypothesis: &[&str], n: usize) -> (usize, usize) {
    if hypothesis.len() < n {
        return (0, 1);
    }
    let mut hyp_counts: HashMap<&[&str], usize> = HashMap::new();
    for gram in hypothesis.windows(n) {
        *hyp_counts.entry(gram).or_default() += 1;
    }
    let mut ref_counts: HashMap<&[&str], usize> = HashMap::new();
    if reference.len() >= n {
        for gram in reference.windows(n) {
            *ref_counts.entry(gram).or_default() += 1;
        }
    }
    let numerator = hyp_counts
        .iter()
        .map(|(gram, &count)| count.min(ref_counts.get(gram).copied().unwrap_or(0)))
        .sum();
    let denominator = hypothesis.len() - n + 1;
    (numerator, denominator.max(1))
}

/// NLTK's `brevity_penalty(closest_ref_len, hyp_len)`.
fn brevity_penalty(reference_len: usize, hypothesis_len: usize) -> f64 {
    if hypothesis_len > reference_len {
        1.0
    } else if hypothesis_len == 0 {
        0.0
    } else {
        (1.0 - reference_len as f64 / hypothesis_len as f64).exp()
    }
}

/// Python's `math.fsum` for finite inputs: the correctly rounded sum
/// (Shewchuk's exact partials plus CPython's round-half-even fix-up), so the
/// log-precisions add up to the same bits NLTK gets.
fn python_fsum(values: &[f64]) -> f64 {
    let mut partials: Vec<f64> = Vec::with_capacity(values.len());
    for &value in values {
        let mut x = value;
        let mut kept = 0;
        for k in 0..partials.len() {
            let mut y = partials[k];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        partials.truncate(kept);
        partials.push(x);
    }

    let Some((&last, rest)) = partials.split_last() else {
        return 0.0;
    };
    let mut hi = last;
    let mut lo = 0.0;
    let mut n = rest.len();
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = rest[n];
        hi = x + y;
        let yr = hi - x;
        lo = y - yr;
        if lo != 0.0 {
            break;
        }
    }
    if n > 0 && ((lo < 0.0 && rest[n - 1] < 0.0) || (lo > 0.0 && rest[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        let yr = x - hi;
        if y == yr {
            hi = x;
        }
    }
    hi
}

/// BLEU-4 between two texts, the method's `calculate_metrics(reference_text,
/// output_text)`: both are tokenised with [`tokenize`], and if either side has
/// no tokens the score is 0; otherwise it is [`sentence_bleu`].
///
/// The reference is the base model's answer and the hypothesis the candidate's
/// (see [`passes_bleu_guard`]); BLEU is not symmetric, so the order matters.
pub fn bleu(reference_text: &str, hypothesis_text: &str) -> f64 {
    let hypothesis = tokenize(hypothesis_text);
    let reference = tokenize(reference_text);
    if reference.is_empty() || hypothesis.is_empty() {
        return 0.0;
    }
    sentence_bleu(&reference, &hypothesis)
}

/// The answer text both guards look at, as the method's validation loop
/// derives it: every literal `<think>` and `</think>` tag removed (the
/// reasoning between them is kept), then surrounding whitespace stripped
/// (Python's `llm.replace("<think>", "").replace("</think>", "").strip()`).
pub fn strip_think_tags(answer: &str) -> String {
    answer
        .replace("<think>", "")
        .replace("</think>", "")
        .trim_matches(is_python_whitespace)
        .to_owned()
}

/// The BLEU guard: whether a candidate answer stays close enough to the base
/// model's answer for a win or tie on the judge's score to count.
///
/// It guards against a candidate (an adapter checkpoint or an
/// experience-injected prompt) "winning" validation with an answer that has
/// drifted far from what the base model would say: degenerate or truncated
/// output, off-task text, or an answer tuned to the judge rather than to the
/// question. Both answers are first normalised with [`strip_think_tags`];
/// then `bleu(reference = base, hypothesis = candidate)` must be strictly
/// greater than `min` (the method uses [`BLEU_GUARD_MIN`], 0.05). An empty
/// answer on either side fails.
pub fn passes_bleu_guard(base: &str, candidate: &str, min: f64) -> bool {
    bleu(&strip_think_tags(base), &strip_think_tags(candidate)) > min
}

/// The length guard: whether a candidate answer is long enough to be scored
/// at all.
///
/// It guards against a candidate that answers with next to nothing (a
/// truncated, refused or collapsed generation). Both answers are normalised
/// with [`strip_think_tags`] and measured in Unicode scalar values (Python's
/// `len`); the candidate fails when its length is below `min_ratio` times the
/// base answer's (the method uses [`LENGTH_GUARD_MIN_RATIO`], 10%). Exactly
/// 10% passes; if the base answer is empty, every candidate passes. A failed
/// candidate counts as a loss, but the query still counts in the win rate's
/// denominator.
pub fn passes_length_guard(base: &str, candidate: &str, min_ratio: f64) -> bool {
    let base_len = strip_think_tags(base).chars().count();
    let candidate_len = strip_think_tags(candidate).chars().count();
    // The method's `not (len < 0.1 * base_len)`, with the product rounded the
    // same way; it differs only for a NaN ratio, which fails here.
    candidate_len as f64 >= min_ratio * base_len as f64
}

/// One validation query's contribution to a candidate's win rate, as the
/// method's BLEU-guarded loop scores it: 0 if the candidate fails the length
/// guard; otherwise 1 for a win (`candidate_score > base_score`), 0.5 for a
/// tie (equal scores), each only when the BLEU guard passes; 0 otherwise.
///
/// `base_score` and `candidate_score` are the judge's (averaged) scores of the
/// two answers against the query's feedback rules; the guards use the
/// paper's thresholds ([`LENGTH_GUARD_MIN_RATIO`], [`BLEU_GUARD_MIN`]). The
/// win rate is the sum of these credits over all validation queries, divided
/// by the number of queries (those failing the length guard included).
pub fn win_credit(base: &str, candidate: &str, base_score: f64, candidate_score: f64) -> f64 {
    if !passes_length_guard(base, candidate, LENGTH_GUARD_MIN_RATIO) {
        return 0.0;
    }
    if candidate_score < base_score || candidate_score.is_nan() || base_score.is_nan() {
        return 0.0;
    }
    if !passes_bleu_guard(base, candidate, BLEU_GUARD_MIN) {
        return 0.0;
    }
    if candidate_score > base_score {
        1.0
    } else {
        0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_sentences_score_one() {
        let s = ["the", "cat", "sat", "on", "the", "mat"];
        assert_eq!(sentence_bleu(&s, &s), 1.0);
    }

    #[test]
    fn no_unigram_match_scores_zero() {
        assert_eq!(sentence_bleu(&["a", "b"], &["c", "d"]), 0.0);
        assert_eq!(sentence_bleu::<&str, &str>(&[], &["c"]), 0.0);
        assert_eq!(sentence_bleu::<&str, &str>(&["a"], &[]), 0.0);
    }

    #[test]
    fn short_hypothesis_is_smoothed() {
        // p1 = p2 = 1, p3 = p4 = 0.1/1 -> 0.1^(1/2).
        let got = sentence_bleu(&["a", "b"], &["a", "b"]);
        assert!((got - 0.1f64.sqrt()).abs() < 1e-15, "{got}");
    }

    #[test]
    fn brevity_penalty_applies_when_shorter() {
        let reference = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let got = sentence_bleu(&reference, &reference[..4]);
        assert!((got - (1.0f64 - 2.0).exp()).abs() < 1e-15, "{got}");
    }

    #[test]
    fn fsum_is_exact() {
        assert_eq!(python_fsum(&[]), 0.0);
        assert_eq!(python_fsum(&[1e100, 1.0, -1e100]), 1.0);
        assert_eq!(python_fsum(&[0.1; 10]), 1.0);
    }

    #[test]
    fn english_is_lowercased_and_whitespace_split() {
        assert_eq!(
            tokenize("  Hello, World!\tFOO\u{1C}bar\u{A0}baz "),
            ["hello,", "world!", "foo", "bar", "baz"]
        );
        assert!(tokenize(" \n\t").is_empty());
    }

    #[test]
    fn chinese_goes_through_jieba() {
        assert_eq!(
            tokenize("我来到北京清华大学"),
            ["我", "来到", "北京", "清华大学"]
        );
        // Whitespace is kept as tokens and case is preserved, as in Python.
        assert_eq!(tokenize("今天 OK\r\n"), ["今天", " ", "OK", "\r\n"]);
    }

    #[test]
    fn guard_direction_and_strictness() {
        let base = "the court dismissed the appeal and ordered costs";
        assert!(passes_bleu_guard(base, base, BLEU_GUARD_MIN));
        assert!(!passes_bleu_guard(
            base,
            "bananas are yellow",
            BLEU_GUARD_MIN
        ));
        assert!(!passes_bleu_guard(base, base, 1.0), "the bound is strict");
        assert!(!passes_bleu_guard(base, "", BLEU_GUARD_MIN));
        assert!(passes_bleu_guard(
            base,
            &format!("<think>hmm</think>{base}"),
            0.5
        ));
    }

    #[test]
    fn length_guard_boundary() {
        let base = "x".repeat(100);
        assert!(passes_length_guard(&base, &"y".repeat(10), 0.1));
        assert!(!passes_length_guard(&base, &"y".repeat(9), 0.1));
        assert!(passes_length_guard("", "", 0.1));
        assert!(!passes_length_guard(&base, "<think></think>  ", 0.1));
    }

    #[test]
    fn win_credit_follows_the_method() {
        let base = "the court dismissed the appeal and ordered the appellant to pay costs";
        let close = "the court dismissed the appeal and ordered the appellant to pay all costs";
        assert_eq!(win_credit(base, close, 0.5, 0.7), 1.0);
        assert_eq!(win_credit(base, close, 0.5, 0.5), 0.5);
        assert_eq!(win_credit(base, close, 0.7, 0.5), 0.0);
        // Better score, but drifted away from the base answer.
        let drifted = "bananas are an excellent source of potassium and fibre for breakfast";
        assert_eq!(win_credit(base, drifted, 0.5, 0.9), 0.0);
        // Better score, but far too short.
        assert_eq!(win_credit(base, "the", 0.5, 0.9), 0.0);
    }
}
