//! Which tenant each recently served interaction belongs to.
//!
//! Feedback may arrive before the log writer has stored its interaction
//! (PRODUCT.md requires accepting it then), and must be refused for another
//! tenant's interaction. This index answers both without a database read
//! for everything this process served recently. It is bounded: a ring of
//! small hash maps (generations), the oldest cleared and reused when the
//! newest fills, so memory stays flat however long the process runs.
//!
//! Every logged request inserts here, so the insert is kept cheap. The
//! newest ids are not hashed as they come: they are appended to a short
//! array (4096 entries at most), so an insert writes to the end of memory
//! the previous insert just touched. A hash table, probed at a random
//! bucket, has left the CPU's cache by the time the next request inserts
//! (a few hundred kilobytes of other work later), and each insert then
//! cost a cache miss or two (about 0.2 us a request in the load harness on
//! a 2-vCPU VM). When the array fills, its ids are hashed into a table in
//! one go (a generation), with the table in cache throughout, and the
//! oldest generation's table is cleared and reused for it, so memory stays
//! flat however long the process runs. Entries hold a tenant's number,
//! not its `Arc`, so an insert touches no shared reference count and a
//! cleared generation has nothing to drop. Lookups (feedback only) scan
//! the array, then probe every generation, newest first. Hashing is
//! foldhash, seeded per process, so ids a client chooses cannot be aimed
//! at one bucket.
//!
//! An id belongs to the first tenant that used it. Ids uno makes itself
//! are new, so they are just inserted; an id the client chose is claimed
//! ([`RecentInteractions::claim`]): looked up and, if unknown, recorded
//! under the same lock, so two tenants racing for one new id cannot both
//! get it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use foldhash::fast::RandomState;

use uno_core::InteractionId;

use crate::auth::Tenant;

/// Entries per generation at most.
const GENERATION_SIZE: usize = 4096;

/// What [`RecentInteractions::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Unknown here: it is now recorded as the claiming tenant's.
    Claimed,
    /// Already the claiming tenant's: a retry.
    Retry,
    /// Another tenant's: nothing was recorded.
    Taken,
}

/// The bounded id → tenant index.
#[derive(Debug)]
pub struct RecentInteractions {
    generation_size: usize,
    /// Generations kept, the newest (the array) included.
    generations: usize,
    inner: Mutex<Index>,
}

#[derive(Debug, Default)]
struct Index {
    /// The newest ids, in the order they were served.
    newest: Vec<(InteractionId, u32)>,
    /// Older generations, hashed; oldest first.
    generations: VecDeque<Generation>,
    /// Every tenant seen, by number.
    tenants: Vec<Tenant>,
    numbers: HashMap<Tenant, u32, RandomState>,
    /// The tenant of the last insert: a key's tenant is one shared `Arc`,
    /// so a comparison of pointers usually saves hashing its name.
    last_tenant: Option<(Tenant, u32)>,
}

type Generation = HashMap<InteractionId, u32, RandomState>;

