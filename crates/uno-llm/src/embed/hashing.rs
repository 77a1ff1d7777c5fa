//! A model-free, deterministic embedder for tests.

use super::{EmbedError, EmbedFuture, Embedder, l2_normalize};

/// Dimension of [`HashingEmbedder::default`]: large enough that unrelated
/// short texts rarely share buckets, small enough to keep tests fast.
const DEFAULT_DIM: usize = 256;

/// Weight of a word bigram relative to a unigram: bigrams add word-order
/// information without drowning out shared vocabulary.
const BIGRAM_WEIGHT: f32 = 0.5;

/// The feature hashed for a text with no words, so that it still gets a
/// (fixed) unit vector.
const EMPTY_FEATURE: &[u8] = b"\x00<empty>";

/// Feature hashing of lower-cased word unigrams and bigrams into `dim`
/// signed buckets, L2-normalised.
///
/// Texts that share words get a higher cosine similarity than texts that do
/// not, so clustering and routing tests mean something without a model;
/// the output depends only on the text and `dim` (no seed, no state), so
/// tests are reproducible across runs and machines. Words are maximal runs
/// of alphanumeric characters; each CJK character counts as a word, since
/// CJK text has no spaces.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dim: usize,
    id: String,
}

impl Default for HashingEmbedder {
    /// A 256-d embedder, what most tests need.
    fn default() -> Self {
        HashingEmbedder {
            dim: DEFAULT_DIM,
            id: format!("hashing:v1:{DEFAULT_DIM}"),
        }
    }
}

impl HashingEmbedder {
    /// An embedder with `dim` buckets; `dim` must be at least 1.
    pub fn new(dim: usize) -> Result<Self, EmbedError> {
        if dim == 0 {
            return Err(EmbedError::InvalidConfig(
                "the hashing embedder needs at least 1 dimension".to_owned(),
            ));
        }
        Ok(HashingEmbedder {
            dim,
            id: format!("hashing:v1:{dim}"),
        })
    }

    /// The embedder an [`Embedder::id`] names (`hashing:v1:DIM`), so a
    /// snapshot that records its routing embedder's id can be routed by a
    /// proxy that rebuilds the same one. `None` for any other id.
    pub fn from_id(id: &str) -> Option<Self> {
        let dim = id.strip_prefix("hashing:v1:")?.parse().ok()?;
        Self::new(dim).ok()
    }

    /// Embeds one text synchronously: the work is a few hashes per byte, so
    /// callers outside async code need not go through [`Embedder::embed`].
    ///
    /// It runs on the proxy's request path (routing), so it makes no
    /// allocation besides the vector: words are hashed as they are scanned
    /// (FNV-1a over their lower-cased UTF-8), in one pass; the floats are
    /// the same as hashing a list of words gives.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        self.embed_parts(&[text])
    }

    /// The embedding of `parts` joined by blank lines, without joining them:
    /// a part boundary ends a word, as the blank line would.
    pub fn embed_parts<S: AsRef<str>>(&self, parts: &[S]) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dim];
        let mut features = Features {
            embedder: self,
            v: &mut v,
            word: FNV_OFFSET,
            pair: None,
            prefix: bigram_start(),
        };
        for part in parts {
            scan_words(part.as_ref(), &mut features);
        }
        if !l2_normalize(&mut v) {
            // No words, or every feature cancelled out: a fixed unit vector.
            v.iter_mut().for_each(|x| *x = 0.0);
            self.add(&mut v, fnv_bytes(FNV_OFFSET, EMPTY_FEATURE), 1.0);
            l2_normalize(&mut v);
        }
        v
    }

    fn add(&self, v: &mut [f32], h: u64, weight: f32) {
        let m = mix(h);
        // A mask where the dimension is a power of two (the default 256):
        // the same bucket as `%`, without a 64-bit division per feature.
        let bucket = if self.dim.is_power_of_two() {
            (m & (self.dim as u64 - 1)) as usize
        } else {
            (m % self.dim as u64) as usize
        };
        let sign = if mix(h ^ 0x5851_f42d_4c95_7f2d) >> 63 == 0 {
            1.0
        } else {
            -1.0
        };
        if let Some(slot) = v.get_mut(bucket) {
            *slot += sign * weight;
        }
    }
}

/// Receives the lower-cased bytes of each word, then the word's end.
trait WordSink {
    fn byte(&mut self, b: u8);
    fn end(&mut self);
}

/// Words are maximal runs of alphanumerics, lower-cased; each CJK
/// character is a word by itself (CJK text has no spaces).
fn scan_words(text: &str, sink: &mut impl WordSink) {
    let mut in_word = false;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                in_word = true;
                sink.byte((c as u8).to_ascii_lowercase());
            } else if in_word {
                sink.end();
                in_word = false;
            }
        } else if is_cjk(c) {
            if in_word {
                sink.end();
                in_word = false;
            }
            c.encode_utf8(&mut buf).bytes().for_each(|b| sink.byte(b));
            sink.end();
        } else if c.is_alphanumeric() {
            in_word = true;
            for lower in c.to_lowercase() {
                lower
                    .encode_utf8(&mut buf)
                    .bytes()
                    .for_each(|b| sink.byte(b));
            }
        } else if in_word {
            sink.end();
            in_word = false;
        }
    }
    if in_word {
        sink.end();
    }
}

