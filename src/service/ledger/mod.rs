//! The points ledger (SPEC §5, §12): earn, spend, adjust, reverse, holds, batch, reads, and the expiry sweep.
//!
//! Correctness rests on three rules:
//! 1. Every mutation of a uid first locks that uid's `accounts` row (`lock_account`), so concurrent requests on
//!    one uid run one after another under READ COMMITTED: no lost update, no overspend. Batches lock all their
//!    uids up front in sorted order, so two batches cannot deadlock each other.
//! 2. Before changing a balance, the uid's expired lots are written off with one `expire` entry each, inside the
//!    same transaction, so the stored balance always equals the sum of entry deltas *and* never counts expired
//!    points; readers subtract expired-but-unswept remainders without writing.
//! 3. The idempotency record is inserted in the same transaction as the entry. A concurrent duplicate with the
//!    same key either waits on the account lock and then finds the record (a replay), or — for a different uid —
//!    hits the primary key and the whole unit of work is retried, finding the record. Deadlocks and
//!    serialization failures are retried the same way, a bounded number of times, never shown to a client.

//!
//! The module is split by concern: `apply` (one mutation inside a transaction: the operations over lots),
//! `lanes` (the fast path: concurrent earns, spends and adjusts of one tenant coalesced into one statement and one
//! commit), `holds` (reserve, capture, void: SPEC §12), `expiry` (the sweepers) and `reads`.

mod apply;
mod expiry;
mod holds;
pub mod lanes;
mod reads;

use chrono::{DateTime, Utc};

use super::Services;
use crate::call::CallContext;
use crate::{
    domain::points::{Entry, EntryKind, IdempotencyKey, Points, Uid},
    error::{ServiceError, ServiceResult},
    store,
    tenancy::begin_tenant_transaction,
};
use apply::apply;
pub use expiry::{SWEEP_AUDIT_METHOD, run_expiry_sweeper, sweep_expired};
use holds::apply_hold;
pub use holds::{
    HOLD_SWEEP_AUDIT_METHOD, HoldMutation, HoldOperation, HoldResult, get_hold, list_holds,
    mutate_hold, sweep_expired_holds,
};
pub use reads::*;

/// How many times a unit of work is retried after a deadlock, serialization failure or idempotency race.
const ATTEMPTS_MAX: usize = 5;
/// SPEC §5: up to 1,000 operations in one batch.
pub const BATCH_OPERATIONS_MAX: usize = 1000;
/// GetAccount shows points expiring within this window.
const EXPIRING_WINDOW_DAYS: i64 = 30;

/// Where earned points come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Credit {
    Points(Points),
    /// Converted by a rule inside the same transaction (the rules service does the arithmetic).
    Amount {
        amount: String,
        currency: String,
        rule_code: Option<String>,
    },
}

/// A parsed mutation. `request_digest` identifies the request for idempotency (same key + same digest = replay).
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub idempotency_key: IdempotencyKey,
    pub request_digest: String,
    pub kind: MutationKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MutationKind {
    Earn {
        uid: Uid,
        credit: Credit,
        reference: Option<String>,
        description: Option<String>,
        metadata: serde_json::Value,
        expires_at: Option<DateTime<Utc>>,
    },
    Spend {
        uid: Uid,
        points: Points,
        reference: Option<String>,
        description: Option<String>,
        metadata: serde_json::Value,
    },
    Adjust {
        uid: Uid,
        delta: i64,
        reason: String,
    },
    Reverse {
        entry_id: i64,
        reason: Option<String>,
    },
}

impl MutationKind {
    /// The kind of the entry the mutation writes.
    pub fn entry_kind(&self) -> EntryKind {
        match self {
            MutationKind::Earn { .. } => EntryKind::Earn,
            MutationKind::Spend { .. } => EntryKind::Spend,
            MutationKind::Adjust { .. } => EntryKind::Adjust,
            MutationKind::Reverse { .. } => EntryKind::Reverse,
        }
    }

    /// The operation name stored with the idempotency record: the entry kind's name.
    pub fn operation(&self) -> &'static str {
        self.entry_kind().as_str()
    }

    fn uid(&self) -> Option<&Uid> {
        match self {
            MutationKind::Earn { uid, .. }
            | MutationKind::Spend { uid, .. }
            | MutationKind::Adjust { uid, .. } => Some(uid),
            MutationKind::Reverse { .. } => None,
        }
    }
}

/// Whether a mutation was applied now or is the stored result of an earlier identical request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Replayed,
}

/// The result of a mutation: its entry and the uid's balance after it.
#[derive(Debug, Clone)]
pub struct MutationResult {
    pub entry: Entry,
    pub balance: i64,
    pub outcome: Outcome,
    /// Every entry this call wrote (expire entries written on the way, then the main entry).
    pub created_entry_ids: Vec<i64>,
}

