//! The tamper-evident audit trail: list, get, verify (`audit:read`; an admin key without `x-merchant-id` reads the
//! platform audit).

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{NoQuery, Page, page_size, required};
use crate::convert::{deserialize_query_time, from_timestamp, to_timestamp_opt};
use crate::envelope::{ApiResult, Envelope, Success};
use crate::extract::{ApiPath, ApiQuery, CallContext};
use crate::pb;
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit_logs))
        .routes(routes!(verify_audit_log))
        .routes(routes!(get_audit_log))
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRecord {
    /// The record's id.
    #[schema(example = "a_01J9Z5C1PT")]
    pub audit_id: String,
    /// When the call happened.
    pub occurred_at: Option<DateTime<Utc>>,
    /// The merchant; null for platform records.
    pub merchant_id: Option<String>,
    /// The calling key; null when no valid key was given.
    pub key_id: Option<String>,
    /// The display prefix of the calling key.
    pub key_prefix: Option<String>,
    /// "grpc" or "rest".
    #[schema(example = "rest")]
    pub transport: String,
    /// The full gRPC method.
    #[schema(example = "/points.v1.PointsService/Earn")]
    pub method: String,
    /// The request id.
    pub request_id: String,
    /// blake3 of the request message, hex.
    pub request_digest: String,
    /// The SPEC code of the outcome, 0 for success.
    #[schema(example = 0)]
    pub outcome_code: i32,
    /// The outcome's name, "OK" for success.
    #[schema(example = "OK")]
    pub outcome: String,
    /// How long the call took, in microseconds.
    #[schema(example = 1830)]
    pub latency_us: i64,
    /// Ids of the entries the call created.
    pub entry_ids: Vec<String>,
    /// The uid the call was about.
    pub uid: Option<String>,
    /// Conversions: the input amount.
    pub amount: Option<String>,
    /// Conversions: the input currency.
    pub currency: Option<String>,
    /// Conversions: the rule used.
    pub rule_code: Option<String>,
    /// Conversions: the rule version used.
    pub rule_version: Option<i32>,
    /// Conversions: the resulting points.
    pub points: Option<i64>,
}

impl From<pb::AuditRecord> for AuditRecord {
    fn from(record: pb::AuditRecord) -> AuditRecord {
        AuditRecord {
            audit_id: record.audit_id,
            occurred_at: from_timestamp(record.occurred_at),
            merchant_id: record.merchant_id,
            key_id: record.key_id,
            key_prefix: record.key_prefix,
            transport: record.transport,
            method: record.method,
            request_id: record.request_id,
            request_digest: record.request_digest,
            outcome_code: record.outcome_code,
            outcome: record.outcome,
            latency_us: record.latency_us,
            entry_ids: record.entry_ids,
            uid: record.uid,
            amount: record.amount,
            currency: record.currency,
            rule_code: record.rule_code,
            rule_version: record.rule_version,
            points: record.points,
        }
    }
}

/// Filters and paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Records at or after this time (RFC 3339).
    #[serde(default, deserialize_with = "deserialize_query_time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<DateTime<Utc>>,
    /// Records before this time (RFC 3339).
    #[serde(default, deserialize_with = "deserialize_query_time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<DateTime<Utc>>,
    /// Only this gRPC method, e.g. `/points.v1.PointsService/Earn`.
    pub method: Option<String>,
    /// Only this outcome code (0 for success).
    pub outcome_code: Option<i32>,
    /// Only calls made with this key.
    pub key_id: Option<String>,
    /// Only calls about this uid.
    pub uid: Option<String>,
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// The range a verification covers.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// First record to check (inclusive); default the first.
    pub from_audit_id: Option<String>,
    /// Last record to check (inclusive); default the last.
    pub to_audit_id: Option<String>,
    /// Without bounds, a verification continues from where the last good one of this chain ended; `true`
    /// re-checks the whole chain from its first record.
    pub full: Option<bool>,
}

