//! Text helpers of the simulated community: a seeded RNG, word tokens,
//! typo-tolerant cue matching and typo injection.

/// A small seeded generator (splitmix64): the same seed gives the same
/// community, so a run can be repeated exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// A generator derived from `seed` and `text` (stable across runs).
    pub fn keyed(seed: u64, text: &str) -> Rng {
        Rng::new(seed ^ fnv(text))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of `items` (panics on an empty slice: a bug in the
    /// simulation's tables).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Shuffles `items` in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// FNV-1a of `text`.
pub fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Lower-case alphanumeric words of `text`.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Optimal-string-alignment distance, stopping early above 1 (only "equal
/// or one edit" matters here).
fn within_one_edit(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Same length only (a swapped or mistyped letter): an inserted or
    // dropped letter makes too many real words ("through", "thorough").
    if a.len() != b.len() {
        return false;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()] <= 1
}

/// Whether token `t` reads as cue word `c`: equal, or one typo away for
/// words of seven letters or more (a reader understands "summray", and
/// shorter words have too many real neighbours: "sort", "course").
fn word_matches(t: &str, c: &str) -> bool {
    t == c || (c.chars().count() >= 7 && within_one_edit(t, c))
}

/// Words that turn the cue after them around ("not brief", "too short").
const NEGATORS: [&str; 8] = [
    "not", "no", "never", "without", "avoid", "too", "overly", "less",
];

/// Whether any cue (a word sequence) occurs in `tokens`, skipping matches
/// right after a negator unless the cue itself starts with one.
pub fn has_cue(tokens: &[String], cues: &[&[&str]]) -> bool {
    cues.iter().any(|cue| {
        if cue.is_empty() || cue.len() > tokens.len() {
            return false;
        }
        (0..=tokens.len() - cue.len()).any(|i| {
            let hit = cue
                .iter()
                .zip(&tokens[i..])
                .all(|(c, t)| word_matches(t, c));
            let negated =
                i > 0 && !NEGATORS.contains(&cue[0]) && NEGATORS.contains(&tokens[i - 1].as_str());
            hit && !negated
        })
    })
}

/// Adds typos: each word of five letters or more has its two middle
/// letters swapped with probability `rate`.
pub fn typos(rng: &mut Rng, text: &str, rate: f64) -> String {
    text.split(' ')
        .map(|w| {
            let chars: Vec<char> = w.chars().collect();
            if chars.len() >= 5 && chars.iter().all(|c| c.is_alphabetic()) && rng.chance(rate) {
                let mut c = chars.clone();
                let m = c.len() / 2;
                c.swap(m - 1, m);
                c.into_iter().collect()
            } else {
                w.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text under a Markdown `## heading`, up to the next `## ` heading.
pub fn section<'a>(text: &'a str, heading: &str) -> Option<&'a str> {
    let start = text.find(heading)? + heading.len();
    let rest = &text[start..];
    let rest = rest.strip_prefix('\n').unwrap_or(rest);
    Some(rest.split("\n## ").next().unwrap_or(rest).trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cues_tolerate_one_typo_and_respect_negation() {
        let t = words("Plaese add a summray at the end");
        assert!(has_cue(&t, &[&["summary"]]));
        assert!(!has_cue(&words("too brief for me"), &[&["brief"]]));
        assert!(has_cue(&words("too brief for me"), &[&["too", "brief"]]));
        assert!(!has_cue(&words("a sum of money"), &[&["summary"]]));
        assert!(!has_cue(&words("sort a list"), &[&["short"]]));
        assert!(!has_cue(&words("of course"), &[&["source"]]));
    }

    #[test]
    fn rng_is_deterministic() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    #[test]
    fn sections_are_cut_at_the_next_heading() {
        let t = "## A\none\n\n## B\ntwo";
        assert_eq!(section(t, "## A"), Some("one"));
        assert_eq!(section(t, "## B"), Some("two"));
        assert_eq!(section(t, "## C"), None);
    }
}
