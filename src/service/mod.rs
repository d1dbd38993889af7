//! The units of work. Each public method takes the [`CallContext`] of its call, parses its input into domain
//! types, owns its transaction (one unit of work = one transaction) and calls the store with it.

pub mod api_keys;
pub mod audit;
pub mod bootstrap;
pub mod ledger;
pub mod merchants;
pub mod reports;
pub mod rules;

use std::sync::Arc;

use crate::{
    audit::buffer::AuditLog, auth::cache::AuthCache, config::KeyEnvironment,
    domain::api_key::KeyHasher,
};

impl Services {
    /// The merchants whose schema is at the latest migration (the tenants background work may touch).
    pub async fn healthy_merchants(&self) -> crate::error::ServiceResult<Vec<uuid::Uuid>> {
        let client = self.pool.get().await?;
        let version_latest = crate::store::migrations::tenant_version_latest();
        Ok(crate::store::audit::healthy_merchants(&**client, version_latest).await?)
    }
}

/// Everything the services share.
pub struct Services {
    pub pool: deadpool_postgres::Pool,
    pub hasher: KeyHasher,
    pub key_environment: KeyEnvironment,
    pub auth_cache: Arc<AuthCache>,
    /// The buffer of audit records written off the request path, and the chains waiting to be sealed.
    pub audit: Arc<AuditLog>,
    /// The tenants with entries the liability roller has not seen yet.
    pub rollup_marks: Arc<reports::RollupMarks>,
    /// Per-client-address limits and refusal budgets (SPEC §14), shared by the auth layer and the gateway's reports.
    pub sources: Arc<crate::auth::sources::Sources>,
    /// The ledger's fast path (None when `POINTS_LEDGER_LANES` is 0).
    pub lanes: Option<Arc<ledger::lanes::Lanes>>,
}
