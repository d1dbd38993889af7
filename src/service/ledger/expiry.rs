//! The expiry sweep: writes off expired lots of uids no request touches, and closes expired holds.

use chrono::Utc;

use super::{ApplyError, apply::Ledger};
use crate::{
    error::ServiceResult,
    service::Services,
    store,
    tenancy::{TenantSchema, begin_tenant_transaction},
};

/// The method name of the sweeper's own audit records (it is not an RPC; its transport is `system`).
pub const SWEEP_AUDIT_METHOD: &str = "system/ExpirySweep";

/// One sweep of one tenant: its schema, and when it began (for its audit record).
pub(super) struct Sweep {
    pub(super) schema: TenantSchema,
    merchant_id: uuid::Uuid,
    started: std::time::Instant,
    occurred_at: chrono::DateTime<Utc>,
}

impl Sweep {
    pub(super) fn start(merchant_id: uuid::Uuid) -> Sweep {
        Sweep {
            schema: TenantSchema::for_merchant(merchant_id),
            merchant_id,
            started: std::time::Instant::now(),
            occurred_at: Utc::now(),
        }
    }

    /// The sweep's audit record in its tenant's chain (transport `system`, no key), to be filled with what it did.
    pub(super) fn record(&self, method: &str) -> crate::call::NewRecord {
        crate::call::NewRecord {
            method: method.to_owned(),
            ..crate::call::NewRecord::for_system(
                self.schema.clone(),
                self.merchant_id,
                self.occurred_at,
                self.started,
            )
        }
    }
}

/// Writes off expired lots of one tenant: at most `batch_size` lots' uids per call, skipping uids a request
/// holds (that request expires them itself). Safe with several instances sweeping at once. The entries it writes
/// are listed by one audit record of the sweep, committed with them, so they are covered by the audit chain like
/// every other entry. Returns the number of expire entries written.
pub async fn sweep_expired(
    services: &Services,
    merchant_id: uuid::Uuid,
    batch_size: i64,
) -> ServiceResult<usize> {
    let sweep = Sweep::start(merchant_id);
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &sweep.schema).await?;
    let now = Utc::now();
    let mut created = Vec::new();
    for uid in store::ledger::uids_with_expired_lots(&transaction, batch_size).await? {
        let Some(balance) = store::ledger::try_lock_account(&transaction, &uid).await? else {
            continue;
        };
        let mut ledger = Ledger {
            transaction: &transaction,
            uid: &uid,
            balance,
            // Writing off expired lots takes nothing that holds reserve: expired points are no one's.
            held: 0,
            now,
            created: Vec::new(),
        };
        match ledger.expire_due().await {
            Ok(()) => {}
            // A conflict with a request: that request writes these lots off itself; nothing here is committed.
            Err(ApplyError::Retry) => return Ok(0),
            Err(ApplyError::Service(error)) => return Err(error),
        }
        created.extend(ledger.created);
        store::ledger::set_balance(&transaction, &uid, ledger.balance).await?;
    }
    if created.is_empty() {
        return Ok(0);
    }
    let record = crate::call::NewRecord {
        entry_ids: created.clone(),
        points: Some(created.len() as i64),
        ..sweep.record(SWEEP_AUDIT_METHOD)
    };
    store::audit::insert_one(&*transaction, &record).await?;
    transaction.commit().await?;
    services.rollup_marks.mark(merchant_id);
    Ok(created.len())
}

/// Sweeps every healthy tenant every `interval` until `shutdown`.
pub async fn run_expiry_sweeper(
    services: std::sync::Arc<Services>,
    interval: std::time::Duration,
    batch_size: i64,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut ticks = crate::periodic::Ticks::new(interval, &shutdown);
    while ticks.next().await {
        let merchants = match services.healthy_merchants().await {
            Ok(merchants) => merchants,
            Err(error) => {
                tracing::warn!(%error, "expiry sweep skipped");
                continue;
            }
        };
        for merchant_id in merchants {
            if shutdown.is_cancelled() {
                return;
            }
            match sweep_expired(&services, merchant_id, batch_size).await {
                Ok(0) => {}
                Ok(written) => tracing::info!(%merchant_id, written, "expired lots written off"),
                Err(error) => {
                    tracing::warn!(%merchant_id, %error, "expiry sweep failed for tenant")
                }
            }
            match super::sweep_expired_holds(&services, merchant_id, batch_size).await {
                Ok(0) => {}
                Ok(closed) => tracing::info!(%merchant_id, closed, "expired holds closed"),
                Err(error) => {
                    tracing::warn!(%merchant_id, %error, "hold expiry sweep failed for tenant")
                }
            }
        }
    }
}
