//! Holds (SPEC §12): reserve points now, capture (a spend) or void later.
//!
//! A hold never changes the balance; it lowers `available = balance - Σ points of the uid's active, unexpired
//! holds`. The rules that keep that sum honest are those of every other mutation:
//! * each operation locks the uid's account row first (a capture or void finds the uid from the hold, whose uid
//!   never changes), so creating a hold, capturing it and every debit of the uid run one after another: a debit
//!   or a new hold checks `available` while no hold of the uid can appear, go or be captured;
//! * the hold row itself is locked (`FOR UPDATE`) before its status is checked, so a capture and a void of the
//!   same hold cannot both succeed, nor can a capture and the sweeper's close;
//! * expiry needs no writer: readers and writers compare `expires_at` with now, so an expired hold stops counting
//!   at once. The sweeper ([`sweep_expired_holds`]) only records what is already so (status `expired`, closed when
//!   it expired), skipping locked rows, which makes it safe with several instances and never a source of a
//!   changed sum;
//! * a capture is a debit like a spend: expired lots are written off first, then it takes from the lots that
//!   expire first. Its own hold's points are not counted as held against it; other holds are not checked either:
//!   when expiry has eaten into reserved points, the first hold to be captured gets what is left.
//!
//! Idempotency records of hold operations share the merchant's key space with the ledger's: a key used by an earn
//! conflicts with a hold, and the reverse. A replay answers the hold and the account as they are now.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Transaction;

use super::apply::{Ledger, broken, check_replay};
use super::{Account, ApplyError, EXPIRING_WINDOW_DAYS, Outcome, account_in, available};
use crate::{
    call::CallContext,
    domain::{
        holds::{Hold, HoldStatus, hold_expiry, parse_hold_id},
        points::{Entry, EntryKind, IdempotencyKey, Points, Uid},
    },
    error::{ErrorCode, ServiceError, ServiceResult},
    pagination::{PageRequest, finish_page},
    service::Services,
    store::{
        self,
        holds::NewHold,
        ledger::{IdempotencyRow, NewEntry, Recorded},
    },
    tenancy::begin_tenant_transaction,
};

/// The method name of the hold sweeper's audit records (not an RPC; its transport is `system`).
pub const HOLD_SWEEP_AUDIT_METHOD: &str = "system/HoldExpirySweep";

/// A parsed hold operation. `request_digest` identifies the request for idempotency.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldMutation {
    pub idempotency_key: IdempotencyKey,
    pub request_digest: String,
    pub kind: HoldOperation,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HoldOperation {
    Create {
        uid: Uid,
        points: Points,
        expires_at: Option<DateTime<Utc>>,
        reference: Option<String>,
        description: Option<String>,
        metadata: serde_json::Value,
    },
    /// `points` None: the whole hold.
    Capture {
        hold_id: i64,
        points: Option<Points>,
    },
    Void {
        hold_id: i64,
    },
}

impl HoldOperation {
    /// The operation name stored with the idempotency record.
    pub fn operation(&self) -> &'static str {
        match self {
            HoldOperation::Create { .. } => "hold",
            HoldOperation::Capture { .. } => "capture",
            HoldOperation::Void { .. } => "void",
        }
    }

    /// The hold an operation on an existing hold concerns.
    pub fn hold_id(&self) -> Option<i64> {
        match self {
            HoldOperation::Create { .. } => None,
            HoldOperation::Capture { hold_id, .. } | HoldOperation::Void { hold_id } => {
                Some(*hold_id)
            }
        }
    }
}

/// The result of a hold operation: the hold, the uid's account after it, and for a capture its spend entry.
#[derive(Debug, Clone)]
pub struct HoldResult {
    pub hold: Hold,
    pub account: Account,
    pub entry: Option<Entry>,
    pub outcome: Outcome,
    /// Every entry this call wrote (a capture: expire entries written on the way, then the spend).
    pub created_entry_ids: Vec<i64>,
}

fn not_found(hold_id: i64) -> ServiceError {
    ServiceError::not_found(format!("hold {hold_id} not found"))
}