/// Why applying a mutation stopped.
enum ApplyError {
    Service(ServiceError),
    /// A deadlock, serialization failure or concurrent duplicate key: roll back and run the unit of work again.
    Retry,
}

impl From<ServiceError> for ApplyError {
    fn from(error: ServiceError) -> Self {
        ApplyError::Service(error)
    }
}

impl From<tokio_postgres::Error> for ApplyError {
    fn from(error: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let retryable = error.code().is_some_and(|code| {
            code == &SqlState::T_R_DEADLOCK_DETECTED || code == &SqlState::T_R_SERIALIZATION_FAILURE
        });
        if retryable || store::is_unique_violation(&error, store::ledger::IDEMPOTENCY_CONSTRAINT) {
            return ApplyError::Retry;
        }
        if error.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) {
            return ApplyError::Service(ServiceError::invalid(
                "the balance would exceed the largest supported value",
            ));
        }
        ApplyError::Service(ServiceError::from(error))
    }
}

fn retries_exhausted() -> ServiceError {
    ServiceError::unavailable("too much contention on this account; retry")
}

/// Applies one mutation with its audit record: through its tenant's lane when it is an earn of points, a spend
/// or an adjust (and lanes are on), otherwise in a transaction of its own.
pub async fn mutate(
    services: &Services,
    call: &CallContext,
    mutation: &Mutation,
) -> ServiceResult<MutationResult> {
    let merchant = call.auth.merchant()?;
    if let Some(lanes) = &services.lanes
        && lanes::takes(mutation)
        && let Some(applied) = lanes.submit(call, merchant.merchant_id, mutation).await
    {
        let applied = applied?;
        note_result(call, &applied.result);
        if let Some(audit_id) = applied.audit_id {
            call.notes().in_transaction_audit_id = Some(audit_id);
            services.rollup_marks.mark(merchant.merchant_id);
        }
        return Ok(applied.result);
    }
    mutate_ledger_alone(services, call, mutation).await
}

/// One operation of the ledger: an entry-writing mutation or a hold operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Ledger(Mutation),
    Hold(HoldMutation),
}

/// The result of an [`Operation`]. (Unboxed: results live for one call, at most a batch's 1,000 of them.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum OperationResult {
    Ledger(MutationResult),
    Hold(HoldResult),
}

impl OperationResult {
    fn outcome(&self) -> Outcome {
        match self {
            OperationResult::Ledger(result) => result.outcome,
            OperationResult::Hold(result) => result.outcome,
        }
    }
}

impl Operation {
    /// The uid whose account the operation locks, when the request names it (a capture or void finds it from
    /// the hold: see [`Operation::hold_id`]).
    fn uid(&self) -> Option<&Uid> {
        match self {
            Operation::Ledger(mutation) => mutation.kind.uid(),
            Operation::Hold(HoldMutation {
                kind: HoldOperation::Create { uid, .. },
                ..
            }) => Some(uid),
            Operation::Hold(_) => None,
        }
    }

    fn hold_id(&self) -> Option<i64> {
        match self {
            Operation::Ledger(_) => None,
            Operation::Hold(mutation) => mutation.kind.hold_id(),
        }
    }
}

/// Applies one operation inside `transaction` (a transaction or a savepoint).
async fn apply_operation(
    transaction: &deadpool_postgres::Transaction<'_>,
    operation: &Operation,
    now: chrono::DateTime<Utc>,
) -> Result<OperationResult, ApplyError> {
    match operation {
        Operation::Ledger(mutation) => apply(transaction, mutation, now)
            .await
            .map(OperationResult::Ledger),
        Operation::Hold(mutation) => apply_hold(transaction, mutation, now)
            .await
            .map(OperationResult::Hold),
    }
}

/// Applies one mutation in a transaction of its own (the ordinary path, and the fallback of the lanes).
async fn mutate_ledger_alone(
    services: &Services,
    call: &CallContext,
    mutation: &Mutation,
) -> ServiceResult<MutationResult> {
    match mutate_alone(services, call, &Operation::Ledger(mutation.clone())).await? {
        OperationResult::Ledger(result) => Ok(result),
        OperationResult::Hold(_) => Err(ServiceError::internal(&std::io::Error::other(
            "a ledger mutation answered a hold",
        ))),
    }
}

/// Applies one operation in a transaction of its own, with the call's audit record.
async fn mutate_alone(
    services: &Services,
    call: &CallContext,
    operation: &Operation,
) -> ServiceResult<OperationResult> {
    let schema = &call.auth.merchant()?.schema;
    for _ in 0..ATTEMPTS_MAX {
        let mut client = services.pool.get().await?;
        let transaction = begin_tenant_transaction(&mut client, schema).await?;
        match apply_operation(&transaction, operation, Utc::now()).await {
            Ok(result) => {
                note_operation(call, &result);
                if result.outcome() == Outcome::Applied {
                    crate::audit::record_in_transaction(&transaction, call).await?;
                    transaction.commit().await?;
                    services
                        .rollup_marks
                        .mark(call.auth.merchant()?.merchant_id);
                }
                return Ok(result);
            }
            Err(ApplyError::Retry) => continue,
            Err(ApplyError::Service(error)) => return Err(error),
        }
    }
    Err(retries_exhausted())
}

