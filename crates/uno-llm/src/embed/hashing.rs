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

    /// Embeds one text synchronously: the work is a few hashes per word, so
    /// callers outside async code need not go through [`Embedder::embed`].
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dim];
        let words = words(text);
        for word in &words {
            self.add(&mut v, &[word.as_bytes()], 1.0);
        }
        for pair in words.windows(2) {
            if let [a, b] = pair {
                self.add(
                    &mut v,
                    &[b"\x01", a.as_bytes(), b" ", b.as_bytes()],
                    BIGRAM_WEIGHT,
                );
            }
        }
        if !l2_normalize(&mut v) {
            // No words, or every feature cancelled out: a fixed unit vector.
            v.iter_mut().for_each(|x| *x = 0.0);
            self.add(&mut v, &[EMPTY_FEATURE], 1.0);
            l2_normalize(&mut v);
        }
        v
    }

    fn add(&self, v: &mut [f32], parts: &[&[u8]], weight: f32) {
        let h = fnv1a(parts);
        let bucket = (mix(h) % self.dim as u64) as usize;
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

/// Lower-cased words: runs of alphanumerics, each CJK character alone.
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
