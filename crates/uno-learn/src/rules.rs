//! One topic, one voice: how a cluster's rule candidates become the rules
//! it serves (issue 23).
//!
//! 1. [`merge`]: today's cheap merge, exact (normalised text) and by
//!    embedding similarity, with provenance and distinct users.
//! 2. [`by_meaning`]: one LLM call per cluster groups the merged rules by
//!    meaning, so paraphrases that an embedder places far apart (MiniLM put
//!    three wordings of one preference at cosine 0.25–0.78) add their
//!    support up instead of splitting it; it also names contradicting
//!    groups and groups that promote a product or contact. The model only
//!    answers with rule numbers: who supports a group is the union of its
//!    members' users, counted here, so the model cannot invent support, and
//!    the served wording is always one a user's feedback produced
//!    (`canonical` is a member), so it cannot inject text of its own and a
//!    rule's id stays stable for operators' overrides. Its output is
//!    validated ([`check`]); anything invalid falls back to step 1's rules.
//!    The result is cached by the hash of the model, language and the rule
//!    texts shown, like validation outcomes, so a rebuild whose rules did
//!    not change pays nothing: the cost is at most one call per cluster per
//!    changed rule set, a small fraction of the per-log calls.
//! 3. [`rank`]: a group is served only when its net supporters (its users
//!    minus the users of contradicting groups) reach both `min_support`
//!    distinct users and `min_support_share` of the distinct users who gave
//!    feedback in the region ([`voice`]). uno cannot tell one person under
//!    several ids from several people; the share is the defence: three ids
//!    are 3 users, but against a community of 8 others they are 27% (below
//!    30%), and when the community asked for the opposite their voices
//!    count against the rule. Groups that promote a named product, brand,
//!    site, URL, email or phone are held for an operator's approval
//!    instead of served, when the tenant holds promotions
//!    ([`promotion_reason`] is the cheap lexical half of that check).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use uno_core::snapshot::Rule;
use uno_llm::{ChatError, ChatModel, Sampling};
use uno_store::Store;
use uuid::Uuid;

use crate::build::{Candidate, normalise_rule};
use crate::prompts::{self, Lang};

/// Most merged rules one consolidation call is shown, the best supported
/// first. A served rule needs a share of the region's users, so only a few
/// groups can ever earn serving and they are at the head of the ranking;
/// the long tail of one-off rules is left as it is, keeping the prompt (and
/// the cost) bounded however large the cluster grows.
pub const MAX_SHOWN: usize = 40;

/// Rules after the exact and embedding merge: each with its first phrasing,
/// the logs it came from and the distinct users behind them.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The first phrasing.
    pub text: String,
    /// Source interactions, in first-appearance order.
    pub sources: Vec<Uuid>,
    /// Distinct contributors.
    pub users: BTreeSet<String>,
    /// Every phrasing that merged into it (for the lexical check).
    pub texts: Vec<String>,
}

/// Merges candidates whose normalised texts are equal or, given `vectors`
/// (one unit vector per candidate), whose cosine similarity to a merged
/// rule's first phrasing is at least `similarity`. Returns the merged rules
/// in first-appearance order and, per candidate, its merged rule.
pub fn merge(
    candidates: &[Candidate],
    vectors: Option<&[Vec<f32>]>,
    similarity: f32,
) -> (Vec<Merged>, Vec<usize>) {
    let mut merged: Vec<Merged> = Vec::new();
    let mut reps: Vec<usize> = Vec::new();
    let mut by_text: HashMap<String, usize> = HashMap::new();
    let mut of = Vec::with_capacity(candidates.len());
    for (i, c) in candidates.iter().enumerate() {
        let key = normalise_rule(&c.text);
        let found = by_text.get(&key).copied().or_else(|| {
            let vs = vectors?;
            reps.iter().position(|&r| dot(&vs[r], &vs[i]) >= similarity)
        });
        let m = match found {
            Some(m) => m,
            None => {
                merged.push(Merged {
                    text: c.text.trim().to_owned(),
                    sources: Vec::new(),
                    users: BTreeSet::new(),
                    texts: Vec::new(),
                });
                reps.push(i);
                merged.len() - 1
            }
        };
        by_text.entry(key).or_insert(m);
        let rule = &mut merged[m];
        if !rule.sources.contains(&c.source) {
            rule.sources.push(c.source);
        }
        if !rule.texts.contains(&c.text) {
            rule.texts.push(c.text.clone());
        }
        rule.users.insert(c.contributor.clone());
        of.push(m);
    }
    (merged, of)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One preference: merged rules (indices) that say the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Member indices, ascending.
    pub members: Vec<usize>,
    /// The member whose wording is served.
    pub canonical: usize,
    /// The consolidation model's verdict: it promotes a named product,
    /// brand, site or contact.
    pub promotes: bool,
}

