//! `points.v1.AuditService`: not served yet; every method answers UNIMPLEMENTED until the audit trail (issue #5) lands.

use tonic::{Request, Response, Status};

use super::Handlers;
use crate::pb::{self, audit_service_server::AuditService};

fn not_yet() -> Status {
    Status::unimplemented("the audit trail (issue #5) is not implemented yet")
}

#[tonic::async_trait]
impl AuditService for Handlers {
    async fn list_audit_logs(&self, _request: Request<pb::ListAuditLogsRequest>) -> Result<Response<pb::ListAuditLogsResponse>, Status> {
        Err(not_yet())
    }

    async fn get_audit_log(&self, _request: Request<pb::GetAuditLogRequest>) -> Result<Response<pb::AuditRecord>, Status> {
        Err(not_yet())
    }

    async fn verify_audit_log(&self, _request: Request<pb::VerifyAuditLogRequest>) -> Result<Response<pb::VerifyAuditLogResponse>, Status> {
        Err(not_yet())
    }

}