/// Applies one hold operation inside `transaction` (a transaction or a savepoint). Under the account lock, the
/// reads each step needs are issued together (tokio-postgres pipelines them in one round trip), since every
/// request on the uid waits for this lock.
pub(super) async fn apply_hold(
    transaction: &Transaction<'_>,
    mutation: &HoldMutation,
    now: DateTime<Utc>,
) -> Result<HoldResult, ApplyError> {
    let uid = match (&mutation.kind, mutation.kind.hold_id()) {
        (HoldOperation::Create { uid, .. }, _) => uid.as_str().to_owned(),
        (_, Some(hold_id)) => {
            store::holds::get_hold(transaction, hold_id, false)
                .await?
                .ok_or_else(|| not_found(hold_id))?
                .uid
        }
        (_, None) => return Err(broken("an operation on a hold without a hold id").into()),
    };
    let stored_balance = store::ledger::lock_account(transaction, &uid).await?;
    let key = mutation.idempotency_key.as_str();
    let (record, account, hold) = tokio::join!(
        store::ledger::find_idempotency(transaction, key),
        account_in(transaction, &uid, now),
        async {
            match mutation.kind.hold_id() {
                Some(hold_id) => store::holds::get_hold(transaction, hold_id, true).await,
                None => Ok(None),
            }
        },
    );
    let mut account = account?;
    if let Some(record) = record? {
        return replay(transaction, mutation, &record, account, now).await;
    }
    let hold = hold?;
    let active = |hold: Option<Hold>| -> Result<Hold, ApplyError> {
        let hold = hold.ok_or_else(|| broken("a hold vanished under its account lock"))?;
        let seen = hold.clone().as_of(now);
        if seen.status != HoldStatus::Active {
            return Err(ServiceError::new(
                ErrorCode::HoldNotActive,
                format!("hold {} is {}", hold.hold_id, seen.status.as_str()),
            )
            .into());
        }
        Ok(hold)
    };

    let (hold, entry, created) = match &mutation.kind {
        HoldOperation::Create {
            points,
            expires_at,
            reference,
            description,
            metadata,
            ..
        } => {
            let expires_at = hold_expiry(*expires_at, now)?;
            if account.available < points.get() {
                return Err(super::apply::insufficient(account.available, points.get()).into());
            }
            let hold = NewHold {
                uid: &uid,
                points: points.get(),
                expires_at,
                reference: reference.as_deref(),
                description: description.as_deref(),
                metadata,
                idempotency_key: key,
            };
            let hold = store::holds::insert_hold(transaction, &hold).await?;
            account.held += hold.points;
            (hold, None, Vec::new())
        }
        HoldOperation::Capture { points, .. } => {
            let hold = active(hold)?;
            let points = points.map_or(hold.points, Points::get);
            if points > hold.points {
                return Err(ServiceError::invalid(format!(
                    "points {points} exceed the {} points held",
                    hold.points
                ))
                .into());
            }
            let mut ledger = Ledger {
                transaction,
                uid: &uid,
                balance: stored_balance,
                held: 0,
                now,
                created: Vec::new(),
            };
            ledger.expire_due().await?;
            let spend = NewEntry {
                reference: hold.reference.as_deref(),
                description: hold.description.as_deref(),
                metadata: Some(&hold.metadata),
                hold_id: Some(hold.hold_id),
                ..NewEntry::of(EntryKind::Spend)
            };
            let entry = ledger.debit(points, spend, key).await?;
            let captured = Some((entry.entry_id, points));
            let (balanced, closed, expiring) = tokio::join!(
                store::ledger::set_balance(transaction, &uid, ledger.balance),
                store::holds::close_hold(
                    transaction,
                    hold.hold_id,
                    HoldStatus::Captured,
                    captured,
                    now
                ),
                store::ledger::expiring(
                    transaction,
                    &uid,
                    now + Duration::days(EXPIRING_WINDOW_DAYS)
                ),
            );
            balanced?;
            account.balance = ledger.balance;
            account.held -= hold.points;
            account.expiring = expiring?;
            (closed?, Some(entry), ledger.created)
        }
        HoldOperation::Void { .. } => {
            let hold = active(hold)?;
            let hold =
                store::holds::close_hold(transaction, hold.hold_id, HoldStatus::Voided, None, now)
                    .await?;
            account.held -= hold.points;
            (hold, None, Vec::new())
        }
    };
    account.available = available(account.balance, account.held);
    let recorded = Recorded {
        entry_id: entry.as_ref().map(|entry| entry.entry_id),
        hold_id: Some(hold.hold_id),
    };
    store::ledger::insert_idempotency(
        transaction,
        key,
        mutation.kind.operation(),
        &mutation.request_digest,
        recorded,
    )
    .await?;
    Ok(HoldResult {
        account,
        hold,
        entry,
        outcome: Outcome::Applied,
        created_entry_ids: created,
    })
}