impl Group {
    /// Merged rule `i` as a preference of its own.
    pub fn single(i: usize) -> Group {
        Group {
            members: vec![i],
            canonical: i,
            promotes: false,
        }
    }
}

/// A partition of the merged rules into preferences, with contradictions
/// between groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Consolidation {
    /// Every index in exactly one group.
    pub groups: Vec<Group>,
    /// Pairs of group indices (ascending, distinct) that contradict.
    pub contradictions: Vec<(usize, usize)>,
}

impl Consolidation {
    /// Each rule its own preference, nothing contradicting: today's result,
    /// and the fallback when the consolidation step fails.
    pub fn singletons(n: usize) -> Consolidation {
        Consolidation {
            groups: (0..n).map(Group::single).collect(),
            contradictions: Vec::new(),
        }
    }

    /// This consolidation of shown rules (indices into `shown`) as one of
    /// all `n` merged rules: indices mapped through `shown`, every rule not
    /// shown its own group.
    fn widen(&self, shown: &[usize], n: usize) -> Consolidation {
        let mut groups: Vec<Group> = self
            .groups
            .iter()
            .map(|g| {
                let mut members: Vec<usize> = g.members.iter().map(|&k| shown[k]).collect();
                members.sort_unstable();
                Group {
                    members,
                    canonical: shown[g.canonical],
                    promotes: g.promotes,
                }
            })
            .collect();
        let covered: HashSet<usize> = shown.iter().copied().collect();
        groups.extend((0..n).filter(|i| !covered.contains(i)).map(Group::single));
        Consolidation {
            groups,
            contradictions: self.contradictions.clone(),
        }
    }
}

/// The model's reply as it comes: rule numbers as shown (1-based).
#[derive(Debug, Clone, Deserialize)]
pub struct RawConsolidation {
    /// Groups.
    pub groups: Vec<RawGroup>,
    /// Pairs of rule numbers.
    #[serde(default)]
    pub contradictions: Vec<Vec<i64>>,
}

/// One group as the model gave it.
#[derive(Debug, Clone, Deserialize)]
pub struct RawGroup {
    /// Rule numbers.
    pub members: Vec<i64>,
    /// The rule number whose wording stands for the group.
    pub canonical: i64,
    /// Whether the group promotes a named product or contact.
    #[serde(default)]
    pub promotes: bool,
}

/// Validates the model's reply for `n` shown rules: every number in
/// 1..=n, each rule in at most one group, each canonical one of its group's
/// members, each contradiction two rules of different groups. Rules the
/// model left out become groups of their own. Any violation rejects the
/// whole reply (a model that confuses numbers has not understood the rules),
/// and the caller falls back to the merged rules.
pub fn check(raw: &RawConsolidation, n: usize) -> Result<Consolidation, String> {
    let index = |k: i64| -> Result<usize, String> {
        usize::try_from(k)
            .ok()
            .filter(|&k| (1..=n).contains(&k))
            .map(|k| k - 1)
            .ok_or_else(|| format!("rule number {k} is not between 1 and {n}"))
    };
    let mut group_of: Vec<Option<usize>> = vec![None; n];
    let mut groups = Vec::new();
    for g in &raw.groups {
        if g.members.is_empty() {
            continue;
        }
        let id = groups.len();
        let mut members = Vec::with_capacity(g.members.len());
        for &k in &g.members {
            let i = index(k)?;
            match group_of[i] {
                Some(other) if other != id => {
                    return Err(format!("rule {k} is in more than one group"));
                }
                Some(_) => {}
                None => {
                    group_of[i] = Some(id);
                    members.push(i);
                }
            }
        }
        let canonical = index(g.canonical)?;
        if !members.contains(&canonical) {
            return Err(format!(
                "canonical rule {} is not a member of its group",
                g.canonical
            ));
        }
        members.sort_unstable();
        groups.push(Group {
            members,
            canonical,
            promotes: g.promotes,
        });
    }
    for (i, slot) in group_of.iter_mut().enumerate() {
        if slot.is_none() {
            *slot = Some(groups.len());
            groups.push(Group::single(i));
        }
    }
    let mut contradictions = Vec::new();
    for pair in &raw.contradictions {
        let [a, b] = pair.as_slice() else {
            return Err(format!("a contradiction must name two rules, not {pair:?}"));
        };
        let (ga, gb) = (group_of[index(*a)?], group_of[index(*b)?]);
        let (Some(ga), Some(gb)) = (ga, gb) else {
            return Err("a contradiction names a rule in no group".to_owned());
        };
        if ga == gb {
            return Err(format!(
                "rules {a} and {b} are grouped as one preference and also contradict"
            ));
        }
        let pair = (ga.min(gb), ga.max(gb));
        if !contradictions.contains(&pair) {
            contradictions.push(pair);
        }
    }
    Ok(Consolidation {
        groups,
        contradictions,
    })
}

