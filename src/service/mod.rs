//! The units of work. Each public method takes the [`CallContext`] of its call, parses its input into domain
//! types, owns its transaction (one unit of work = one transaction) and calls the store with it.

pub mod api_keys;
pub mod audit;
pub mod bootstrap;
pub mod ledger;
pub mod merchants;
pub mod reports;
pub mod rules;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use chrono::{DateTime, Utc};

use crate::{
    audit::{CallNotes, buffer::AuditLog},
    auth::{AuthContext, cache::AuthCache},
    config::KeyEnvironment,
    domain::api_key::KeyHasher,
};

/// How a call reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    /// Through the REST gateway, which marks its calls with `x-points-transport: rest`.
    Rest,
}

impl Transport {
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Rest => "rest",
        }
    }
}

/// One authenticated call: who, what, and the notes its audit record is made from.
#[derive(Debug)]
pub struct CallContext {
    pub request_id: String,
    /// Full gRPC method path.
    pub method: String,
    pub transport: Transport,
    pub started: Instant,
    pub occurred_at: DateTime<Utc>,
    pub auth: AuthContext,
    notes: Mutex<CallNotes>,
}

impl CallContext {
    pub fn new(
        request_id: String,
        method: String,
        transport: Transport,
        auth: AuthContext,
    ) -> CallContext {
        CallContext {
            request_id,
            method,
            transport,
            started: Instant::now(),
            occurred_at: Utc::now(),
            auth,
            notes: Mutex::default(),
        }
    }

    pub fn notes(&self) -> MutexGuard<'_, CallNotes> {
        self.notes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