/// The stored result of an earlier request with the same key: the hold (as it is now), its capture entry, and the
/// account now. IDEMPOTENCY_CONFLICT when the key was used for a different request.
async fn replay(
    transaction: &Transaction<'_>,
    mutation: &HoldMutation,
    record: &IdempotencyRow,
    account: Account,
    now: DateTime<Utc>,
) -> Result<HoldResult, ApplyError> {
    check_replay(record, mutation.kind.operation(), &mutation.request_digest)?;
    let hold_id = record
        .hold_id
        .ok_or_else(|| broken("hold idempotency record without its hold"))?;
    let (hold, entry) = tokio::join!(store::holds::get_hold(transaction, hold_id, false), async {
        match record.entry_id {
            Some(entry_id) => store::ledger::get_entry(transaction, entry_id).await,
            None => Ok(None),
        }
    },);
    let hold = hold?.ok_or_else(|| broken("hold idempotency record names a missing hold"))?;
    Ok(HoldResult {
        account,
        hold: hold.as_of(now),
        entry: entry?,
        outcome: Outcome::Replayed,
        created_entry_ids: Vec::new(),
    })
}

/// Creates, captures or voids a hold in a transaction of its own, with its audit record.
pub async fn mutate_hold(
    services: &Services,
    call: &CallContext,
    mutation: &HoldMutation,
) -> ServiceResult<HoldResult> {
    let operation = super::Operation::Hold(mutation.clone());
    match super::mutate_alone(services, call, &operation).await? {
        super::OperationResult::Hold(result) => Ok(result),
        super::OperationResult::Ledger(_) => Err(broken("a hold operation answered an entry")),
    }
}

pub async fn get_hold(
    services: &Services,
    call: &CallContext,
    hold_id: &str,
) -> ServiceResult<Hold> {
    let hold_id = parse_hold_id(hold_id)?;
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &call.auth.merchant()?.schema).await?;
    let hold = store::holds::get_hold(&transaction, hold_id, false).await?;
    transaction.commit().await?;
    let hold = hold.ok_or_else(|| not_found(hold_id))?;
    call.notes().uid = Some(hold.uid.clone());
    Ok(hold.as_of(Utc::now()))
}

/// One page of a uid's holds, newest first.
pub async fn list_holds(
    services: &Services,
    call: &CallContext,
    uid: &str,
    page_size: i32,
    page_token: &str,
) -> ServiceResult<(Vec<Hold>, String)> {
    const LIST: &str = "holds";
    let uid = Uid::parse(uid)?;
    call.notes().uid = Some(uid.as_str().to_owned());
    let page = PageRequest::parse(LIST, page_size, page_token)?;
    let before = page.time_id_position(|id| {
        id.parse::<i64>()
            .map_err(|_| ServiceError::invalid("invalid page_token"))
    })?;
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &call.auth.merchant()?.schema).await?;
    let rows =
        store::holds::list_holds(&transaction, uid.as_str(), before, page.fetch_limit()).await?;
    transaction.commit().await?;
    let now = Utc::now();
    let (rows, token) = finish_page(LIST, rows, &page, |row| {
        crate::pagination::time_id_cursor(row.created_at, &row.hold_id.to_string())
    });
    Ok((
        rows.into_iter().map(|hold| hold.as_of(now)).collect(),
        token,
    ))
}

/// Closes holds of one tenant that have expired (at most `batch_size`), with one audit record of the sweep
/// committed with them. Returns how many it closed.
pub async fn sweep_expired_holds(
    services: &Services,
    merchant_id: uuid::Uuid,
    batch_size: i64,
) -> ServiceResult<usize> {
    let sweep = super::expiry::Sweep::start(merchant_id);
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &sweep.schema).await?;
    let closed = store::holds::close_expired_holds(&transaction, batch_size).await?;
    if closed.is_empty() {
        return Ok(0);
    }
    let released: i64 = closed.iter().map(|(_, points)| points).sum();
    let record = crate::call::NewRecord {
        points: Some(released),
        ..sweep.record(HOLD_SWEEP_AUDIT_METHOD)
    };
    store::audit::insert_one(&*transaction, &record).await?;
    transaction.commit().await?;
    Ok(closed.len())
}
