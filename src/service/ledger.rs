//! The points ledger (SPEC §5): earn, spend, adjust, reverse, batch, reads, and the expiry sweep.
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

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Transaction;

use super::{CallContext, Services};
use crate::{
    domain::points::{EntryKind, IdempotencyKey, Points, Uid},
    error::{ErrorCode, ServiceError, ServiceResult},
    pagination::{PageRequest, finish_page},
    store::{
        self,
        ledger::{AccountCursor, EntryFilter, EntryRow, NewEntry},
    },
    tenancy::{TenantSchema, begin_tenant_transaction},
};

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
    /// The operation name stored with the idempotency record.
    pub fn operation(&self) -> &'static str {
        match self {
            MutationKind::Earn { .. } => "earn",
            MutationKind::Spend { .. } => "spend",
            MutationKind::Adjust { .. } => "adjust",
            MutationKind::Reverse { .. } => "reverse",
        }
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
    pub entry: EntryRow,
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

/// Applies one mutation in its own transaction, with its audit record.
pub async fn mutate(
    services: &Services,
    call: &CallContext,
    mutation: &Mutation,
) -> ServiceResult<MutationResult> {
    let schema = &call.auth.merchant()?.schema;
    for _ in 0..ATTEMPTS_MAX {
        let mut client = services.pool.get().await?;
        let transaction = begin_tenant_transaction(&mut client, schema).await?;
        match apply(&transaction, mutation, Utc::now()).await {
            Ok(result) => {
                note_result(call, &result);
                if result.outcome == Outcome::Applied {
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
pub type ItemResult = ServiceResult<MutationResult>;

/// Applies up to 1,000 mutations in one transaction. Each item runs in a savepoint: with `atomic` the first
/// failure rolls everything back and is returned (naming the item); without, a failed item is rolled back alone
/// and reported in its place. Either way the call's audit record commits with the entries.
pub async fn batch(
    services: &Services,
    call: &CallContext,
    atomic: bool,
    items: &[ServiceResult<Mutation>],
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
    let mut uids: Vec<&Uid> = items
        .iter()
        .filter_map(|item| item.as_ref().ok()?.kind.uid())
        .collect();
    uids.sort();
    uids.dedup();
    'attempt: for _ in 0..ATTEMPTS_MAX {
        let mut client = services.pool.get().await?;
        let mut transaction = begin_tenant_transaction(&mut client, schema).await?;
        for uid in &uids {
            if let Err(error) = store::ledger::lock_account(&transaction, uid.as_str()).await {
                match ApplyError::from(error) {
                    ApplyError::Retry => continue 'attempt,
                    ApplyError::Service(error) => return Err(error),
                }
            }
        }
        let now = Utc::now();
        let mut results = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let mutation = match item {
                Ok(mutation) => mutation,
                Err(error) => {
                    results.push(Err(error.clone()));
                    continue;
                }
            };
            let savepoint = transaction.transaction().await?;
            match apply(&savepoint, mutation, now).await {
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
            note_result(call, result);
        }
        let wrote_anything = results
            .iter()
            .flatten()
            .any(|result| result.outcome == Outcome::Applied);
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

/// Applies one mutation inside `transaction` (a transaction or a savepoint).
async fn apply(
    transaction: &Transaction<'_>,
    mutation: &Mutation,
    now: DateTime<Utc>,
) -> Result<MutationResult, ApplyError> {
    let target = match &mutation.kind {
        MutationKind::Reverse { entry_id, .. } => Some(
            store::ledger::get_entry(transaction, *entry_id)
                .await?
                .ok_or_else(|| ServiceError::not_found(format!("entry {entry_id} not found")))?,
        ),
        _ => None,
    };
    let uid = match (&mutation.kind, &target) {
        (_, Some(target)) => target.uid.clone(),
        (kind, None) => kind
            .uid()
            .map(|uid| uid.as_str().to_owned())
            .unwrap_or_default(),
    };
    let stored_balance = store::ledger::lock_account(transaction, &uid).await?;

    // Checked after the account lock, so a duplicate on the same uid sees the first one's committed record.
    let key = mutation.idempotency_key.as_str();
    // Two independent reads under the lock: issued together, tokio-postgres pipelines them in one round trip.
    let (record, expired) = tokio::join!(
        store::ledger::find_idempotency(transaction, key),
        store::ledger::expired_lots(transaction, &uid, now),
    );
    if let Some(record) = record? {
        if record.operation != mutation.kind.operation()
            || record.request_digest != mutation.request_digest
        {
            return Err(ServiceError::new(
                ErrorCode::IdempotencyConflict,
                "idempotency_key was already used for a different request",
            )
            .into());
        }
        let entry = store::ledger::get_entry(transaction, record.entry_id)
            .await?
            .ok_or_else(|| {
                ServiceError::internal(&std::io::Error::other(
                    "idempotency record without its entry",
                ))
            })?;
        return Ok(MutationResult {
            balance: entry.balance_after,
            entry,
            outcome: Outcome::Replayed,
            created_entry_ids: vec![],
        });
    }

    let mut ledger = Ledger {
        transaction,
        uid: &uid,
        balance: stored_balance,
        now,
        created: Vec::new(),
    };
    ledger.write_off(expired?).await?;
    let entry = match &mutation.kind {
        MutationKind::Earn {
            credit,
            reference,
            description,
            metadata,
            expires_at,
            ..
        } => {
            if expires_at.is_some_and(|at| at <= now) {
                return Err(ServiceError::invalid("expires_at must be in the future").into());
            }
            let (points, conversion) = match credit {
                Credit::Points(points) => (points.get(), None),
                Credit::Amount {
                    amount,
                    currency,
                    rule_code,
                } => {
                    let conversion = super::rules::convert(
                        &**transaction,
                        amount,
                        currency,
                        rule_code.as_deref(),
                        now,
                    )
                    .await?;
                    if conversion.points <= 0 {
                        return Err(ServiceError::invalid(format!(
                            "amount {} converts to 0 points under rule {} version {}",
                            conversion.amount, conversion.rule_code, conversion.rule_version
                        ))
                        .into());
                    }
                    (conversion.points, Some(conversion))
                }
            };
            let expires_at = expires_at.or_else(|| {
                conversion
                    .as_ref()?
                    .points_ttl_days
                    .map(|days| now + Duration::days(i64::from(days)))
            });
            let entry = NewEntry {
                kind: EntryKind::Earn.as_str(),
                reference: reference.as_deref(),
                description: description.as_deref(),
                metadata: Some(metadata),
                rule_code: conversion.as_ref().map(|c| c.rule_code.as_str()),
                rule_version: conversion.as_ref().map(|c| c.rule_version),
                amount: conversion.as_ref().map(|c| c.amount),
                currency: conversion.as_ref().map(|c| c.currency.as_str()),
                expires_at,
                ..NewEntry::default()
            };
            ledger.credit(points, entry, key).await?
        }
        MutationKind::Spend {
            points,
            reference,
            description,
            metadata,
            ..
        } => {
            let entry = NewEntry {
                kind: EntryKind::Spend.as_str(),
                reference: reference.as_deref(),
                description: description.as_deref(),
                metadata: Some(metadata),
                ..NewEntry::default()
            };
            ledger.debit(points.get(), entry, key).await?
        }
        MutationKind::Adjust { delta, reason, .. } => {
            let entry = NewEntry {
                kind: EntryKind::Adjust.as_str(),
                description: Some(reason.as_str()),
                ..NewEntry::default()
            };
            if *delta > 0 {
                ledger.credit(*delta, entry, key).await?
            } else {
                ledger.debit(-delta, entry, key).await?
            }
        }
        MutationKind::Reverse { reason, .. } => {
            let target = target
                .as_ref()
                .ok_or_else(|| ServiceError::invalid("nothing to reverse"))?;
            ledger.reverse(target, reason.as_deref(), key).await?
        }
    };
    if matches!(mutation.kind, MutationKind::Reverse { .. }) {
        // A reversal may give back points to lots that expired meanwhile: write them off at once.
        ledger.expire_due().await?;
    }
    // Independent writes: issued together, tokio-postgres pipelines them in one round trip.
    let (recorded, balanced) = tokio::join!(
        store::ledger::insert_idempotency(
            transaction,
            key,
            mutation.kind.operation(),
            &mutation.request_digest,
            entry.entry_id
        ),
        store::ledger::set_balance(transaction, &uid, ledger.balance),
    );
    recorded?;
    balanced?;
    Ok(MutationResult {
        balance: ledger.balance,
        entry,
        outcome: Outcome::Applied,
        created_entry_ids: ledger.created,
    })
}

/// One uid's ledger inside a transaction that holds its account lock.
struct Ledger<'a, 't> {
    transaction: &'a Transaction<'t>,
    uid: &'a str,
    balance: i64,
    now: DateTime<Utc>,
    created: Vec<i64>,
}

impl Ledger<'_, '_> {
    async fn append(
        &mut self,
        delta: i64,
        mut entry: NewEntry<'_>,
    ) -> Result<EntryRow, ApplyError> {
        let balance_after = self.balance.checked_add(delta).ok_or_else(|| {
            ServiceError::invalid("the balance would exceed the largest supported value")
        })?;
        entry.uid = self.uid;
        entry.delta = delta;
        entry.balance_after = balance_after;
        let row = store::ledger::insert_entry(self.transaction, &entry).await?;
        self.balance = balance_after;
        self.created.push(row.entry_id);
        Ok(row)
    }

    /// Writes one `expire` entry per expired lot remainder of this uid.
    async fn expire_due(&mut self) -> Result<(), ApplyError> {
        let lots = store::ledger::expired_lots(self.transaction, self.uid, self.now).await?;
        self.write_off(lots).await
    }

    /// Writes one `expire` entry per expired lot (already locked by the query that found it) and empties it.
    async fn write_off(&mut self, lots: Vec<store::ledger::LotRow>) -> Result<(), ApplyError> {
        for lot in lots {
            let entry = NewEntry {
                kind: EntryKind::Expire.as_str(),
                lot_id: Some(lot.lot_id),
                expires_at: lot.expires_at,
                ..NewEntry::default()
            };
            self.append(-lot.remaining, entry).await?;
            store::ledger::set_lot_remaining(self.transaction, lot.lot_id, 0).await?;
        }
        Ok(())
    }

    /// Adds points as a new lot.
    async fn credit(
        &mut self,
        points: i64,
        entry: NewEntry<'_>,
        key: &str,
    ) -> Result<EntryRow, ApplyError> {
        let expires_at = entry.expires_at;
        let row = self
            .append(
                points,
                NewEntry {
                    idempotency_key: Some(key),
                    ..entry
                },
            )
            .await?;
        store::ledger::insert_lot(self.transaction, self.uid, row.entry_id, points, expires_at)
            .await?;
        Ok(row)
    }

    /// Takes points from the lots that expire first (never-expiring last).
    async fn debit(
        &mut self,
        points: i64,
        entry: NewEntry<'_>,
        key: &str,
    ) -> Result<EntryRow, ApplyError> {
        if self.balance < points {
            return Err(insufficient(self.balance, points).into());
        }
        let row = self
            .append(
                -points,
                NewEntry {
                    idempotency_key: Some(key),
                    ..entry
                },
            )
            .await?;
        let mut needed = points;
        let (mut lot_ids, mut taken) = (Vec::new(), Vec::new());
        for lot in store::ledger::spendable_lots(self.transaction, self.uid, self.now).await? {
            if needed == 0 {
                break;
            }
            let take = needed.min(lot.remaining);
            store::ledger::set_lot_remaining(self.transaction, lot.lot_id, lot.remaining - take)
                .await?;
            lot_ids.push(lot.lot_id);
            taken.push(take);
            needed -= take;
        }
        if needed != 0 {
            // The balance said there were enough points but the lots disagree: never paper over that.
            return Err(ServiceError::internal(&std::io::Error::other(format!(
                "lots of uid hold {} points fewer than its balance",
                needed
            )))
            .into());
        }
        store::ledger::insert_consumptions(self.transaction, row.entry_id, &lot_ids, &taken)
            .await?;
        Ok(row)
    }

    /// Writes the opposite of `target`: a credit's lot is taken back whole, a debit's lots are given back.
    async fn reverse(
        &mut self,
        target: &EntryRow,
        reason: Option<&str>,
        key: &str,
    ) -> Result<EntryRow, ApplyError> {
        if target.kind == EntryKind::Reverse.as_str() || target.kind == EntryKind::Expire.as_str() {
            return Err(ServiceError::invalid(format!(
                "a {} entry cannot be reversed",
                target.kind
            ))
            .into());
        }
        if store::ledger::reversal_of(self.transaction, target.entry_id)
            .await?
            .is_some()
        {
            return Err(ServiceError::new(
                ErrorCode::AlreadyExists,
                format!("entry {} is already reversed", target.entry_id),
            )
            .into());
        }
        let entry = NewEntry {
            kind: EntryKind::Reverse.as_str(),
            idempotency_key: Some(key),
            description: reason,
            reverses_entry_id: Some(target.entry_id),
            ..NewEntry::default()
        };
        if target.delta > 0 {
            let lot = store::ledger::lot_of_entry(self.transaction, target.entry_id)
                .await?
                .ok_or_else(|| {
                    ServiceError::internal(&std::io::Error::other("credit entry without its lot"))
                })?;
            if lot.remaining < lot.points {
                return Err(ServiceError::new(
                    ErrorCode::InsufficientPoints,
                    format!(
                        "{} of the {} points of entry {} were already spent or expired",
                        lot.points - lot.remaining,
                        lot.points,
                        target.entry_id
                    ),
                )
                .into());
            }
            store::ledger::set_lot_remaining(self.transaction, lot.lot_id, 0).await?;
            self.append(-target.delta, entry).await
        } else {
            for (lot_id, points) in
                store::ledger::consumptions_of(self.transaction, target.entry_id).await?
            {
                store::ledger::restore_lot(self.transaction, lot_id, points).await?;
            }
            self.append(-target.delta, entry).await
        }
    }
}

fn insufficient(balance: i64, wanted: i64) -> ServiceError {
    ServiceError::new(
        ErrorCode::InsufficientPoints,
        format!("balance {balance} is less than the {wanted} points requested"),
    )
}

/// Parses an entry id: a positive integer.
pub fn parse_entry_id(value: &str) -> ServiceResult<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ServiceError::invalid("entry_id must be a positive integer"))
}

pub async fn get_entry(
    services: &Services,
    call: &CallContext,
    entry_id: &str,
) -> ServiceResult<EntryRow> {
    let entry_id = parse_entry_id(entry_id)?;
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &call.auth.merchant()?.schema).await?;
    let entry = store::ledger::get_entry(&transaction, entry_id).await?;
    transaction.commit().await?;
    entry.ok_or_else(|| ServiceError::not_found(format!("entry {entry_id} not found")))
}

/// A uid's balance and the points that expire within 30 days.
pub struct Account {
    pub uid: String,
    pub balance: i64,
    /// Points reserved by active holds: none until holds exist (SPEC §12).
    pub held: i64,
    /// `balance - held`.
    pub available: i64,
    pub expiring: Vec<(i64, DateTime<Utc>)>,
}

pub async fn get_account(
    services: &Services,
    call: &CallContext,
    uid: &str,
) -> ServiceResult<Account> {
    let uid = Uid::parse(uid)?;
    call.notes().uid = Some(uid.as_str().to_owned());
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &call.auth.merchant()?.schema).await?;
    let balance = store::ledger::current_balance(&transaction, uid.as_str()).await?;
    let until = Utc::now() + Duration::days(EXPIRING_WINDOW_DAYS);
    let expiring = store::ledger::expiring(&transaction, uid.as_str(), until).await?;
    transaction.commit().await?;
    Ok(Account {
        uid: uid.as_str().to_owned(),
        balance,
        held: 0,
        available: balance,
        expiring,
    })
}

/// The order of the account list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountOrder {
    /// By uid, in byte order.
    Uid,
    /// Largest stored balance first, ties by uid.
    BalanceDesc,
}

impl AccountOrder {
    /// Parses `uid` or `balance_desc`; empty means `uid`.
    pub fn parse(value: &str) -> ServiceResult<AccountOrder> {
        match value {
            "" | "uid" => Ok(AccountOrder::Uid),
            "balance_desc" => Ok(AccountOrder::BalanceDesc),
            _ => Err(ServiceError::invalid(
                "order must be \"uid\" or \"balance_desc\"",
            )),
        }
    }

    /// The page-token list name: a token of one order is refused by the other.
    fn list(self) -> &'static str {
        match self {
            AccountOrder::Uid => "accounts-by-uid",
            AccountOrder::BalanceDesc => "accounts-by-balance",
        }
    }
}