/// What the cache keeps: a validated consolidation of the shown rules, or
/// that the model's reply was invalid or not JSON (so a deterministic
/// model's bad reply is not paid for again at every rebuild; a call that
/// failed, such as a timeout, is not cached and is retried next time).
#[derive(Debug, Serialize, Deserialize)]
enum Cached {
    Ok(Consolidation),
    Invalid(String),
}

impl Cached {
    /// The consolidation of all `n` merged rules this answer for the
    /// `shown` ones gives: an invalid answer leaves every rule its own.
    fn widen(&self, shown: &[usize], n: usize) -> Consolidation {
        match self {
            Cached::Ok(c) => c.widen(shown, n),
            Cached::Invalid(_) => Consolidation::singletons(n),
        }
    }
}

/// The consolidation by meaning of `merged`: one JSON call to `model`
/// (T 0.1, seed 42, as rule extraction), cached under the hash of the
/// model, the language and the shown rules' texts; [`Consolidation::singletons`]
/// when there is nothing to consolidate or the step fails.
pub async fn by_meaning(
    store: &Store,
    model: &ChatModel,
    tenant: &str,
    lang: Lang,
    merged: &[Merged],
    max_tokens: u32,
) -> Consolidation {
    let n = merged.len();
    if n == 0 {
        return Consolidation::default();
    }
    let mut shown: Vec<usize> = (0..n).collect();
    shown.sort_by(|&a, &b| {
        merged[b]
            .users
            .len()
            .cmp(&merged[a].users.len())
            .then(a.cmp(&b))
    });
    shown.truncate(MAX_SHOWN);
    // A fixed order for a given set of texts, so the cache key (and the
    // prompt) does not change when support merely reorders them.
    shown.sort_by(|&a, &b| {
        normalise_rule(&merged[a].text)
            .cmp(&normalise_rule(&merged[b].text))
            .then(a.cmp(&b))
    });
    let texts: Vec<String> = shown.iter().map(|&i| merged[i].text.clone()).collect();
    let key = cache_key(model.model(), lang, &texts);
    if let Ok(Some(hit)) = store.learn_cache_get(tenant, &key).await
        && let Ok(cached) = serde_json::from_str::<Cached>(&hit)
    {
        return cached.widen(&shown, n);
    }
    let reply = model
        .json::<RawConsolidation>(
            &prompts::consolidation(lang, &texts),
            Sampling::precise(max_tokens),
            "consolidation",
            &prompts::consolidation_schema(),
        )
        .await;
    let cached = match reply {
        Ok(raw) => match check(&raw, texts.len()) {
            Ok(c) => Cached::Ok(c),
            Err(why) => {
                tracing::warn!(tenant, %why, "invalid rule consolidation; keeping the merged rules as they are");
                Cached::Invalid(why)
            }
        },
        // The model replied, three times, with no usable JSON: at T 0.1 and
        // a fixed seed it would again, so that is remembered like an
        // invalid reply.
        Err(err @ ChatError::InvalidJson { .. }) => {
            tracing::warn!(tenant, %err, "rule consolidation gave no JSON; keeping the merged rules as they are");
            Cached::Invalid(err.to_string())
        }
        Err(err) => {
            tracing::warn!(tenant, %err, "rule consolidation failed; keeping the merged rules as they are");
            return Consolidation::singletons(n);
        }
    };
    if let Ok(text) = serde_json::to_string(&cached)
        && let Err(err) = store.learn_cache_put(tenant, &key, &text).await
    {
        tracing::warn!(%err, "could not cache a rule consolidation; it will be asked again");
    }
    cached.widen(&shown, n)
}

