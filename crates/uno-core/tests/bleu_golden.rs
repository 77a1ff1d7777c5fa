//! Golden test: our BLEU guard against the method's Python, i.e. NLTK's
//! `sentence_bleu(..., weights=(0.25,)*4, smoothing_function=method1)`, UNO's
//! `smart_tokenize` (lower-cased whitespace split, or Python jieba for CJK
//! text) and the validation loop's length/BLEU guards.
//!
//! Fixtures come from `scripts/golden/bleu_fixtures.py` (see its header to
//! regenerate). Checked here:
//! * `sentence_bleu` on the tokens NLTK saw equals NLTK's score to 1e-9 (and
//!   is reported bit for bit: it was identical on every case when written, but
//!   `ln`/`exp` come from the platform's libm, so only the tolerance is
//!   asserted);
//! * `tokenize` reproduces Python's tokens exactly, English and Chinese;
//! * `bleu` on the raw texts equals the method's `calculate_metrics`;
//! * the length and BLEU guards decide as the method's loop does;
//! * our whitespace class is exactly Python's `str.isspace()`.

use serde::Deserialize;
use uno_core::bleu::{
    BLEU_GUARD_MIN, LENGTH_GUARD_MIN_RATIO, bleu, is_python_whitespace, passes_bleu_guard,
    passes_length_guard, sentence_bleu, strip_think_tags, tokenize,
};

#[derive(Deserialize)]
struct Fixtures {
    meta: Meta,
    guards: Vec<GuardCase>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Meta {
    python: String,
    nltk: String,
    jieba: String,
    py_whitespace: Vec<u32>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    kind: String,
    reference: String,
    hypothesis: String,
    ref_tokens: Vec<String>,
    hyp_tokens: Vec<String>,
    bleu: f64,
    bleu_bits: u64,
    metric: f64,
}

#[derive(Deserialize)]
struct GuardCase {
    id: String,
    base: String,
    candidate: String,
    base_len: usize,
    candidate_len: usize,
    passes_length: bool,
    bleu: f64,
    passes_bleu: bool,
}

const TOLERANCE: f64 = 1e-9;

fn load() -> Fixtures {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bleu_golden.json"
    );
    let text =
        std::fs::read_to_string(path).expect("fixture file (run scripts/golden/bleu_fixtures.py)");
    let fixtures: Fixtures = serde_json::from_str(&text).expect("valid fixture JSON");
    eprintln!(
        "fixtures from Python {}, nltk {}, jieba {}: {} cases, {} guard cases",
        fixtures.meta.python,
        fixtures.meta.nltk,
        fixtures.meta.jieba,
        fixtures.cases.len(),
        fixtures.guards.len()
    );
    fixtures
}

#[test]
fn fixtures_cover_the_edge_cases() {
    let f = load();
    assert!(f.cases.len() >= 200, "{} cases", f.cases.len());
    let en = f.cases.iter().filter(|c| c.kind == "en").count();
    let zh = f.cases.iter().filter(|c| c.kind == "zh").count();
    assert!(en >= 200 && zh >= 100, "en {en}, zh {zh}");
    let zeros = f.cases.iter().filter(|c| c.bleu == 0.0).count();
    let ones = f.cases.iter().filter(|c| c.bleu == 1.0).count();
    let short = f
        .cases
        .iter()
        .filter(|c| (1..4).contains(&c.hyp_tokens.len()) && c.bleu > 0.0)
        .count();
    assert!(
        zeros >= 10 && ones >= 5 && short >= 5,
        "{zeros} {ones} {short}"
    );
}

#[test]
fn sentence_bleu_matches_nltk() {
    let f = load();
    let mut exact = 0;
    let mut worst = 0.0f64;
    for c in &f.cases {
        // The exact value is in `bleu_bits`; the decimal `bleu` is for people
        // (serde_json may parse it one ulp off).
        let expected = f64::from_bits(c.bleu_bits);
        assert!(
            (expected - c.bleu).abs() <= 1e-15,
            "{}: bits vs decimal",
            c.id
        );
        let got = sentence_bleu(&c.ref_tokens, &c.hyp_tokens);
        let diff = (got - expected).abs();
        worst = worst.max(diff);
        assert!(
            diff <= TOLERANCE,
            "{}: ours {got} vs NLTK {expected} (ref {:?}, hyp {:?})",
            c.id,
            c.ref_tokens,
            c.hyp_tokens
        );
        if got.to_bits() == c.bleu_bits {
            exact += 1;
        }
    }
    eprintln!(
        "sentence_bleu: {}/{} bit-identical to NLTK, worst |diff| {worst:e}",
        exact,
        f.cases.len()
    );
}

#[test]
fn english_tokens_match_python() {
    let f = load();
    for c in f.cases.iter().filter(|c| c.kind == "en") {
        assert_eq!(tokenize(&c.reference), c.ref_tokens, "{} reference", c.id);
        assert_eq!(tokenize(&c.hypothesis), c.hyp_tokens, "{} hypothesis", c.id);
    }
}

#[test]
fn chinese_tokens_match_python_jieba() {
    let f = load();
    let mut texts = 0;
    let mut mismatches = Vec::new();
    for c in f.cases.iter().filter(|c| c.kind == "zh") {
        for (text, expected) in [
            (&c.reference, &c.ref_tokens),
            (&c.hypothesis, &c.hyp_tokens),
        ] {
            texts += 1;
            let got = tokenize(text);
            if &got != expected {
                mismatches.push(format!(
                    "{}: {text:?}\n  ours   {got:?}\n  python {expected:?}",
                    c.id
                ));
            }
        }
    }
    eprintln!(
        "jieba-rs vs Python jieba: {}/{texts} texts segmented differently",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "segmentation differs from Python jieba:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn bleu_on_texts_matches_the_method() {
    let f = load();
    for c in &f.cases {
        let got = bleu(&c.reference, &c.hypothesis);
        assert!(
            (got - c.metric).abs() <= TOLERANCE,
            "{}: ours {got} vs calculate_metrics {}",
            c.id,
            c.metric
        );
    }
}

#[test]
fn guards_match_the_validation_loop() {
    let f = load();
    for g in &f.guards {
        let base = strip_think_tags(&g.base);
        let candidate = strip_think_tags(&g.candidate);
        assert_eq!(base.chars().count(), g.base_len, "{} base length", g.id);
        assert_eq!(
            candidate.chars().count(),
            g.candidate_len,
            "{} candidate length",
            g.id
        );
        let score = bleu(&base, &candidate);
        assert!(
            (score - g.bleu).abs() <= TOLERANCE,
            "{}: ours {score} vs {}",
            g.id,
            g.bleu
        );
        assert_eq!(
            passes_length_guard(&g.base, &g.candidate, LENGTH_GUARD_MIN_RATIO),
            g.passes_length,
            "{} length guard",
            g.id
        );
        assert_eq!(
            passes_bleu_guard(&g.base, &g.candidate, BLEU_GUARD_MIN),
            g.passes_bleu,
            "{} BLEU guard",
            g.id
        );
    }
}

#[test]
fn whitespace_is_pythons() {
    let f = load();
    let ours: Vec<u32> = (0..=0x10FFFFu32)
        .filter_map(char::from_u32)
        .filter(|&c| is_python_whitespace(c))
        .map(u32::from)
        .collect();
    assert_eq!(ours, f.meta.py_whitespace);
}