impl RecentInteractions {
    /// Remembers up to `capacity` ids (at least the newest `capacity`
    /// less one generation: a 16th of it, at most 4096).
    pub fn new(capacity: usize) -> Self {
        let generation_size = (capacity / 16).clamp(1, GENERATION_SIZE);
        RecentInteractions {
            generation_size,
            generations: capacity.div_ceil(generation_size).max(1),
            inner: Mutex::new(Index {
                newest: Vec::with_capacity(generation_size),
                ..Index::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // The maps stay consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `id` was served for `tenant` (an id uno made itself, so
    /// new: nothing is looked up).
    pub fn insert(&self, id: InteractionId, tenant: &Tenant) {
        let mut index = self.lock();
        let number = index.number_of(tenant);
        self.push(&mut index, id, number);
    }

    /// Claims `id` for `tenant`, atomically: another tenant's id is
    /// [`Claim::Taken`] (and stays theirs), the tenant's own is a
    /// [`Claim::Retry`], and an unknown one is recorded as the tenant's
    /// ([`Claim::Claimed`]). Costs a scan of the newest ids and a probe per
    /// generation, which is why only ids a client chose are claimed.
    pub fn claim(&self, id: InteractionId, tenant: &Tenant) -> Claim {
        let mut index = self.lock();
        let number = index.number_of(tenant);
        match index.find(id) {
            Some(owner) if owner == number => Claim::Retry,
            Some(_) => Claim::Taken,
            None => {
                self.push(&mut index, id, number);
                Claim::Claimed
            }
        }
    }

    fn push(&self, index: &mut Index, id: InteractionId, number: u32) {
        index.newest.push((id, number));
        if index.newest.len() >= self.generation_size {
            self.seal(index);
        }
    }

    /// Hashes the full array into a generation: the oldest one's table,
    /// emptied and reused, once as many generations as kept exist.
    fn seal(&self, index: &mut Index) {
        if self.generations == 1 {
            index.newest.clear();
            return;
        }
        let mut generation = if index.generations.len() + 1 >= self.generations {
            let mut oldest = index.generations.pop_front().unwrap_or_default();
            oldest.clear();
            oldest
        } else {
            Generation::with_capacity_and_hasher(self.generation_size, RandomState::default())
        };
        // In the order served: an id served twice keeps its latest tenant.
        generation.extend(index.newest.drain(..));
        index.generations.push_back(generation);
    }

    /// The tenant of `id`, if it was served recently by this process.
    pub fn tenant_of(&self, id: InteractionId) -> Option<Tenant> {
        let index = self.lock();
        let number = index.find(id)?;
        index.tenants.get(number as usize).cloned()
    }
}

impl Index {
    /// The number of `id`'s tenant: the array first, then every
    /// generation, newest first.
    fn find(&self, id: InteractionId) -> Option<u32> {
        self.newest
            .iter()
            .rev()
            .find(|(served, _)| *served == id)
            .map(|(_, number)| *number)
            .or_else(|| {
                self.generations
                    .iter()
                    .rev()
                    .find_map(|generation| generation.get(&id).copied())
            })
    }

    /// The tenant's number, given on first sight. Tenants are few (one per
    /// key's tenant), so the table never needs pruning.
    fn number_of(&mut self, tenant: &Tenant) -> u32 {
        if let Some((last, number)) = &self.last_tenant
            && Arc::ptr_eq(last, tenant)
        {
            return *number;
        }
        let number = match self.numbers.get(tenant) {
            Some(number) => *number,
            None => {
                let number = u32::try_from(self.tenants.len()).unwrap_or(u32::MAX);
                self.tenants.push(tenant.clone());
                self.numbers.insert(tenant.clone(), number);
                number
            }
        };
        self.last_tenant = Some((tenant.clone(), number));
        number
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn remembers_recent_ids_and_forgets_old_ones() {
        let recent = RecentInteractions::new(4);
        let tenant: Tenant = Arc::from("t");
        let ids: Vec<InteractionId> = (0..7).map(|_| InteractionId::new()).collect();
        for id in &ids {
            recent.insert(*id, &tenant);
        }
        assert!(recent.tenant_of(ids[6]).is_some());
        assert!(recent.tenant_of(ids[4]).is_some());
        assert!(
            recent.tenant_of(ids[0]).is_none(),
            "bounded: the oldest are gone"
        );
        assert!(recent.tenant_of(InteractionId::new()).is_none());
    }

    #[test]
    fn each_id_keeps_its_own_tenant_across_generations() {
        let recent = RecentInteractions::new(10_000);
        let tenants: Vec<Tenant> = ["a", "b", "c"].into_iter().map(Arc::from).collect();
        let ids: Vec<InteractionId> = (0..25_000).map(|_| InteractionId::new()).collect();
        for (n, id) in ids.iter().enumerate() {
            recent.insert(*id, &tenants[n % 3]);
        }
        let kept = 10_000 - recent.generation_size;
        for (n, id) in ids.iter().enumerate().skip(ids.len() - kept) {
            assert_eq!(recent.tenant_of(*id).as_deref(), Some(&*tenants[n % 3]));
        }
        assert!(recent.tenant_of(ids[0]).is_none());
        assert!(recent.tenant_of(ids[ids.len() - 10_001]).is_none());
        let index = recent.lock();
        assert_eq!(
            index.generations.len() + 1,
            recent.generations,
            "bounded: the array and the hashed generations"
        );
        assert_eq!(index.tenants.len(), 3, "one number per tenant");
    }

    #[test]
    fn an_id_served_again_keeps_its_latest_tenant() {
        let recent = RecentInteractions::new(64); // generations of 4
        let (a, b): (Tenant, Tenant) = (Arc::from("a"), Arc::from("b"));
        let twice = InteractionId::new();
        let owner = || recent.tenant_of(twice).map(|t| t.to_string());
        let serve_others = |n: usize, tenant: &Tenant| {
            for _ in 0..n {
                recent.insert(InteractionId::new(), tenant);
            }
        };
        recent.insert(twice, &a);
        recent.insert(twice, &b);
        assert_eq!(owner().as_deref(), Some("b"), "both in the array");
        serve_others(2, &a);
        assert_eq!(owner().as_deref(), Some("b"), "hashed together");
        recent.insert(twice, &a);
        assert_eq!(owner().as_deref(), Some("a"), "the array first");
        serve_others(3, &b);
        assert_eq!(owner().as_deref(), Some("a"), "the newer table first");
    }

    #[test]
    fn a_claim_takes_an_unknown_id_and_refuses_another_tenants() {
        let recent = RecentInteractions::new(64); // generations of 4
        let (a, b): (Tenant, Tenant) = (Arc::from("a"), Arc::from("b"));
        let x = InteractionId::new();
        assert_eq!(recent.claim(x, &a), Claim::Claimed);
        assert_eq!(recent.claim(x, &a), Claim::Retry);
        assert_eq!(recent.claim(x, &Arc::from("a")), Claim::Retry, "by name");
        assert_eq!(recent.claim(x, &b), Claim::Taken);
        assert_eq!(
            recent.tenant_of(x).as_deref(),
            Some("a"),
            "a refused claim records nothing"
        );
        // Hashed into a generation, the owner holds.
        for _ in 0..5 {
            recent.insert(InteractionId::new(), &b);
        }
        assert_eq!(recent.claim(x, &b), Claim::Taken);
        assert_eq!(recent.claim(x, &a), Claim::Retry);
        assert_eq!(recent.tenant_of(x).as_deref(), Some("a"));
        // An id uno served is claimed like one a client chose.
        let served = InteractionId::new();
        recent.insert(served, &b);
        assert_eq!(recent.claim(served, &a), Claim::Taken);
        assert_eq!(recent.claim(served, &b), Claim::Retry);
    }

    #[test]
    fn a_claimed_id_is_forgotten_like_any_other() {
        let recent = RecentInteractions::new(4);
        let a: Tenant = Arc::from("a");
        let x = InteractionId::new();
        assert_eq!(recent.claim(x, &a), Claim::Claimed);
        for _ in 0..8 {
            recent.insert(InteractionId::new(), &a);
        }
        assert!(recent.tenant_of(x).is_none(), "bounded");
        assert_eq!(
            recent.claim(x, &Arc::from("b")),
            Claim::Claimed,
            "unknown here again (the database knows it)"
        );
    }

    #[test]
    fn racing_tenants_cannot_both_claim_a_new_id() {
        let recent = Arc::new(RecentInteractions::new(1 << 16));
        for _ in 0..50 {
            let x = InteractionId::new();
            let start = Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = ["a", "b", "c", "d"]
                .into_iter()
                .map(|name| {
                    let (recent, start) = (recent.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        recent.claim(x, &Arc::from(name))
                    })
                })
                .collect();
            let claims: Vec<Claim> = threads
                .into_iter()
                .map(|thread| thread.join().unwrap_or(Claim::Taken))
                .collect();
            let won = claims.iter().filter(|c| **c == Claim::Claimed).count();
            assert_eq!(won, 1, "{claims:?}");
            assert_eq!(claims.iter().filter(|c| **c == Claim::Taken).count(), 3);
        }
    }

    #[test]
    fn a_tenant_named_alike_by_another_key_shares_its_number() {
        let recent = RecentInteractions::new(64);
        let (first, again): (Tenant, Tenant) = (Arc::from("t"), Arc::from("t"));
        let (one, two) = (InteractionId::new(), InteractionId::new());
        recent.insert(one, &first);
        recent.insert(two, &again);
        recent.insert(InteractionId::new(), &first);
        assert_eq!(recent.lock().tenants.len(), 1);
        assert_eq!(recent.tenant_of(one).as_deref(), Some("t"));
        assert_eq!(recent.tenant_of(two).as_deref(), Some("t"));
    }
}
