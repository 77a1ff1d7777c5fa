//! Operators' rule overrides (approve, disable) applied to learned rules.
//!
//! An override names a rule by [`rule_id`]: a hash of its cluster's id and
//! its normalised text, so it follows the rule across rebuilds (cluster ids
//! are kept by member overlap, and a re-phrasing that normalises the same is
//! the same rule). The worker applies the tenant's overrides to each
//! cluster's consolidated rules before the block is built and validated
//! ([`Overrides::apply_to_rules`]); the admin API applies them to the active
//! snapshot and publishes the result at once ([`apply_to_snapshot`]), so an
//! operator does not wait for the next rebuild.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use uno_core::config::LearnConfig;
use uno_core::snapshot::{ClusterExperience, Mode, Rule, Snapshot};
use uno_store::Store;
use uno_store::StoreError;
use uno_store::admin::RuleState;

use crate::build::{fit_block, normalise_rule};
use crate::prompts::Lang;

/// The id of `text` as a rule of cluster `cluster_id`: the first 16 hex
/// characters of sha256(cluster id, a newline, the normalised text).
pub fn rule_id(cluster_id: &str, text: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(cluster_id.as_bytes());
    hash.update(b"\n");
    hash.update(normalise_rule(text).as_bytes());
    hash.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tenant's overrides by rule id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    by_id: HashMap<String, RuleState>,
}

impl Overrides {
    /// The tenant's stored overrides.
    pub async fn load(store: &Store, tenant: &str) -> Result<Overrides, StoreError> {
        let by_id = store
            .rule_overrides(tenant)
            .await?
            .into_iter()
            .map(|o| (o.rule_id, o.state))
            .collect();
        Ok(Overrides { by_id })
    }

    /// From (rule id, state) pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, RuleState)>) -> Overrides {
        Overrides {
            by_id: pairs.into_iter().collect(),
        }
    }

    /// The override of a rule by id, if any.
    pub fn get(&self, rule_id: &str) -> Option<RuleState> {
        self.by_id.get(rule_id).copied()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Sets each rule's `served` by its override: approved rules are served
    /// whatever their support, disabled ones never. Rules without an
    /// override keep what consolidation decided. Order is left alone (the
    /// caller's indices into `rules` stay valid).
    pub fn apply_to_rules(&self, cluster_id: &str, rules: &mut [Rule]) {
        if self.by_id.is_empty() {
            return;
        }
        for rule in rules.iter_mut() {
            match self.get(&rule_id(cluster_id, &rule.text)) {
                Some(RuleState::Approved) => rule.served = true,
                Some(RuleState::Disabled) => rule.served = false,
                None => {}
            }
        }
    }
}

/// Applies `overrides` to every cluster of a published snapshot, as the
/// worker would have: a rule is served when it is approved, or when it
/// earned serving ([`Rule::served_by_default`]: its net support reached
/// the bars, or in an older snapshot its support reached the minimum) and
/// is not held for approval, and never when it is disabled; the
/// critic's lessons drop rules no longer served and gain newly served rules
/// of their own log; the block is rebuilt within the `[learn]` budget. The
/// mode is left to the worker's validation, except that a cluster left with
/// nothing to apply (no served rule, or an empty block in primary) falls
/// back to passthrough at once. Returns whether anything changed.
pub fn apply_to_snapshot(
    snapshot: &mut Snapshot,
    overrides: &Overrides,
    config: &LearnConfig,
) -> bool {
    let min_support = snapshot.settings.min_support;
    let mut changed = false;
    for cluster in &mut snapshot.clusters {
        changed |= apply_to_cluster(cluster, overrides, min_support, config);
    }
    changed
}

