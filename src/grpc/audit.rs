//! `points.v1.AuditService`: list, get and verify the audit trail of the caller's merchant, or the platform's.

use tonic::{Request, Response, Status};

use super::{Handlers, handle, parse_timestamp, timestamp};
use crate::{
    call::StoredRecord,
    pb::{self, audit_service_server::AuditService},
    service::audit::{self, AuditQuery},
};

/// A record as the API shows it (ids as decimal strings).
pub fn audit_record_message(record: StoredRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        audit_id: record.audit_id.to_string(),
        occurred_at: Some(timestamp(record.occurred_at)),
        merchant_id: record.merchant_id.map(|id| id.to_string()),
        key_id: record.key_id.map(|id| id.to_string()),
        key_prefix: record.key_prefix,
        transport: record.transport,
        method: record.method,
        request_id: record.request_id,
        request_digest: record.request_digest,
        outcome_code: record.outcome_code,
        outcome: record.outcome,
        latency_us: record.latency_us,
        entry_ids: record.entry_ids.iter().map(i64::to_string).collect(),
        uid: record.uid,
        amount: record.amount,
        currency: record.currency,
        rule_code: record.rule_code,
        rule_version: record.rule_version,
        points: record.points,
    }
}

#[tonic::async_trait]
impl AuditService for Handlers {
    async fn list_audit_logs(
        &self,
        request: Request<pb::ListAuditLogsRequest>,
    ) -> Result<Response<pb::ListAuditLogsResponse>, Status> {
        handle(request, |call, message| async move {
            let query = AuditQuery {
                from: parse_timestamp("from", message.from)?,
                to: parse_timestamp("to", message.to)?,
                method: message.method,
                outcome_code: message.outcome_code,
                key_id: message.key_id,
                uid: message.uid,
                page_size: message.page_size,
                page_token: message.page_token,
            };
            let (records, next_page_token) = audit::list(&self.services, &call, query).await?;
            Ok(pb::ListAuditLogsResponse {
                items: records.into_iter().map(audit_record_message).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn get_audit_log(
        &self,
        request: Request<pb::GetAuditLogRequest>,
    ) -> Result<Response<pb::AuditRecord>, Status> {
        handle(request, |call, message| async move {
            Ok(audit_record_message(
                audit::get(&self.services, &call, &message.audit_id).await?,
            ))
        })
        .await
    }

    async fn verify_audit_log(
        &self,
        request: Request<pb::VerifyAuditLogRequest>,
    ) -> Result<Response<pb::VerifyAuditLogResponse>, Status> {
        handle(request, |call, message| async move {
            let verification = audit::verify(
                &self.services,
                &call,
                message.from_audit_id.as_deref(),
                message.to_audit_id.as_deref(),
                message.full,
            )
            .await?;
            Ok(pb::VerifyAuditLogResponse {
                ok: verification.ok,
                checked: verification.checked,
                first_bad_audit_id: verification.first_bad_audit_id.map(|id| id.to_string()),
                reason: verification.reason,
                chain_length: verification.chain_length,
                full: verification.full,
                verified_at: Some(timestamp(verification.verified_at)),
            })
        })
        .await
    }
}