/// The account list request, as received.
pub struct ListAccounts<'a> {
    pub uid_prefix: Option<&'a str>,
    pub order: &'a str,
    pub page_size: i32,
    pub page_token: &'a str,
}

/// An account of the list, with what holds reserve (nothing until holds exist: SPEC §12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    pub uid: String,
    pub balance: i64,
    pub held: i64,
    pub available: i64,
    pub updated_at: DateTime<Utc>,
}

/// The smallest string above every string that starts with `prefix`, in code point (= UTF-8 byte) order; None
/// when there is none (a prefix of only `char::MAX`).
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// One page of the merchant's accounts.
pub async fn list_accounts(
    services: &Services,
    call: &CallContext,
    request: ListAccounts<'_>,
) -> ServiceResult<(Vec<AccountSummary>, String)> {
    let order = AccountOrder::parse(request.order)?;
    let prefix = request
        .uid_prefix
        .filter(|prefix| !prefix.is_empty())
        .map(Uid::parse)
        .transpose()
        .map_err(|_| ServiceError::invalid("uid_prefix must be 1 to 128 printable characters"))?;
    let page = PageRequest::parse(order.list(), request.page_size, request.page_token)?;
    let invalid_token = || ServiceError::invalid("invalid page_token");
    let cursor = match (&page.cursor, order) {
        (None, _) => None,
        (Some(uid), AccountOrder::Uid) => Some(AccountCursor::Uid(uid.clone())),
        (Some(cursor), AccountOrder::BalanceDesc) => {
            let (balance, uid) = cursor.split_once('/').ok_or_else(invalid_token)?;
            let balance = balance.parse::<i64>().map_err(|_| invalid_token())?;
            Some(AccountCursor::Balance(balance, uid.to_owned()))
        }
    };
    let low = prefix.as_ref().map(Uid::as_str);
    let high = low.and_then(prefix_successor);
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &call.auth.merchant()?.schema).await?;
    let rows = store::ledger::list_accounts(
        &transaction,
        low,
        high.as_deref(),
        order == AccountOrder::BalanceDesc,
        cursor.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    transaction.commit().await?;
    let (rows, token) = finish_page(order.list(), rows, &page, |(row, stored)| match order {
        AccountOrder::Uid => row.uid.clone(),
        AccountOrder::BalanceDesc => format!("{stored}/{}", row.uid),
    });
    let accounts = rows
        .into_iter()
        .map(|(row, _)| AccountSummary {
            uid: row.uid,
            balance: row.balance,
            held: 0,
            available: row.balance,
            updated_at: row.updated_at,
        })
        .collect();
    Ok((accounts, token))
}

