//! Applying one mutation inside a transaction that will hold its uid's account lock: the operations (credit,
//! debit, reverse) over lots, and the write-off of expired lots before a balance changes.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Transaction;

use super::{ApplyError, Credit, Mutation, MutationKind, MutationResult, Outcome};
use crate::{
    domain::points::{Entry, EntryKind},
    error::{ErrorCode, ServiceError},
    store::{
        self,
        ledger::{IdempotencyRow, NewEntry, Recorded},
    },
};

/// Applies one mutation inside `transaction` (a transaction or a savepoint).
pub(super) async fn apply(
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
    // Independent reads under the lock: issued together, tokio-postgres pipelines them in one round trip.
    let (record, expired, held) = tokio::join!(
        store::ledger::find_idempotency(transaction, key),
        store::ledger::expired_lots(transaction, &uid, now),
        async {
            // Only a debit (or a reversal, which may take a credit back) is limited by what holds reserve.
            match &mutation.kind {
                MutationKind::Earn { .. } => Ok(0),
                MutationKind::Adjust { delta, .. } if *delta > 0 => Ok(0),
                _ => store::holds::held_points(transaction, &uid, now).await,
            }
        },
    );
    if let Some(record) = record? {
        check_replay(&record, mutation.kind.operation(), &mutation.request_digest)?;
        let entry = match record.entry_id {
            Some(entry_id) => store::ledger::get_entry(transaction, entry_id).await?,
            None => None,
        }
        .ok_or_else(|| broken("idempotency record without its entry"))?;
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
        held: held?,
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
                    let conversion = crate::service::rules::convert(
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
                reference: reference.as_deref(),
                description: description.as_deref(),
                metadata: Some(metadata),
                rule_code: conversion.as_ref().map(|c| c.rule_code.as_str()),
                rule_version: conversion.as_ref().map(|c| c.rule_version),
                amount: conversion.as_ref().map(|c| c.amount),
                currency: conversion.as_ref().map(|c| c.currency.as_str()),
                expires_at,
                ..NewEntry::of(EntryKind::Earn)
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
                reference: reference.as_deref(),
                description: description.as_deref(),
                metadata: Some(metadata),
                ..NewEntry::of(EntryKind::Spend)
            };
            ledger.debit(points.get(), entry, key).await?
        }
        MutationKind::Adjust { delta, reason, .. } => {
            let entry = NewEntry {
                description: Some(reason.as_str()),
                ..NewEntry::of(EntryKind::Adjust)
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
            Recorded {
                entry_id: Some(entry.entry_id),
                hold_id: None,
            },
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
pub(super) struct Ledger<'a, 't> {
    pub(super) transaction: &'a Transaction<'t>,
    pub(super) uid: &'a str,
    pub(super) balance: i64,
    /// Points reserved by the uid's active holds: a debit may not take them (a capture sets 0: it takes its own).
    pub(super) held: i64,
    pub(super) now: DateTime<Utc>,
    pub(super) created: Vec<i64>,
}

impl Ledger<'_, '_> {
    async fn append(&mut self, delta: i64, mut entry: NewEntry<'_>) -> Result<Entry, ApplyError> {
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

    /// What a debit may take: the balance less what active holds reserve.
    fn available(&self) -> i64 {
        self.balance.saturating_sub(self.held)
    }

    /// Writes one `expire` entry per expired lot remainder of this uid.
    pub(super) async fn expire_due(&mut self) -> Result<(), ApplyError> {
        let lots = store::ledger::expired_lots(self.transaction, self.uid, self.now).await?;
        self.write_off(lots).await
    }

    /// Writes one `expire` entry per expired lot (already locked by the query that found it) and empties it.
    async fn write_off(&mut self, lots: Vec<store::ledger::LotRow>) -> Result<(), ApplyError> {
        for lot in lots {
            let entry = NewEntry {
                lot_id: Some(lot.lot_id),
                expires_at: lot.expires_at,
                ..NewEntry::of(EntryKind::Expire)
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
    ) -> Result<Entry, ApplyError> {
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
    pub(super) async fn debit(
        &mut self,
        points: i64,
        entry: NewEntry<'_>,
        key: &str,
    ) -> Result<Entry, ApplyError> {
        if self.available() < points {
            return Err(insufficient(self.available(), points).into());
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
        target: &Entry,
        reason: Option<&str>,
        key: &str,
    ) -> Result<Entry, ApplyError> {
        if matches!(target.kind, EntryKind::Reverse | EntryKind::Expire) {
            return Err(ServiceError::invalid(format!(
                "a {} entry cannot be reversed",
                target.kind.as_str()
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
            idempotency_key: Some(key),
            description: reason,
            reverses_entry_id: Some(target.entry_id),
            ..NewEntry::of(EntryKind::Reverse)
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
            if self.available() < target.delta {
                return Err(ServiceError::new(
                    ErrorCode::InsufficientPoints,
                    format!(
                        "{} of the {} points of entry {} are reserved by holds",
                        target.delta - self.available().max(0),
                        target.delta,
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

/// INSUFFICIENT_POINTS for a debit of `wanted` when only `available` points (the balance less held points) are
/// there.
pub(super) fn insufficient(available: i64, wanted: i64) -> ServiceError {
    ServiceError::new(
        ErrorCode::InsufficientPoints,
        format!("available balance {available} is less than the {wanted} points requested"),
    )
}

/// Same key: the same operation with the same request is a replay (Ok); anything else is IDEMPOTENCY_CONFLICT.
pub(super) fn check_replay(
    record: &IdempotencyRow,
    operation: &str,
    request_digest: &str,
) -> Result<(), ServiceError> {
    if record.operation != operation || record.request_digest != request_digest {
        return Err(ServiceError::new(
            ErrorCode::IdempotencyConflict,
            "idempotency_key was already used for a different request",
        ));
    }
    Ok(())
}

/// An internal fault: stored data that contradicts itself.
pub(super) fn broken(what: &'static str) -> ServiceError {
    ServiceError::internal(&std::io::Error::other(what))
}
