//! An operator's snapshot actions, activate and roll back, each checked,
//! applied and written to the audit log in one place.
//!
//! Why here: the CLI (`uno snapshot activate|rollback`) and the admin API
//! (`POST …/snapshots/{version}/activate`, `…/rollback`) each implemented
//! both and had already drifted apart (different audit records for the
//! same action, one re-activating and auditing an already active version,
//! the other not). They now only render what these return.

use crate::Store;
use crate::error::StoreError;

/// What an activation or rollback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activation {
    /// The version active now.
    pub version: i64,
    /// The version active before, if any.
    pub previous: Option<i64>,
}

impl Activation {
    /// Whether the action changed the active version (activating the
    /// version already active changes nothing and is not audited).
    pub fn changed(&self) -> bool {
        self.previous != Some(self.version)
    }
}

/// Why an operator's snapshot action was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotActionError {
    /// The tenant has no such version; `versions` are those it has, oldest
    /// first, for the message to list.
    #[error("tenant {tenant:?} has no snapshot version {version}")]
    NoSuchVersion {
        /// Tenant.
        tenant: String,
        /// The version asked for.
        version: i64,
        /// The versions the tenant has.
        versions: Vec<i64>,
    },
    /// A rollback, but no version is active; `has_versions` says whether
    /// one could be activated.
    #[error("tenant {tenant:?} has no active snapshot to roll back")]
    NoActive {
        /// Tenant.
        tenant: String,
        /// Whether the tenant has any version.
        has_versions: bool,
    },
    /// A rollback from the oldest version.
    #[error(
        "tenant {tenant:?}: the active version {active} is the oldest; nothing to roll back to"
    )]
    Oldest {
        /// Tenant.
        tenant: String,
        /// The active version.
        active: i64,
    },
    /// The database failed (the audit record included: the action may
    /// then have been applied without its record, and the message says so).
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The audit action names, one per operator action.
const ACTIVATE: &str = "snapshot_activate";
const ROLLBACK: &str = "snapshot_rollback";

impl Store {
    /// Makes `version` the tenant's active snapshot on behalf of `actor`
    /// and records `{"version", "previous"}` in the audit log. Activating
    /// the version already active changes and records nothing.
    ///
    /// # Errors
    ///
    /// [`SnapshotActionError::NoSuchVersion`] for a version the tenant
    /// does not have; [`SnapshotActionError::Store`] when the database
    /// fails.
    pub async fn activate_as(
        &self,
        actor: &str,
        tenant: &str,
        version: i64,
    ) -> Result<Activation, SnapshotActionError> {
        let versions = self.list_snapshots(Some(tenant)).await?;
        if !versions.iter().any(|v| v.version == version) {
            return Err(SnapshotActionError::NoSuchVersion {
                tenant: tenant.to_owned(),
                version,
                versions: oldest_first(&versions),
            });
        }
        let previous = versions.iter().find(|v| v.active).map(|v| v.version);
        let done = Activation { version, previous };
        if done.changed() {
            self.activate_snapshot(tenant, version).await?;
            self.record(actor, ACTIVATE, tenant, done).await?;
        }
        Ok(done)
    }

    /// Activates the version before the active one on behalf of `actor`
    /// and records `{"version", "previous"}` in the audit log.
    ///
    /// # Errors
    ///
    /// [`SnapshotActionError::NoActive`] when no version is active,
    /// [`SnapshotActionError::Oldest`] when the active one is the oldest,
    /// [`SnapshotActionError::Store`] when the database fails.
    pub async fn rollback_as(
        &self,
        actor: &str,
        tenant: &str,
    ) -> Result<Activation, SnapshotActionError> {
        let versions = self.list_snapshots(Some(tenant)).await?;
        let Some(active) = versions.iter().find(|v| v.active).map(|v| v.version) else {
            return Err(SnapshotActionError::NoActive {
                tenant: tenant.to_owned(),
                has_versions: !versions.is_empty(),
            });
        };
        let Some(version) = versions
            .iter()
            .map(|v| v.version)
            .filter(|&v| v < active)
            .max()
        else {
            return Err(SnapshotActionError::Oldest {
                tenant: tenant.to_owned(),
                active,
            });
        };
        self.activate_snapshot(tenant, version).await?;
        let done = Activation {
            version,
            previous: Some(active),
        };
        self.record(actor, ROLLBACK, tenant, done).await?;
        Ok(done)
    }

    /// The audit record of an applied action; a failure says the action
    /// itself took effect.
    async fn record(
        &self,
        actor: &str,
        action: &str,
        tenant: &str,
        done: Activation,
    ) -> Result<(), StoreError> {
        self.audit(
            actor,
            action,
            Some(tenant),
            Some(&done.version.to_string()),
            serde_json::json!({"version": done.version, "previous": done.previous}),
        )
        .await
        .map_err(|err| {
            StoreError::Rejected(format!(
                "version {} of tenant {tenant:?} is active, but the audit log did not record it: {err}",
                done.version
            ))
        })
    }
}

/// The versions of a listing, oldest first.
fn oldest_first(versions: &[crate::snapshots::SnapshotInfo]) -> Vec<i64> {
    let mut out: Vec<i64> = versions.iter().map(|v| v.version).collect();
    out.sort_unstable();
    out
}
