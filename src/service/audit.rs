//! Reading the audit trail: list with filters, get one record, verify the chain.
//!
//! A merchant context (a merchant key, or an admin key with `x-merchant-id`) reads that merchant's audit; an
//! admin key without `x-merchant-id` reads the platform audit. The access table requires `audit:read` (or admin).

use chrono::{DateTime, Utc};

use super::Services;
use crate::{
    audit::chain::{self, Verification, VerifyScope},
    call::{CallContext, Chain, StoredRecord},
    domain::parse_uuid,
    error::{ServiceError, ServiceResult},
    pagination::{PageRequest, finish_page, time_id_cursor},
    store::{self, audit::ListFilter},
    tenancy::begin_tenant_transaction,
};

const METHOD_LENGTH_MAX: usize = 200;
const UID_LENGTH_MAX: usize = 128;
const LIST: &str = "audit-logs";

/// The filters of a list request, as received.
#[derive(Debug, Default)]
pub struct AuditQuery {
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub method: Option<String>,
    pub outcome_code: Option<i32>,
    pub key_id: Option<String>,
    pub uid: Option<String>,
    pub page_size: i32,
    pub page_token: String,
}

fn parse_bounded(
    field: &str,
    value: Option<String>,
    length_max: usize,
) -> ServiceResult<Option<String>> {
    value
        .map(|value| crate::domain::points::bounded_printable(field, &value, length_max))
        .transpose()
}

/// A record id as the API shows it (a decimal string).
pub fn parse_audit_id(field: &str, value: &str) -> ServiceResult<i64> {
    crate::domain::parse_record_id(value)
        .ok_or_else(|| ServiceError::invalid(format!("{field} must be an audit record id")))
}

/// Records matching the query, newest first, one page.
pub async fn list(
    services: &Services,
    call: &CallContext,
    query: AuditQuery,
) -> ServiceResult<(Vec<StoredRecord>, String)> {
    let page = PageRequest::parse(LIST, query.page_size, &query.page_token)?;
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from >= to
    {
        return Err(ServiceError::invalid("from must be before to"));
    }
    let before = page.time_id_position(|id| parse_audit_id("page_token", id))?;
    let filter = ListFilter {
        from: query.from,
        to: query.to,
        method: parse_bounded("method", query.method, METHOD_LENGTH_MAX)?,
        outcome_code: query.outcome_code,
        key_id: query
            .key_id
            .as_deref()
            .map(|key_id| parse_uuid("key_id", key_id))
            .transpose()?,
        uid: parse_bounded("uid", query.uid, UID_LENGTH_MAX)?,
        before,
    };
    let chain = Chain::of_auth(&call.auth);
    let mut client = services.pool.get().await?;
    let transaction = read_transaction(&mut client, &chain).await?;
    let rows = store::audit::list(&transaction, &chain, &filter, page.fetch_limit()).await?;
    transaction.commit().await?;
    Ok(finish_page(LIST, rows, &page, |row| {
        time_id_cursor(row.occurred_at, &row.audit_id.to_string())
    }))
}

/// One record of the caller's audit.
pub async fn get(
    services: &Services,
    call: &CallContext,
    audit_id: &str,
) -> ServiceResult<StoredRecord> {
    let audit_id = parse_audit_id("audit_id", audit_id)?;
    let chain = Chain::of_auth(&call.auth);
    let mut client = services.pool.get().await?;
    let transaction = read_transaction(&mut client, &chain).await?;
    let record = store::audit::get(&transaction, &chain, audit_id).await?;
    transaction.commit().await?;
    record.ok_or_else(|| ServiceError::not_found("audit record not found"))
}

/// Seals what is pending and verifies the caller's chain: between the given records (inclusive) when bounds are
/// given, else from the first record (`full`) or from where the last good verification ended.
pub async fn verify(
    services: &Services,
    call: &CallContext,
    from_audit_id: Option<&str>,
    to_audit_id: Option<&str>,
    full: bool,
) -> ServiceResult<Verification> {
    let from = from_audit_id
        .map(|id| parse_audit_id("from_audit_id", id))
        .transpose()?;
    let to = to_audit_id
        .map(|id| parse_audit_id("to_audit_id", id))
        .transpose()?;
    let scope = match (from, to, full) {
        (None, None, false) => VerifyScope::SinceLastVerified,
        (None, None, true) => VerifyScope::Full,
        (from, to, _) => VerifyScope::Range { from, to },
    };
    let chain = Chain::of_auth(&call.auth);
    let verification = chain::verify(&services.pool, &chain, scope).await?;
    if !verification.ok {
        tracing::warn!(
            chain = chain.name(),
            first_bad_audit_id = verification.first_bad_audit_id,
            reason = verification.reason.as_deref().unwrap_or_default(),
            "audit chain verification failed"
        );
    }
    Ok(verification)
}

/// A transaction that sees the chain's records: the merchant's schema only, or plain for the platform.
async fn read_transaction<'c>(
    client: &'c mut deadpool_postgres::Client,
    chain: &Chain,
) -> ServiceResult<deadpool_postgres::Transaction<'c>> {
    match chain {
        Chain::Merchant(schema) => begin_tenant_transaction(client, schema).await,
        Chain::Platform => Ok(client.transaction().await?),
    }
}