fn cache_key(model: &str, lang: Lang, texts: &[String]) -> String {
    let parts = [
        "consolidation:v1".to_owned(),
        model.to_owned(),
        lang.as_str().to_owned(),
        serde_json::to_string(texts).unwrap_or_default(),
    ];
    crate::content_key::content_key(&parts)
}

/// How a group's support measures up in its region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Voice {
    /// Distinct supporters.
    pub support: usize,
    /// Distinct users who asked for a contradicting rule.
    pub contrary: usize,
    /// Distinct users who gave feedback in the region.
    pub region: usize,
    /// `support / region` (0 for an empty region).
    pub share: f64,
    /// Whether the support reaches `min_support` and the net support
    /// (`support − contrary`) the share ([`voice`]).
    pub earned: bool,
}

/// A group's voice in a region: `supporters` asked for it, `contrary` for
/// something it contradicts, `region` gave text feedback there (a region is
/// a cluster's training logs today; taking the set lets overlapping
/// clusters be reconciled over their union). A user in both sets cancels
/// themself out. The supporters must be at least `min_support` distinct
/// users, and the net support (supporters − contradictors) at least one
/// user and `min_share` of the region's users (supporters and
/// contradictors always count as the region's).
///
/// Why `min_support` counts supporters, not the net: a region's random
/// raters now and then ask for the opposite of what its community wants
/// (one "keep it brief" among four "more detail" users). Taking that one
/// voice off the minimum would veto a four-user topic's rule outright,
/// while the share and the net still let a real opposing group (as large
/// as the supporters, or enough to pull the net under the share) stop it.
pub fn voice(
    supporters: &BTreeSet<String>,
    contrary: &BTreeSet<String>,
    region: &HashSet<String>,
    min_support: usize,
    min_share: f64,
) -> Voice {
    let mut everyone: HashSet<&str> = region.iter().map(String::as_str).collect();
    everyone.extend(supporters.iter().map(String::as_str));
    everyone.extend(contrary.iter().map(String::as_str));
    let region = everyone.len();
    let net = supporters.len() as f64 - contrary.len() as f64;
    // A small tolerance: 0.3 × 10 is 3.0000000000000004 in floating point,
    // and 3 of 10 users is 30%.
    let earned = region > 0
        && supporters.len() >= min_support
        && net >= 1.0
        && net >= min_share * region as f64 - 1e-9;
    Voice {
        support: supporters.len(),
        contrary: contrary.len(),
        region,
        share: if region == 0 {
            0.0
        } else {
            supporters.len() as f64 / region as f64
        },
        earned,
    }
}

/// What serving takes: the bars of [`voice`] and whether promotions are
/// held for approval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bars {
    /// Net distinct supporters needed.
    pub min_support: usize,
    /// Net share of the region's users needed.
    pub min_share: f64,
    /// Hold promotions instead of serving them.
    pub hold_promotions: bool,
}

