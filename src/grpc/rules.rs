//! `points.v1.RuleService`: not served yet; every method answers UNIMPLEMENTED until conversion rules (issue #4) lands.

use tonic::{Request, Response, Status};

use super::Handlers;
use crate::pb::{self, rule_service_server::RuleService};

fn not_yet() -> Status {
    Status::unimplemented("conversion rules (issue #4) is not implemented yet")
}

#[tonic::async_trait]
impl RuleService for Handlers {
    async fn list_rules(&self, _request: Request<pb::ListRulesRequest>) -> Result<Response<pb::ListRulesResponse>, Status> {
        Err(not_yet())
    }

    async fn get_rule(&self, _request: Request<pb::GetRuleRequest>) -> Result<Response<pb::RuleVersion>, Status> {
        Err(not_yet())
    }

    async fn put_rule(&self, _request: Request<pb::PutRuleRequest>) -> Result<Response<pb::RuleVersion>, Status> {
        Err(not_yet())
    }

    async fn list_rule_versions(&self, _request: Request<pb::ListRuleVersionsRequest>) -> Result<Response<pb::ListRuleVersionsResponse>, Status> {
        Err(not_yet())
    }

    async fn sync_rules(&self, _request: Request<pb::SyncRulesRequest>) -> Result<Response<pb::SyncRulesResponse>, Status> {
        Err(not_yet())
    }

}
