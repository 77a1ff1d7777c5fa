//! Who owns an interaction id a client chose.
//!
//! A client may name its interaction with `x-uno-interaction-id`. An id
//! belongs to the first tenant that used it: another tenant's request under
//! it is refused (409, before anything is forwarded or logged), so it can
//! neither attach feedback to nor shadow the owner's interaction. The
//! owner's own request under it again is a retry of that interaction (the
//! header is an idempotency key): it is forwarded again and its log row
//! replaces the earlier attempt's, so one id stays one row.
//!
//! Ids uno makes itself (UUIDv7, no header) are new by construction and are
//! only noted in memory, as before. For a chosen id, memory answers for
//! whatever this process served recently; otherwise the database names the
//! first owner (within [`OWNER_LOOKUP_TIMEOUT`]), and the id is then
//! claimed in memory atomically ([`RecentInteractions::claim`]), so two
//! tenants racing for a new id cannot both have it. The database is asked
//! before anything is written to memory, so a refused request never leaves
//! a wrong owner there (the owner's feedback keeps working). When the
//! database cannot answer, the request is served under a fresh id of uno's
//! own rather than refused or risked under a wrong owner.
//!
//! [`RecentInteractions::claim`]: crate::recent::RecentInteractions::claim

use std::sync::Arc;
use std::time::Duration;

use uno_core::{ApiError, InteractionId};

use crate::app::AppState;
use crate::proxy::context::{INTERACTION_ID_HEADER, RequestContext};
use crate::recent::Claim;

/// How long a chosen id's owner is looked up in the database before the
/// request is served under a fresh id instead.
pub const OWNER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// The code of the 409 for another tenant's id.
pub const ID_IN_USE: &str = "interaction_id_in_use";

/// How a request's interaction id was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// A new interaction under the id.
    Fresh,
    /// A retry of the tenant's own interaction: its row replaces the
    /// earlier attempt's.
    Retry,
    /// The owner could not be checked: served under this fresh id of
    /// uno's own (already in the context).
    Reassigned(InteractionId),
}

/// Settles `context.id` for a request that will be logged: notes an id uno
/// made, checks and claims one the client chose. Another tenant's id is
/// the 409 to answer with.
pub async fn settle(state: &AppState, context: &mut RequestContext) -> Result<Settled, ApiError> {
    let Some(persistence) = state.persistence() else {
        // Nothing is logged and no feedback can be posted: nothing to own.
        return Ok(Settled::Fresh);
    };
    let recent = state.recent();
    if !context.chosen_by_client {
        recent.insert(context.id, &context.tenant);
        return Ok(Settled::Fresh);
    }
    let (id, tenant) = (context.id, &context.tenant);
    if let Some(owner) = recent.tenant_of(id) {
        return if owner == *tenant {
            Ok(Settled::Retry)
        } else {
            Err(in_use(id))
        };
    }
    let lookup = tokio::time::timeout(
        OWNER_LOOKUP_TIMEOUT,
        persistence.store.interaction_tenant(id.0),
    )
    .await;
    match lookup {
        Ok(Ok(Some(owner))) if *owner != **tenant => {
            // Remembered, so the next request under it is refused (and the
            // owner's feedback accepted) without a database read.
            recent.claim(id, &Arc::from(owner));
            Err(in_use(id))
        }
        Ok(Ok(stored)) => match recent.claim(id, tenant) {
            Claim::Taken => Err(in_use(id)),
            Claim::Retry => Ok(Settled::Retry),
            Claim::Claimed if stored.is_some() => Ok(Settled::Retry),
            Claim::Claimed => Ok(Settled::Fresh),
        },
        Ok(Err(err)) => Ok(reassign(state, context, &err)),
        Err(elapsed) => Ok(reassign(state, context, &elapsed)),
    }
}

/// Serves the request under a fresh id of uno's own: the chosen id's owner
/// is unknown, and neither a refusal nor a wrong owner is acceptable.
fn reassign(
    state: &AppState,
    context: &mut RequestContext,
    why: &dyn std::fmt::Display,
) -> Settled {
    let fresh = InteractionId::new();
    tracing::warn!(
        chosen = %context.id,
        served_as = %fresh,
        error = %why,
        "cannot check who owns a client-chosen interaction id; serving it under a fresh id"
    );
    context.id = fresh;
    context.chosen_by_client = false;
    state.recent().insert(fresh, &context.tenant);
    Settled::Reassigned(fresh)
}

/// The 409 for an id another tenant owns. It says the id is taken and
/// what to do, never whose it is.
pub fn in_use(id: InteractionId) -> ApiError {
    ApiError::conflict(format!(
        "interaction id {id} is already in use by another tenant; omit the \
         {INTERACTION_ID_HEADER} header to get a fresh id from uno, or choose another UUID"
    ))
    .with_code(ID_IN_USE)
    .with_param(INTERACTION_ID_HEADER)
}