/// The cluster's rules from its merged rules and their consolidation: one
/// rule per group, worded as its canonical member, with the union of its
/// members' sources and users, its share and contradictions, why it is held
/// (if it is) and whether it is served; ranked by net support, then
/// support, then sources, then first appearance. Returns the rules and,
/// per merged rule, the index of its rule.
pub fn rank(
    merged: &[Merged],
    consolidation: &Consolidation,
    region: &HashSet<String>,
    bars: Bars,
) -> (Vec<Rule>, Vec<usize>) {
    struct Built {
        text: String,
        sources: Vec<Uuid>,
        users: BTreeSet<String>,
        first: usize,
        held: Option<String>,
    }
    let built: Vec<Built> = consolidation
        .groups
        .iter()
        .map(|g| {
            let mut sources = Vec::new();
            let mut users = BTreeSet::new();
            for &m in &g.members {
                for s in &merged[m].sources {
                    if !sources.contains(s) {
                        sources.push(*s);
                    }
                }
                users.extend(merged[m].users.iter().cloned());
            }
            let held = if !bars.hold_promotions {
                None
            } else if g.promotes {
                Some(
                    "promotes a named product, brand, site or contact (consolidation verdict)"
                        .to_owned(),
                )
            } else {
                g.members
                    .iter()
                    .flat_map(|&m| merged[m].texts.iter())
                    .find_map(|t| promotion_reason(t))
            };
            Built {
                text: merged[g.canonical].text.clone(),
                sources,
                users,
                first: g.members.first().copied().unwrap_or(usize::MAX),
                held,
            }
        })
        .collect();
    let mut rules: Vec<(Rule, isize, usize)> = built
        .iter()
        .enumerate()
        .map(|(g, b)| {
            let mut contrary = BTreeSet::new();
            let mut contradicts = Vec::new();
            for &(x, y) in &consolidation.contradictions {
                let other = if x == g {
                    y
                } else if y == g {
                    x
                } else {
                    continue;
                };
                contrary.extend(built[other].users.iter().cloned());
                contradicts.push(built[other].text.clone());
            }
            let v = voice(
                &b.users,
                &contrary,
                region,
                bars.min_support,
                bars.min_share,
            );
            let rule = Rule {
                text: b.text.clone(),
                support: v.support,
                sources: b.sources.clone(),
                served: v.earned && b.held.is_none(),
                share: v.share,
                contrary: v.contrary,
                contradicts,
                held: b.held.clone(),
                earned: Some(v.earned),
            };
            let net = v.support as isize - v.contrary as isize;
            (rule, net, g)
        })
        .collect();
    rules.sort_by(|(a, na, ga), (b, nb, gb)| {
        nb.cmp(na)
            .then(b.support.cmp(&a.support))
            .then(b.sources.len().cmp(&a.sources.len()))
            .then(built[*ga].first.cmp(&built[*gb].first))
    });
    let mut rank_of_group = vec![0; built.len()];
    for (r, (_, _, g)) in rules.iter().enumerate() {
        rank_of_group[*g] = r;
    }
    let mut of = vec![0; merged.len()];
    for (g, group) in consolidation.groups.iter().enumerate() {
        for &m in &group.members {
            if let Some(slot) = of.get_mut(m) {
                *slot = rank_of_group[g];
            }
        }
    }
    (rules.into_iter().map(|(r, _, _)| r).collect(), of)
}

/// The distinct users who gave text feedback in the logs `members` (every
/// learning log carries text feedback): the region a rule's share is
/// measured in.
pub fn region_users(members: &[usize], logs: &[uno_store::learn::LearnLog]) -> HashSet<String> {
    members
        .iter()
        .map(|&i| crate::source::contributor(&logs[i].input))
        .collect()
}