fn note_operation(call: &CallContext, result: &OperationResult) {
    match result {
        OperationResult::Ledger(result) => note_result(call, result),
        OperationResult::Hold(result) => {
            let mut notes = call.notes();
            notes
                .entry_ids
                .extend(result.created_entry_ids.iter().copied());
            notes.uid.get_or_insert_with(|| result.hold.uid.clone());
            if let Some(entry) = &result.entry {
                notes.points = Some(notes.points.unwrap_or(0).saturating_add(entry.delta));
            }
        }
    }
}

fn note_result(call: &CallContext, result: &MutationResult) {
    let mut notes = call.notes();
    notes
        .entry_ids
        .extend(result.created_entry_ids.iter().copied());
    notes.uid.get_or_insert_with(|| result.entry.uid.clone());
    notes.points = Some(notes.points.unwrap_or(0).saturating_add(result.entry.delta));
    if let (Some(amount), Some(currency)) = (result.entry.amount, &result.entry.currency) {
        notes.amount = Some(amount);
        notes.currency = Some(currency.clone());
        notes.rule_code = result.entry.rule_code.clone();
        notes.rule_version = result.entry.rule_version;
    }
}

/// The result of one batch item.
pub type ItemResult = ServiceResult<OperationResult>;

/// Applies up to 1,000 mutations in one transaction. Each item runs in a savepoint: with `atomic` the first
/// failure rolls everything back and is returned (naming the item); without, a failed item is rolled back alone
/// and reported in its place. Either way the call's audit record commits with the entries.
pub async fn batch(
    services: &Services,
    call: &CallContext,
    atomic: bool,
    items: &[ServiceResult<Operation>],
) -> ServiceResult<Vec<ItemResult>> {
    if items.is_empty() {
        return Err(ServiceError::invalid("operations must not be empty"));
    }
    if items.len() > BATCH_OPERATIONS_MAX {
        return Err(ServiceError::invalid(format!(
            "at most {BATCH_OPERATIONS_MAX} operations per batch"
        )));
    }
    if atomic
        && let Some((index, Err(error))) = items.iter().enumerate().find(|(_, item)| item.is_err())
    {
        return Err(ServiceError::new(
            error.code,
            format!("operations[{index}]: {}", error.message),
        ));
    }
    let schema = &call.auth.merchant()?.schema;
    let named_uids = items
        .iter()
        .filter_map(|item| item.as_ref().ok()?.uid())
        .map(|uid| uid.as_str().to_owned());
    let hold_ids: Vec<i64> = items
        .iter()
        .filter_map(|item| item.as_ref().ok()?.hold_id())
        .collect();
    'attempt: for _ in 0..ATTEMPTS_MAX {
        let mut client = services.pool.get().await?;
        let mut transaction = begin_tenant_transaction(&mut client, schema).await?;
        // The uids of the holds captured or voided are locked up front with the others, in the same order.
        let mut uids: Vec<String> = named_uids.clone().collect();
        if !hold_ids.is_empty() {
            uids.extend(store::holds::uids_of(&transaction, &hold_ids).await?);
        }
        uids.sort();
        uids.dedup();
        for uid in &uids {
            if let Err(error) = store::ledger::lock_account(&transaction, uid).await {
                match ApplyError::from(error) {
                    ApplyError::Retry => continue 'attempt,
                    ApplyError::Service(error) => return Err(error),
                }
            }
        }
        let now = Utc::now();
        let mut results = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let operation = match item {
                Ok(operation) => operation,
                Err(error) => {
                    results.push(Err(error.clone()));
                    continue;
                }
            };
            let savepoint = transaction.transaction().await?;
            match apply_operation(&savepoint, operation, now).await {
                Ok(result) => {
                    savepoint.commit().await?;
                    results.push(Ok(result));
                }
                Err(ApplyError::Retry) => continue 'attempt,
                Err(ApplyError::Service(error)) if atomic => {
                    return Err(ServiceError::new(
                        error.code,
                        format!("operations[{index}]: {}", error.message),
                    ));
                }
                Err(ApplyError::Service(error)) => {
                    // Dropping the savepoint rolls back this item only.
                    drop(savepoint);
                    results.push(Err(error));
                }
            }
        }
        for result in results.iter().flatten() {
            note_operation(call, result);
        }
        let wrote_anything = results
            .iter()
            .flatten()
            .any(|result| result.outcome() == Outcome::Applied);
        if wrote_anything {
            crate::audit::record_in_transaction(&transaction, call).await?;
            transaction.commit().await?;
            services
                .rollup_marks
                .mark(call.auth.merchant()?.merchant_id);
        }
        return Ok(results);
    }
    Err(retries_exhausted())
}