/// The outcome of a chain verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    /// True when every record checked matches its chain hash.
    #[schema(example = true)]
    pub ok: bool,
    /// How many records were checked.
    #[schema(example = 1204)]
    pub checked: i64,
    /// The first record that does not match; null when `ok`.
    pub first_bad_audit_id: Option<String>,
    /// Why that record failed, e.g. "record hash mismatch".
    pub reason: Option<String>,
    /// Sealed records in the chain.
    #[schema(example = 1204)]
    pub chain_length: i64,
    /// True when this pass walked from the first record (asked for with `full=true`, or because the remembered
    /// position could not be trusted).
    #[schema(example = false)]
    pub full: bool,
    /// When this verification ran.
    pub verified_at: DateTime<Utc>,
}

/// Query the audit log, newest first. Scope `audit:read`.
#[utoipa::path(
    get,
    path = "/api/v1/audit-logs",
    tag = "audit",
    operation_id = "list_audit_logs",
    params(AuditQuery),
    responses((status = 200, description = "One page of records.", body = Envelope<Page<AuditRecord>>))
)]
async fn list_audit_logs(
    State(state): State<AppState>,
    context: CallContext,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Page<AuditRecord>> {
    let request = pb::ListAuditLogsRequest {
        from: to_timestamp_opt(query.from),
        to: to_timestamp_opt(query.to),
        method: query.method,
        outcome_code: query.outcome_code,
        key_id: query.key_id,
        uid: query.uid,
        page_size: page_size(query.page_size)?,
        page_token: query.page_token.unwrap_or_default(),
    };
    let response = state
        .backend
        .audit
        .clone()
        .list_audit_logs(context.request(request))
        .await?
        .into_inner();
    Ok(Success::ok(Page::from_proto(
        response.items,
        response.next_page_token,
    )))
}

/// Recompute the blake3 chain and report the first record that does not match. Without bounds it continues from
/// where the last good verification of the chain ended (`full=true`: from the first record). Scope `audit:read`.
#[utoipa::path(
    get,
    path = "/api/v1/audit-logs/verify",
    tag = "audit",
    operation_id = "verify_audit_log",
    params(VerifyQuery),
    responses((status = 200, description = "The verification result.", body = Envelope<Verification>))
)]
async fn verify_audit_log(
    State(state): State<AppState>,
    context: CallContext,
    ApiQuery(query): ApiQuery<VerifyQuery>,
) -> ApiResult<Verification> {
    let request = pb::VerifyAuditLogRequest {
        from_audit_id: query.from_audit_id,
        to_audit_id: query.to_audit_id,
        full: query.full.unwrap_or(false),
    };
    let response = state
        .backend
        .audit
        .clone()
        .verify_audit_log(context.request(request))
        .await?
        .into_inner();
    Ok(Success::ok(Verification {
        ok: response.ok,
        checked: response.checked,
        first_bad_audit_id: response.first_bad_audit_id,
        reason: response.reason,
        chain_length: response.chain_length,
        full: response.full,
        verified_at: required(from_timestamp(response.verified_at), "verified_at")?,
    }))
}

/// Get one audit record. Scope `audit:read`.
#[utoipa::path(
    get,
    path = "/api/v1/audit-logs/{audit_id}",
    tag = "audit",
    operation_id = "get_audit_log",
    params(("audit_id" = String, Path, description = "The record's id.")),
    responses((status = 200, description = "The record.", body = Envelope<AuditRecord>))
)]
async fn get_audit_log(
    State(state): State<AppState>,
    context: CallContext,
    ApiQuery(NoQuery {}): ApiQuery<NoQuery>,
    ApiPath(audit_id): ApiPath<String>,
) -> ApiResult<AuditRecord> {
    let request = pb::GetAuditLogRequest { audit_id };
    let record = state
        .backend
        .audit
        .clone()
        .get_audit_log(context.request(request))
        .await?
        .into_inner();
    Ok(Success::ok(record.into()))
}
