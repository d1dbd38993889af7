//! The tamper-evident audit trail: list, get, verify (`audit:read`; an admin key without `x-merchant-id` reads the
//! platform audit).

use super::prelude::*;

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
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub method: Option<String>,
    /// Only this outcome code (0 for success).
    pub outcome_code: Option<i32>,
    /// Only calls made with this key.
    #[param(value_type = Option<uuid::Uuid>)]
    pub key_id: Option<String>,
    /// Only calls about this uid.
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
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
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub from_audit_id: Option<String>,
    /// Last record to check (inclusive); default the last.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
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

reply_from!(AuditRecord => pb::AuditRecord);
reply_page!(AuditRecord => pb::ListAuditLogsResponse);

impl TryFrom<AuditQuery> for pb::ListAuditLogsRequest {
    type Error = ApiError;

    fn try_from(query: AuditQuery) -> Result<pb::ListAuditLogsRequest, ApiError> {
        Ok(pb::ListAuditLogsRequest {
            from: to_timestamp_opt(query.from),
            to: to_timestamp_opt(query.to),
            method: query.method,
            outcome_code: query.outcome_code,
            key_id: query.key_id,
            uid: query.uid,
            page_size: page_size(query.page_size)?,
            page_token: query.page_token.unwrap_or_default(),
        })
    }
}

impl From<VerifyQuery> for pb::VerifyAuditLogRequest {
    fn from(query: VerifyQuery) -> pb::VerifyAuditLogRequest {
        pb::VerifyAuditLogRequest {
            from_audit_id: query.from_audit_id,
            to_audit_id: query.to_audit_id,
            full: query.full.unwrap_or(false),
        }
    }
}

impl Reply<pb::VerifyAuditLogResponse> for Verification {
    fn reply(response: pb::VerifyAuditLogResponse) -> Result<Verification, ApiError> {
        Ok(Verification {
            ok: response.ok,
            checked: response.checked,
            first_bad_audit_id: response.first_bad_audit_id,
            reason: response.reason,
            chain_length: response.chain_length,
            full: response.full,
            verified_at: required(from_timestamp(response.verified_at), "verified_at")?,
        })
    }
}

impl From<With<String, NoInput>> for pb::GetAuditLogRequest {
    fn from(With(audit_id, NoInput): With<String, NoInput>) -> pb::GetAuditLogRequest {
        pb::GetAuditLogRequest { audit_id }
    }
}

forward! {
    /// Query the audit log, newest first. Scope `audit:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/audit-logs",
        tag = "audit",
        operation_id = "list_audit_logs",
        params(AuditQuery),
        responses((status = 200, description = "One page of records.", body = Envelope<Page<AuditRecord>>))
    )]
    fn list_audit_logs(query: AuditQuery) -> Page<AuditRecord> = audit.list_audit_logs;
}

forward! {
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
    fn verify_audit_log(query: VerifyQuery) -> Verification = audit.verify_audit_log;
}

forward! {
    /// Get one audit record. Scope `audit:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/audit-logs/{audit_id}",
        tag = "audit",
        operation_id = "get_audit_log",
        params(("audit_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "The record's id.")),
        responses((status = 200, description = "The record.", body = Envelope<AuditRecord>))
    )]
    fn get_audit_log(path: String) -> AuditRecord = audit.get_audit_log;
}
