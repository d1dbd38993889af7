//! The audit trail (SPEC §7): one record per call.
//!
//! The handler fills [`CallNotes`] as it goes. A mutation writes its record with [`record_in_transaction`] inside its
//! own transaction, so the change and its record commit or vanish together; every other call (reads, refusals,
//! replays) is recorded by the call layer after the response.

use rust_decimal::Decimal;

use crate::{error::ServiceResult, service::CallContext};

/// Facts about one call, filled in by its handler.
#[derive(Debug, Clone, Default)]
pub struct CallNotes {
    /// blake3 of the encoded request message, hex.
    pub request_digest: Option<String>,
    /// The error outcome, None while the call succeeds.
    pub outcome: Option<crate::error::ErrorCode>,
    pub succeeded: bool,
    /// Entries the call created.
    pub entry_ids: Vec<i64>,
    pub uid: Option<String>,
    /// Conversions: the money amount, its currency, the rule used and the resulting points.
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub rule_code: Option<String>,
    pub rule_version: Option<i32>,
    pub points: Option<i64>,
    /// Set when the handler wrote the audit record itself, in its own transaction.
    pub audited_in_transaction: bool,
}

/// Writes the call's record inside the mutation's transaction and marks the call audited, so the layer does not
/// write a second one. A merchant call goes to the merchant's `audit_records` (the tenant search path is set), a
/// platform call to `public.platform_audit_records`. Chaining happens later, when records are sealed.
pub async fn record_in_transaction(transaction: &tokio_postgres::Transaction<'_>, call: &CallContext) -> ServiceResult<()> {
    let notes = call.notes().clone();
    let table = if call.auth.merchant.is_some() { "audit_records" } else { "public.platform_audit_records" };
    let sql = format!(
        "INSERT INTO {table} (occurred_at, merchant_id, key_id, key_prefix, transport, method, request_id, \
         request_digest, outcome_code, outcome, latency_us, entry_ids, uid, amount, currency, rule_code, rule_version, \
         points) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 'OK', $9, $10, $11, $12, $13, $14, $15, $16)"
    );
    let latency_us = i64::try_from(call.started.elapsed().as_micros()).unwrap_or(i64::MAX);
    transaction
        .execute(
            &sql,
            &[
                &call.occurred_at,
                &call.auth.owner(),
                &call.auth.key_id,
                &call.auth.key_prefix,
                &call.transport.as_str(),
                &call.method,
                &call.request_id,
                &notes.request_digest.unwrap_or_default(),
                &latency_us,
                &notes.entry_ids,
                &notes.uid,
                &notes.amount,
                &notes.currency,
                &notes.rule_code,
                &notes.rule_version,
                &notes.points,
            ],
        )
        .await?;
    call.notes().audited_in_transaction = true;
    Ok(())
}