/// Filters of [`list_entries`], as received.
pub struct ListEntries<'a> {
    pub uid: &'a str,
    pub kind: Option<&'a str>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub page_size: i32,
    pub page_token: &'a str,
}

pub async fn list_entries(
    services: &Services,
    call: &CallContext,
    request: ListEntries<'_>,
) -> ServiceResult<(Vec<EntryRow>, String)> {
    const LIST: &str = "entries";
    let uid = Uid::parse(request.uid)?;
    call.notes().uid = Some(uid.as_str().to_owned());
    let kind = request
        .kind
        .filter(|kind| !kind.is_empty())
        .map(EntryKind::parse)
        .transpose()?;
    if let (Some(from), Some(to)) = (request.from, request.to)
        && from >= to
    {
        return Err(ServiceError::invalid("from must be before to"));
    }
    let page = PageRequest::parse(LIST, request.page_size, request.page_token)?;
    let before = match &page.cursor {
        Some(cursor) => {
            let (at, id) = crate::pagination::parse_time_id_cursor(cursor)?;
            Some((
                at,
                id.parse::<i64>()
                    .map_err(|_| ServiceError::invalid("invalid page_token"))?,
            ))
        }
        None => None,
    };
    let filter = EntryFilter {
        kind: kind.map(EntryKind::as_str),
        from: request.from,
        to: request.to,
        before,
    };
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &call.auth.merchant()?.schema).await?;
    let rows = store::ledger::list_entries(&transaction, uid.as_str(), &filter, page.fetch_limit())
        .await?;
    transaction.commit().await?;
    Ok(finish_page(LIST, rows, &page, |row| {
        crate::pagination::time_id_cursor(row.created_at, &row.entry_id.to_string())
    }))
}