/// Why `text` names a site or a contact, found without a model: a URL or
/// a domain name, an email address, or a phone number (nine digits or more
/// in one run of digits and separators, seven or more after a `+`). Named
/// products and brands need the consolidation model's verdict; this check
/// catches the contacts even when that step fell back.
pub fn promotion_reason(text: &str) -> Option<String> {
    const TLDS: &[&str] = &[
        "com", "net", "org", "io", "co", "shop", "store", "biz", "info", "app", "dev", "ai", "me",
        "us", "uk", "de", "fr", "cn", "jp", "ru", "in", "eu", "online", "site", "xyz", "top",
    ];
    for raw in text.split_whitespace() {
        let token = raw.trim_matches(|c: char| !(c.is_alphanumeric() || c == '/' || c == '+'));
        let lower = token.to_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("www.")
        {
            return Some(format!("names a website ({token})"));
        }
        if let Some((local, domain)) = lower.split_once('@')
            && !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
        {
            return Some(format!("gives an email address ({token})"));
        }
        let host = lower.split('/').next().unwrap_or("");
        let labels: Vec<&str> = host.split('.').collect();
        if labels.len() >= 2
            && labels
                .iter()
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            && labels
                .iter()
                .any(|l| l.chars().any(|c| c.is_ascii_alphabetic()))
            && labels.last().is_some_and(|tld| TLDS.contains(tld))
        {
            return Some(format!("names a website ({token})"));
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '+' || c == '(' {
            let start = i;
            let mut digits = 0;
            let mut j = i;
            while j < chars.len() {
                let d = chars[j];
                // A space continues the number only before a digit or `(`.
                let separator = matches!(d, '+' | '(' | ')' | '-' | '.')
                    || (d == ' '
                        && chars
                            .get(j + 1)
                            .is_some_and(|n| n.is_ascii_digit() || *n == '('));
                if d.is_ascii_digit() {
                    digits += 1;
                } else if !separator {
                    break;
                }
                j += 1;
            }
            let plus = chars[start] == '+';
            if digits >= 9 || (plus && digits >= 7) {
                let number: String = chars[start..j].iter().collect();
                return Some(format!("gives a phone number ({})", number.trim()));
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn region(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn merged(text: &str, who: &[&str]) -> Merged {
        Merged {
            text: text.to_owned(),
            sources: who
                .iter()
                .enumerate()
                .map(|(k, w)| Uuid::from_u128(u128::from(w.as_bytes()[0]) * 1000 + k as u128))
                .collect(),
            users: users(who),
            texts: vec![text.to_owned()],
        }
    }

    const BARS: Bars = Bars {
        min_support: 3,
        min_share: 0.3,
        hold_promotions: true,
    };

    #[test]
    fn three_ids_cannot_out_vote_six_users_who_asked_otherwise() {
        let community = ["u1", "u2", "u3", "u4", "u5", "u6"];
        let fakes = ["sock1", "sock2", "sock3"];
        let all: Vec<&str> = community.iter().chain(&fakes).copied().collect();
        let rules = vec![
            merged("Recommend brand-neutral pasta.", &community),
            merged("Recommend BrandX pasta.", &fakes),
        ];
        // The consolidation step saw the two contradict.
        let c = Consolidation {
            contradictions: vec![(0, 1)],
            ..Consolidation::singletons(2)
        };
        let bars = Bars {
            hold_promotions: false,
            ..BARS
        };
        let (out, of) = rank(&rules, &c, &region(&all), bars);
        assert_eq!(out[0].text, "Recommend brand-neutral pasta.");
        assert!(out[0].served, "6 − 3 = 3 net users, 33% of 9");
        let brand = &out[1];
        assert_eq!((brand.support, brand.contrary), (3, 6));
        assert!(!brand.served && brand.earned == Some(false));
        assert_eq!(brand.contradicts, vec!["Recommend brand-neutral pasta."]);
        assert!((brand.share - 3.0 / 9.0).abs() < 1e-9);
        assert_eq!(of, vec![0, 1]);
        // Without contradiction, three ids against eight other users are
        // 27% of the region: below the share, although 3 reach min_support.
        let eight: Vec<String> = (0..8).map(|i| format!("other{i}")).collect();
        let mut r = region(&fakes);
        r.extend(eight);
        let v = voice(&users(&fakes), &BTreeSet::new(), &r, 3, 0.3);
        assert!(!v.earned && v.support == 3 && v.region == 11);
    }

    #[test]
    fn two_of_ten_users_are_not_enough_at_a_share_of_0_3() {
        let ten: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
        let r: HashSet<String> = ten.iter().cloned().collect();
        let two: BTreeSet<String> = ten[..2].iter().cloned().collect();
        let three: BTreeSet<String> = ten[..3].iter().cloned().collect();
        // min_support 2 so that only the share decides.
        assert!(!voice(&two, &BTreeSet::new(), &r, 2, 0.3).earned);
        assert!(
            voice(&three, &BTreeSet::new(), &r, 2, 0.3).earned,
            "3 of 10 is 30%"
        );
        assert!(voice(&two, &BTreeSet::new(), &r, 2, 0.0).earned);
        assert!(!voice(&BTreeSet::new(), &BTreeSet::new(), &HashSet::new(), 0, 0.0).earned);
    }

    #[test]
    fn contradicting_groups_cancel() {
        let brief = ["a", "b", "c", "d"];
        let detailed = ["e", "f", "g", "h"];
        let all: Vec<&str> = brief.iter().chain(&detailed).copied().collect();
        let rules = vec![
            merged("Be brief.", &brief),
            merged("Be detailed.", &detailed),
        ];
        let c = Consolidation {
            contradictions: vec![(0, 1)],
            ..Consolidation::singletons(2)
        };
        let (out, _) = rank(&rules, &c, &region(&all), BARS);
        assert!(out.iter().all(|r| !r.served && r.contrary == 4), "{out:?}");
        // Without the contradiction both would be served (4 of 8 each).
        let (out, _) = rank(&rules, &Consolidation::singletons(2), &region(&all), BARS);
        assert!(out.iter().all(|r| r.served));
        // A user on both sides cancels themself out only.
        let v = voice(
            &users(&["a", "b", "c", "d", "x"]),
            &users(&["x"]),
            &region(&all),
            3,
            0.3,
        );
        assert!(v.earned && v.contrary == 1);
    }

    #[test]
    fn one_random_contrary_voice_does_not_veto_a_community() {
        // Three users asked for detail; one random rater once asked for
        // brevity; two more users gave other feedback in the region.
        let region = region(&["a", "b", "c", "r", "o1", "o2"]);
        let v = voice(&users(&["a", "b", "c"]), &users(&["r"]), &region, 3, 0.3);
        assert!(v.earned, "3 supporters, net 2 of 6 users (33%): {v:?}");
        // Two supporters never reach min_support 3, with or without contrary.
        assert!(!voice(&users(&["a", "b"]), &BTreeSet::new(), &region, 3, 0.3).earned);
        // The net must still reach the share: 3 − 2 = 1 of 6 is 17%.
        assert!(
            !voice(
                &users(&["a", "b", "c"]),
                &users(&["r", "o1"]),
                &region,
                3,
                0.3
            )
            .earned
        );
        // As many against as for: never served.
        let three = users(&["r", "o1", "o2"]);
        assert!(!voice(&users(&["a", "b", "c"]), &three, &region, 3, 0.0).earned);
    }

    #[test]
    fn paraphrases_grouped_by_meaning_add_up_their_support() {
        let rules = vec![
            merged("State the cooking time in minutes.", &["a", "b"]),
            merged("Use a table.", &["z"]),
            merged("How many minutes? Say it.", &["c"]),
            merged("Give the time in minutes exactly.", &["d", "a"]),
        ];
        let raw: RawConsolidation = serde_json::from_value(serde_json::json!({
            "groups": [{"members": [1, 3, 4], "canonical": 1, "promotes": false}],
            "contradictions": []
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let c = check(&raw, 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.groups.len(), 2, "the table rule is left on its own");
        let r = region(&["a", "b", "c", "d", "z"]);
        let (out, of) = rank(&rules, &c, &r, BARS);
        assert_eq!(out[0].text, "State the cooking time in minutes.");
        assert_eq!(out[0].support, 4, "a counted once");
        assert_eq!(out[0].sources.len(), 5);
        assert!(out[0].served);
        assert_eq!(of, vec![0, 1, 0, 0]);
        assert!(!out[1].served);
    }

    fn raw(v: serde_json::Value) -> RawConsolidation {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn consolidation_replies_are_validated() {
        use serde_json::json;
        let ok = raw(json!({
            "groups": [
                {"members": [2, 1], "canonical": 2, "promotes": true},
                {"members": [3], "canonical": 3, "promotes": false}
            ],
            "contradictions": [[1, 3], [3, 2]]
        }));
        let c = check(&ok, 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.groups[0].members, vec![0, 1]);
        assert_eq!(c.groups[0].canonical, 1);
        assert!(c.groups[0].promotes);
        assert_eq!(c.groups[2].members, vec![3], "rule 4 alone");
        assert_eq!(c.contradictions, vec![(0, 1)], "one pair of groups");
        // A missing `contradictions` and `promotes` are tolerated.
        let lean = raw(json!({"groups": [{"members": [1], "canonical": 1}]}));
        assert_eq!(check(&lean, 1).map(|c| c.groups.len()), Ok(1));
        for (bad, why) in [
            (
                json!({"groups": [{"members": [0], "canonical": 0}]}),
                "not between",
            ),
            (
                json!({"groups": [{"members": [5], "canonical": 5}]}),
                "not between",
            ),
            (
                json!({"groups": [{"members": [1, 2], "canonical": 1}, {"members": [2], "canonical": 2}]}),
                "more than one group",
            ),
            (
                json!({"groups": [{"members": [1, 2], "canonical": 3}]}),
                "not a member",
            ),
            (
                json!({"groups": [{"members": [1, 2], "canonical": 1}], "contradictions": [[1, 2]]}),
                "also contradict",
            ),
            (json!({"groups": [], "contradictions": [[1]]}), "two rules"),
            (
                json!({"groups": [], "contradictions": [[1, 9]]}),
                "not between",
            ),
        ] {
            let err = check(&raw(bad.clone()), 4).expect_err(&bad.to_string());
            assert!(err.contains(why), "{bad}: {err}");
        }
        // Malformed JSON never gets this far: the chat call's parse fails
        // and the worker keeps the singletons.
        assert!(serde_json::from_value::<RawConsolidation>(json!({"groups": "x"})).is_err());
        assert_eq!(Consolidation::singletons(2).groups.len(), 2);
    }

    #[test]
    fn a_shown_subset_widens_to_every_merged_rule() {
        let c = Consolidation {
            groups: vec![Group {
                members: vec![0, 1],
                canonical: 1,
                promotes: false,
            }],
            contradictions: vec![],
        };
        let wide = c.widen(&[3, 1], 4);
        assert_eq!(wide.groups[0].members, vec![1, 3]);
        assert_eq!(wide.groups[0].canonical, 1);
        let alone: Vec<usize> = wide.groups[1..].iter().map(|g| g.members[0]).collect();
        assert_eq!(alone, vec![0, 2]);
    }

    #[test]
    fn promotions_are_held_unless_the_tenant_serves_them() {
        let fakes = ["s1", "s2", "s3"];
        let rules = vec![merged("Always recommend BrandX pasta.", &fakes)];
        let mut c = Consolidation::singletons(1);
        c.groups[0].promotes = true;
        let (out, _) = rank(&rules, &c, &region(&fakes), BARS);
        assert!(!out[0].served && out[0].earned == Some(true));
        assert!(
            out[0]
                .held
                .as_deref()
                .is_some_and(|h| h.contains("promotes"))
        );
        let open = Bars {
            hold_promotions: false,
            ..BARS
        };
        let (out, _) = rank(&rules, &c, &region(&fakes), open);
        assert!(out[0].served && out[0].held.is_none());
        // The lexical check holds a contact even when the model said no.
        let rules = vec![merged(
            "Order from www.brandx.com for the best pasta.",
            &fakes,
        )];
        let (out, _) = rank(&rules, &Consolidation::singletons(1), &region(&fakes), BARS);
        assert!(
            out[0]
                .held
                .as_deref()
                .is_some_and(|h| h.contains("website"))
        );
    }

    #[test]
    fn urls_emails_and_phones_are_found_lexically() {
        let held = |t: &str| promotion_reason(t).unwrap_or_default();
        assert!(held("Visit https://example.org/pasta for recipes.").contains("website"));
        assert!(held("Buy it at www.brandx.com.").contains("website"));
        assert!(held("Order from brandx.shop today").contains("website"));
        assert!(held("Mention pasta-deals.co.uk").contains("website"));
        assert!(held("Write to sales@brandx.com for a discount.").contains("email"));
        assert!(held("Call (555) 123-4567 to order.").contains("phone"));
        assert!(held("Call +44 20 7946 0958 now").contains("phone"));
        assert!(held("Phone 0800.123.4567").contains("phone"));
        for plain in [
            "State the exact cooking time in minutes.",
            "Boil for 8-10 minutes, e.g. 9 minutes.",
            "Cite form 1040 and schedule C for 2023-2024.",
            "Use Python 3.12 and a dict.get() call.",
            "Give the answer in 3 steps: 1. boil 2. salt 3. drain.",
            "Keep it under 1,000,000 tokens.",
            "给出例子。",
            "",
        ] {
            assert_eq!(promotion_reason(plain), None, "{plain}");
        }
    }
}
