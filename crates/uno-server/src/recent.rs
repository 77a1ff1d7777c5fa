//! Which tenant each recently served interaction belongs to.
//!
//! Feedback may arrive before the log writer has stored its interaction
//! (PRODUCT.md requires accepting it then), and must be refused for another
//! tenant's interaction. This index answers both without a database read
//! for everything this process served recently. It is bounded: two
//! generations of a hash map, the older dropped when the newer fills, so
//! memory stays flat however long the process runs.
//!
//! Every logged request inserts here, so the insert is kept cheap: foldhash
//! (seeded per process, so ids a client chooses cannot be aimed at one
//! bucket) instead of SipHash, and a retired generation is freed off the
//! request path rather than under the lock.

use std::collections::HashMap;
use std::sync::Mutex;

use foldhash::fast::RandomState;

use uno_core::InteractionId;

use crate::auth::Tenant;

/// The bounded id → tenant index.
#[derive(Debug)]
pub struct RecentInteractions {
    generation_size: usize,
    maps: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    current: Generation,
    previous: Generation,
}

type Generation = HashMap<InteractionId, Tenant, RandomState>;

impl RecentInteractions {
    /// Remembers up to `capacity` ids (at least the newest `capacity / 2`).
    pub fn new(capacity: usize) -> Self {
        let generation_size = (capacity / 2).max(1);
        RecentInteractions {
            generation_size,
            maps: Mutex::new(Generations {
                current: Generation::with_capacity_and_hasher(
                    generation_size,
                    RandomState::default(),
                ),
                previous: Generation::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // The maps stay consistent even if a holder panicked.
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `id` was served for `tenant`.
    pub fn insert(&self, id: InteractionId, tenant: Tenant) {
        let retired = {
            let mut maps = self.lock();
            let retired = (maps.current.len() >= self.generation_size).then(|| {
                let fresh = Generation::with_capacity_and_hasher(
                    self.generation_size,
                    RandomState::default(),
                );
                let full = std::mem::replace(&mut maps.current, fresh);
                std::mem::replace(&mut maps.previous, full)
            });
            maps.current.insert(id, tenant);
            retired
        };
        // Freeing a full generation takes a while; not on this request.
        if let Some(retired) = retired {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(retired))),
                Err(_) => drop(retired),
            }
        }
    }

    /// The tenant of `id`, if it was served recently by this process.
    pub fn tenant_of(&self, id: InteractionId) -> Option<Tenant> {
        let maps = self.lock();
        maps.current
            .get(&id)
            .or_else(|| maps.previous.get(&id))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn remembers_recent_ids_and_forgets_old_ones() {
        let recent = RecentInteractions::new(4);
        let ids: Vec<InteractionId> = (0..7).map(|_| InteractionId::new()).collect();
        for id in &ids {
            recent.insert(*id, Arc::from("t"));
        }
        assert!(recent.tenant_of(ids[6]).is_some());
        assert!(recent.tenant_of(ids[4]).is_some());
        assert!(
            recent.tenant_of(ids[0]).is_none(),
            "bounded: the oldest are gone"
        );
        assert!(recent.tenant_of(InteractionId::new()).is_none());
    }
}