/// The method name of the sweeper's own audit records (it is not an RPC; its transport is `system`).
pub const SWEEP_AUDIT_METHOD: &str = "system/ExpirySweep";

/// Writes off expired lots of one tenant: at most `batch_size` lots' uids per call, skipping uids a request
/// holds (that request expires them itself). Safe with several instances sweeping at once. The entries it writes
/// are listed by one audit record of the sweep, committed with them, so they are covered by the audit chain like
/// every other entry. Returns the number of expire entries written.
pub async fn sweep_expired(
    services: &Services,
    merchant_id: uuid::Uuid,
    batch_size: i64,
) -> ServiceResult<usize> {
    let schema = TenantSchema::for_merchant(merchant_id);
    let started = std::time::Instant::now();
    let occurred_at = Utc::now();
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &schema).await?;
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
    let record = crate::audit::NewRecord {
        chain: crate::audit::Chain::Merchant(schema.clone()),
        occurred_at,
        merchant_id: Some(merchant_id),
        key_id: None,
        key_prefix: None,
        transport: "system",
        method: SWEEP_AUDIT_METHOD.to_owned(),
        request_id: uuid::Uuid::new_v4().to_string(),
        request_digest: String::new(),
        outcome: crate::audit::Outcome::OK,
        latency_us: crate::audit::elapsed_us(started),
        entry_ids: created.clone(),
        uid: None,
        amount: None,
        currency: None,
        rule_code: None,
        rule_version: None,
        points: Some(created.len() as i64),
        unless_committed: None,
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
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let merchants = async {
            let client = services.pool.get().await?;
            let version_latest = store::migrations::tenant_version_latest();
            Ok::<_, ServiceError>(store::audit::healthy_merchants(&**client, version_latest).await?)
        };
        let merchants = match merchants.await {
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
        }
    }
}
