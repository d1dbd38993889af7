//! `points.v1.PointsService`: not served yet; every method answers UNIMPLEMENTED until the points ledger (issue #3) lands.

use tonic::{Request, Response, Status};

use super::Handlers;
use crate::pb::{self, points_service_server::PointsService};

fn not_yet() -> Status {
    Status::unimplemented("the points ledger (issue #3) is not implemented yet")
}

#[tonic::async_trait]
impl PointsService for Handlers {
    async fn earn(&self, _request: Request<pb::EarnRequest>) -> Result<Response<pb::MutationResponse>, Status> {
        Err(not_yet())
    }

    async fn spend(&self, _request: Request<pb::SpendRequest>) -> Result<Response<pb::MutationResponse>, Status> {
        Err(not_yet())
    }

    async fn adjust(&self, _request: Request<pb::AdjustRequest>) -> Result<Response<pb::MutationResponse>, Status> {
        Err(not_yet())
    }

    async fn reverse(&self, _request: Request<pb::ReverseRequest>) -> Result<Response<pb::MutationResponse>, Status> {
        Err(not_yet())
    }

    async fn get_entry(&self, _request: Request<pb::GetEntryRequest>) -> Result<Response<pb::Entry>, Status> {
        Err(not_yet())
    }

    async fn get_account(&self, _request: Request<pb::GetAccountRequest>) -> Result<Response<pb::Account>, Status> {
        Err(not_yet())
    }

    async fn list_entries(&self, _request: Request<pb::ListEntriesRequest>) -> Result<Response<pb::ListEntriesResponse>, Status> {
        Err(not_yet())
    }

    async fn batch(&self, _request: Request<pb::BatchRequest>) -> Result<Response<pb::BatchResponse>, Status> {
        Err(not_yet())
    }

    async fn calculate(&self, request: Request<pb::CalculateRequest>) -> Result<Response<pb::CalculateResponse>, Status> {
        super::handle(request, |call, message| async move {
            super::rules::calculate_response(&self.services, &call, message).await
        })
        .await
    }

}
