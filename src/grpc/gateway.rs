//! `points.gateway.v1.GatewayService`: the REST gateway's report of the requests it refused itself (malformed JSON,
//! unknown route or field, oversize body, 405, timeout). Each refusal goes through the same per-address budget as
//! the calls the auth layer refuses (`auth::sources`): within it, a platform audit record of its own; over it, a
//! count in the address's summary record. So a flood of bad REST requests adds a bounded number of rows too.
//!
//! The service is answered only for loopback peers (the in-process gateway, or one beside the server): the same
//! peers whose forwarded client address the auth layer believes.

use std::net::IpAddr;

use tonic::{Request, Response, Status};

use super::Handlers;
use crate::{
    auth::sources::Recording,
    call::{Chain, NewRecord, Outcome, recorded_method},
    error::{ErrorCode, ServiceError},
    pb::gateway::{
        RecordRefusalsRequest, RecordRefusalsResponse, gateway_service_server::GatewayService,
    },
};

/// Refusals accepted in one report (the gateway sends at most this many; more is a misbehaving peer).
pub const REFUSALS_PER_REPORT_MAX: usize = 1000;
/// Longest request id kept in a refusal's record (the gateway's own ids are far shorter).
const REQUEST_ID_LENGTH_MAX: usize = 128;

#[tonic::async_trait]
impl GatewayService for Handlers {
    async fn record_refusals(
        &self,
        request: Request<RecordRefusalsRequest>,
    ) -> Result<Response<RecordRefusalsResponse>, Status> {
        let from_loopback = request
            .remote_addr()
            .is_some_and(|address| address.ip().is_loopback());
        if !from_loopback {
            return Err(ServiceError::permission_denied(
                "only the REST gateway beside the server may report refusals",
            )
            .into_status());
        }
        let report = request.into_inner();
        if report.refusals.len() > REFUSALS_PER_REPORT_MAX {
            return Err(ServiceError::invalid(format!(
                "at most {REFUSALS_PER_REPORT_MAX} refusals per report"
            ))
            .into_status());
        }
        let sources = &self.services.sources;
        let mut answer = RecordRefusalsResponse::default();
        for count in &report.overflow {
            if let Ok(address) = count.client_addr.parse::<IpAddr>() {
                sources.add_summarised(address, count.count);
            }
        }
        for refusal in report.refusals {
            let Ok(address) = refusal.client_addr.parse::<IpAddr>() else {
                continue;
            };
            if sources.refusal(address) == Recording::Summarised {
                answer.summarised += 1;
                continue;
            }
            answer.recorded += 1;
            let code =
                ErrorCode::from_reason(&refusal.reason).unwrap_or(ErrorCode::InvalidArgument);
            let occurred_at = refusal
                .occurred_at
                .and_then(|at| chrono::DateTime::from_timestamp(at.seconds, at.nanos.max(0) as u32))
                .unwrap_or_else(chrono::Utc::now);
            let request_id: String = refusal
                .request_id
                .chars()
                .filter(char::is_ascii_graphic)
                .take(REQUEST_ID_LENGTH_MAX)
                .collect();
            self.services
                .audit
                .enqueue(NewRecord {
                    chain: Chain::Platform,
                    occurred_at,
                    merchant_id: None,
                    key_id: None,
                    key_prefix: None,
                    transport: crate::call::Transport::Rest,
                    method: recorded_method(&format!("REST {}", refusal.route)),
                    request_id,
                    request_digest: String::new(),
                    outcome: Outcome::from_error(code),
                    latency_us: refusal.latency_us.max(0),
                    entry_ids: Vec::new(),
                    uid: None,
                    amount: None,
                    currency: None,
                    rule_code: None,
                    rule_version: None,
                    points: None,
                    unless_committed: None,
                })
                .await;
        }
        Ok(Response::new(answer))
    }
}
