//! Which tenant each recently served interaction belongs to.
//!
//! Feedback may arrive before the log writer has stored its interaction
//! (PRODUCT.md requires accepting it then), and must be refused for another
//! tenant's interaction. This index answers both without a database read
//! for everything this process served recently. It is bounded: a ring of
//! small hash maps (generations), the oldest cleared and reused when the
//! newest fills, so memory stays flat however long the process runs.
//!
//! Every logged request inserts here, so the insert is kept cheap. Only the
//! newest generation takes inserts, and it is small (4096 entries, a few
//! hundred kilobytes), so it stays in the CPU's cache and its pages in the
//! TLB; one map of 100 000 entries made each insert a cache and TLB miss
//! (about 0.8 us a request in the load harness on a 2-vCPU VM). Entries hold
//! a tenant's number, not its `Arc`, so an insert touches no shared
//! reference count and a cleared generation has nothing to drop. Lookups
//! (feedback only) probe every generation, newest first. Hashing is
//! foldhash, seeded per process, so ids a client chooses cannot be aimed at
//! one bucket.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use foldhash::fast::RandomState;

use uno_core::InteractionId;

use crate::auth::Tenant;

/// Entries per generation at most.
const GENERATION_SIZE: usize = 4096;

/// The bounded id → tenant index.
#[derive(Debug)]
pub struct RecentInteractions {
    generation_size: usize,
    generations: usize,
    inner: Mutex<Index>,
}

#[derive(Debug, Default)]
struct Index {
    /// Oldest first; the last takes inserts.
    generations: VecDeque<Generation>,
    /// Every tenant seen, by number.
    tenants: Vec<Tenant>,
    numbers: HashMap<Tenant, u32, RandomState>,
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
            inner: Mutex::new(Index::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // The maps stay consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `id` was served for `tenant`.
    pub fn insert(&self, id: InteractionId, tenant: &Tenant) {
        let mut index = self.lock();
        let number = index.number_of(tenant);
        let full = index
            .generations
            .back()
            .is_none_or(|newest| newest.len() >= self.generation_size);
        if full {
            let fresh = if index.generations.len() >= self.generations {
                // The oldest, emptied: its memory is reused, nothing to free.
                let mut oldest = index.generations.pop_front().unwrap_or_default();
                oldest.clear();
                oldest
            } else {
                Generation::with_capacity_and_hasher(self.generation_size, RandomState::default())
            };
            index.generations.push_back(fresh);
        }
        if let Some(newest) = index.generations.back_mut() {
            newest.insert(id, number);
        }
    }

    /// The tenant of `id`, if it was served recently by this process.
    pub fn tenant_of(&self, id: InteractionId) -> Option<Tenant> {
        let index = self.lock();
        let number = index
            .generations
            .iter()
            .rev()
            .find_map(|generation| generation.get(&id))?;
        index.tenants.get(*number as usize).cloned()
    }
}

impl Index {
    /// The tenant's number, given on first sight. Tenants are few (one per
    /// key's tenant), so the table never needs pruning.
    fn number_of(&mut self, tenant: &Tenant) -> u32 {
        if let Some(number) = self.numbers.get(tenant) {
            return *number;
        }
        let number = u32::try_from(self.tenants.len()).unwrap_or(u32::MAX);
        self.tenants.push(tenant.clone());
        self.numbers.insert(tenant.clone(), number);
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
        assert_eq!(index.generations.len(), recent.generations, "bounded");
        assert_eq!(index.tenants.len(), 3, "one number per tenant");
    }
}