/// Hashes each word's unigram and, with the word before it, its bigram
/// (`"\x01" a " " b`), in one scan. Every feature adds ±1 or ±0.5, so the
/// sums are exact in `f32` whatever the order features arrive in.
struct Features<'a> {
    embedder: &'a HashingEmbedder,
    v: &'a mut [f32],
    /// The current word's unigram hash so far.
    word: u64,
    /// `"\x01" prev " "` continued through the current word.
    pair: Option<u64>,
    /// `"\x01"` continued through the current word, for the next pair.
    prefix: u64,
}

impl WordSink for Features<'_> {
    fn byte(&mut self, b: u8) {
        self.word = fnv_byte(self.word, b);
        self.pair = self.pair.map(|h| fnv_byte(h, b));
        self.prefix = fnv_byte(self.prefix, b);
    }
    fn end(&mut self) {
        self.embedder.add(self.v, self.word, 1.0);
        if let Some(h) = self.pair {
            self.embedder.add(self.v, h, BIGRAM_WEIGHT);
        }
        self.word = FNV_OFFSET;
        self.pair = Some(fnv_byte(self.prefix, b' '));
        self.prefix = bigram_start();
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv_byte(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
}

fn fnv_bytes(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, b| fnv_byte(h, *b))
}

fn bigram_start() -> u64 {
    fnv_byte(FNV_OFFSET, 0x01)
}

impl Embedder for HashingEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(async move { Ok(texts.iter().map(|t| self.embed_one(t)).collect()) })
    }
}

/// Lower-cased words: runs of alphanumerics, each CJK character alone (the
/// list form of [`scan_words`], kept as the reference the tests compare to).
#[cfg(test)]
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if is_cjk(c) {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            out.push(c.to_string());
        } else if c.is_alphanumeric() {
            current.extend(c.to_lowercase());
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// CJK ideographs, kana and hangul: the scripts written without spaces.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF   // hiragana, katakana
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xAC00..=0xD7AF // hangul syllables
        | 0xF900..=0xFAFF // CJK compatibility ideographs
        | 0x20000..=0x2FA1F)
}

#[cfg(test)]
fn fnv1a(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// splitmix64's finaliser: FNV's low bits are weak, this spreads them.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list-based algorithm the streaming one replaced, feature by
    /// feature in the same order: their vectors must be bit-identical, so
    /// snapshots published before the change route the same.
    fn reference(e: &HashingEmbedder, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; e.dim];
        let ws = words(text);
        for w in &ws {
            e.add(&mut v, fnv1a(&[w.as_bytes()]), 1.0);
        }
        for pair in ws.windows(2) {
            e.add(
                &mut v,
                fnv1a(&[b"\x01", pair[0].as_bytes(), b" ", pair[1].as_bytes()]),
                BIGRAM_WEIGHT,
            );
        }
        if !l2_normalize(&mut v) {
            v.iter_mut().for_each(|x| *x = 0.0);
            e.add(&mut v, fnv1a(&[EMPTY_FEATURE]), 1.0);
            l2_normalize(&mut v);
        }
        v
    }

    #[test]
    fn streaming_matches_the_word_list_algorithm_exactly() {
        let e = HashingEmbedder::default();
        for text in [
            "Hello, WORLD! it's 2024",
            "我喜欢 Rust 和 Ünïcödé ÀÉÎ straße",
            "  ...  ",
            "",
            "one",
            "a b a b a b",
            "İstanbul ǅemal ΣΊΣΥΦΟΣ",
        ] {
            assert_eq!(e.embed_one(text), reference(&e, text), "{text:?}");
        }
    }

    #[test]
    fn parts_embed_as_their_blank_line_join() {
        let e = HashingEmbedder::default();
        let parts = ["You are kind.", "", "How do I boil pasta?"];
        assert_eq!(e.embed_parts(&parts), e.embed_one(&parts.join("\n\n")));
        assert_eq!(e.embed_parts::<&str>(&[]), e.embed_one(""));
    }

    #[test]
    fn splits_words_and_cjk() {
        assert_eq!(
            words("Hello, WORLD! it's 2024"),
            ["hello", "world", "it", "s", "2024"]
        );
        assert_eq!(words("我喜欢 Rust"), ["我", "喜", "欢", "rust"]);
        assert!(words("  ...  ").is_empty());
    }

    #[test]
    fn zero_dim_is_refused() {
        assert!(HashingEmbedder::new(0).is_err());
    }

    #[test]
    fn rebuilt_from_its_id() {
        let e = HashingEmbedder::new(64).unwrap();
        let again = HashingEmbedder::from_id(e.id()).unwrap();
        assert_eq!(again.embed_one("same text"), e.embed_one("same text"));
        assert!(HashingEmbedder::from_id("hashing:v1:0").is_none());
        assert!(HashingEmbedder::from_id("local:minilm").is_none());
    }
}