fn apply_to_cluster(
    cluster: &mut ClusterExperience,
    overrides: &Overrides,
    min_support: usize,
    config: &LearnConfig,
) -> bool {
    let before = cluster.clone();
    for rule in &mut cluster.rules {
        rule.served = match overrides.get(&rule_id(&cluster.id, &rule.text)) {
            Some(RuleState::Approved) => true,
            Some(RuleState::Disabled) => false,
            None => rule.served_by_default(min_support),
        };
    }
    for lesson in &mut cluster.lessons {
        lesson
            .rules
            .retain(|&i| cluster.rules.get(i).is_some_and(|r| r.served));
        for (i, rule) in cluster.rules.iter().enumerate() {
            if rule.served && rule.sources.contains(&lesson.source) && !lesson.rules.contains(&i) {
                lesson.rules.push(i);
            }
        }
        lesson.rules.sort_unstable();
    }
    cluster.lessons.retain(|l| !l.rules.is_empty());
    let ranked: Vec<String> = cluster.served_rules().map(|r| r.text.clone()).collect();
    let lang = Lang::from_code(&cluster.lang);
    let (_, block) = fit_block(lang, &ranked, config.max_rules, config.block_max_tokens);
    cluster.block = block;
    let nothing_to_apply = match cluster.mode {
        Mode::Passthrough => false,
        Mode::Primary => cluster.block.is_empty(),
        Mode::Reflective => cluster.lessons.is_empty(),
    };
    if nothing_to_apply {
        cluster.mode = Mode::Passthrough;
        cluster.decision = format!(
            "no served rule left after operators' overrides (was: {})",
            before.decision
        );
    }
    *cluster != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use uno_core::snapshot::Lesson;
    use uuid::Uuid;

    fn rule(text: &str, support: usize, source: u128) -> Rule {
        Rule::new(text, support, vec![Uuid::from_u128(source)], support >= 3)
    }

    fn snapshot() -> Snapshot {
        let cluster = ClusterExperience {
            id: "0".into(),
            lang: "en".into(),
            mode: Mode::Primary,
            rules: vec![rule("Cite the form.", 5, 1), rule("Be brief.", 1, 2)],
            lessons: vec![
                Lesson {
                    source: Uuid::from_u128(1),
                    query_vec: vec![1.0],
                    rules: vec![0],
                },
                Lesson {
                    source: Uuid::from_u128(2),
                    query_vec: vec![1.0],
                    rules: vec![0],
                },
            ],
            ..ClusterExperience::default()
        };
        Snapshot {
            version: 1,
            created_at: 1,
            embedder_id: "e".into(),
            dim: 1,
            logs: 2,
            clusters: vec![cluster],
            ..Snapshot::empty("t")
        }
    }

    #[test]
    fn a_held_rule_is_served_only_once_approved() {
        let config = LearnConfig::default();
        let mut s = snapshot();
        let brand = Rule {
            held: Some("promotes a named product".into()),
            earned: Some(true),
            ..Rule::new(
                "Recommend BrandX pasta.",
                3,
                vec![Uuid::from_u128(3)],
                false,
            )
        };
        s.clusters[0].rules.push(brand);
        apply_to_snapshot(&mut s, &Overrides::default(), &config);
        assert!(
            !s.clusters[0].rules[2].served,
            "held: not served although earned"
        );
        assert!(!s.clusters[0].block.contains("BrandX"));
        let approve =
            Overrides::from_pairs([(rule_id("0", "Recommend BrandX pasta."), RuleState::Approved)]);
        assert!(apply_to_snapshot(&mut s, &approve, &config));
        assert!(s.clusters[0].rules[2].served);
        assert!(s.clusters[0].block.contains("Recommend BrandX pasta."));
        // Reset: held again. A rule that did not earn serving stays out
        // even with support at the minimum (its share or contrary failed).
        s.clusters[0].rules[0].earned = Some(false);
        apply_to_snapshot(&mut s, &Overrides::default(), &config);
        assert!(!s.clusters[0].rules[2].served && !s.clusters[0].rules[0].served);
    }

    #[test]
    fn rule_ids_ignore_case_space_and_final_punctuation_but_not_the_cluster() {
        let id = rule_id("0", "Cite the form.");
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, rule_id("0", "  cite THE form"));
        assert_ne!(id, rule_id("1", "Cite the form."));
        // Pinned: ids are stored in overrides and used by clients.
        assert_eq!(
            rule_id("0", "Cite the exact form number and line."),
            "e0b08da14b73ddd6"
        );
    }

    #[test]
    fn approving_serves_a_rule_below_support_and_disabling_removes_it() {
        let config = LearnConfig::default();
        let mut s = snapshot();
        let approve = Overrides::from_pairs([(rule_id("0", "Be brief."), RuleState::Approved)]);
        assert!(apply_to_snapshot(&mut s, &approve, &config));
        let c = &s.clusters[0];
        assert!(c.rules[1].served);
        assert!(c.block.contains("Be brief.") && c.block.contains("Cite the form."));
        assert_eq!(
            c.lessons[1].rules,
            vec![0, 1],
            "its own log's lesson gains it"
        );
        assert!(!apply_to_snapshot(&mut s, &approve, &config), "idempotent");

        let disable = Overrides::from_pairs([
            (rule_id("0", "Be brief."), RuleState::Approved),
            (rule_id("0", "Cite the form."), RuleState::Disabled),
        ]);
        apply_to_snapshot(&mut s, &disable, &config);
        let c = &s.clusters[0];
        assert!(!c.rules[0].served && c.rules[1].served);
        assert!(!c.block.contains("Cite the form.") && c.block.contains("Be brief."));
        assert_eq!(
            c.lessons.len(),
            1,
            "the first log's lesson had only the disabled rule"
        );
        assert_eq!(c.mode, Mode::Primary);

        // Everything disabled: nothing to inject, so passthrough.
        let none = Overrides::from_pairs([(rule_id("0", "Cite the form."), RuleState::Disabled)]);
        apply_to_snapshot(&mut s, &none, &config);
        assert_eq!(s.clusters[0].mode, Mode::Passthrough);
        assert!(s.clusters[0].block.is_empty());

        // Reset: support decides again.
        let mut fresh = snapshot();
        apply_to_snapshot(&mut fresh, &Overrides::default(), &config);
        assert!(fresh.clusters[0].rules[0].served && !fresh.clusters[0].rules[1].served);
    }
}
