//! `points.v1.PointsService`: parses requests into ledger mutations, calls the ledger, converts back.

use tonic::{Request, Response, Status};

use super::holds::{
    account_message, capture_hold_mutation, create_hold_mutation, hold_message, hold_response,
    void_hold_mutation,
};
use super::messages::{digest, entry_message, metadata_object};
use super::{Handlers, handle, parse_timestamp, timestamp};
use crate::{
    domain::points::{
        IdempotencyKey, Points, Uid, parse_delta, parse_description, parse_metadata,
        parse_reference,
    },
    error::{ServiceError, ServiceResult},
    pb::{self, points_service_server::PointsService},
    service::ledger::{
        self, Credit, Mutation, MutationKind, MutationResult, Operation, OperationResult, Outcome,
    },
};

fn mutation_message(result: MutationResult) -> pb::MutationResponse {
    pb::MutationResponse {
        balance: result.balance,
        replayed: result.outcome == Outcome::Replayed,
        entry: Some(entry_message(result.entry)),
    }
}

pub fn earn_mutation(message: &pb::EarnRequest) -> ServiceResult<Mutation> {
    let credit = match (message.points, &message.amount) {
        (Some(points), None) => {
            if message.currency.is_some() || message.rule_code.is_some() {
                return Err(ServiceError::invalid(
                    "currency and rule_code go with amount, not with points",
                ));
            }
            Credit::Points(Points::parse("points", points)?)
        }
        (None, Some(amount)) => Credit::Amount {
            amount: amount.clone(),
            currency: message
                .currency
                .clone()
                .ok_or_else(|| ServiceError::invalid("amount needs a currency"))?,
            rule_code: message.rule_code.clone(),
        },
        (Some(_), Some(_)) => {
            return Err(ServiceError::invalid(
                "give either points or amount, not both",
            ));
        }
        (None, None) => return Err(ServiceError::invalid("give points, or amount and currency")),
    };
    Ok(Mutation {
        idempotency_key: IdempotencyKey::parse(&message.idempotency_key)?,
        request_digest: digest("earn", message),
        kind: MutationKind::Earn {
            uid: Uid::parse(&message.uid)?,
            credit,
            reference: parse_reference(message.reference.as_deref())?,
            description: parse_description("description", message.description.as_deref())?,
            metadata: parse_metadata(metadata_object(message.metadata.as_ref())?)?,
            expires_at: parse_timestamp("expires_at", message.expires_at)?,
        },
    })
}

pub fn spend_mutation(message: &pb::SpendRequest) -> ServiceResult<Mutation> {
    Ok(Mutation {
        idempotency_key: IdempotencyKey::parse(&message.idempotency_key)?,
        request_digest: digest("spend", message),
        kind: MutationKind::Spend {
            uid: Uid::parse(&message.uid)?,
            points: Points::parse("points", message.points)?,
            reference: parse_reference(message.reference.as_deref())?,
            description: parse_description("description", message.description.as_deref())?,
            metadata: parse_metadata(metadata_object(message.metadata.as_ref())?)?,
        },
    })
}

pub fn adjust_mutation(message: &pb::AdjustRequest) -> ServiceResult<Mutation> {
    let reason = parse_description("reason", Some(&message.reason))?.unwrap_or_default();
    if reason.trim().is_empty() {
        return Err(ServiceError::invalid("reason must not be empty"));
    }
    Ok(Mutation {
        idempotency_key: IdempotencyKey::parse(&message.idempotency_key)?,
        request_digest: digest("adjust", message),
        kind: MutationKind::Adjust {
            uid: Uid::parse(&message.uid)?,
            delta: parse_delta(message.delta)?,
            reason,
        },
    })
}

pub fn reverse_mutation(message: &pb::ReverseRequest) -> ServiceResult<Mutation> {
    Ok(Mutation {
        idempotency_key: IdempotencyKey::parse(&message.idempotency_key)?,
        request_digest: digest("reverse", message),
        kind: MutationKind::Reverse {
            entry_id: ledger::parse_entry_id(&message.entry_id)?,
            reason: parse_description("reason", message.reason.as_deref())?,
        },
    })
}

fn batch_item(operation: &pb::BatchOperation) -> ServiceResult<Operation> {
    use pb::batch_operation::Op;
    match &operation.op {
        Some(Op::Earn(earn)) => earn_mutation(earn).map(Operation::Ledger),
        Some(Op::Spend(spend)) => spend_mutation(spend).map(Operation::Ledger),
        Some(Op::Adjust(adjust)) => adjust_mutation(adjust).map(Operation::Ledger),
        Some(Op::Hold(hold)) => create_hold_mutation(hold).map(Operation::Hold),
        Some(Op::Capture(capture)) => capture_hold_mutation(capture).map(Operation::Hold),
        Some(Op::Void(void)) => void_hold_mutation(void).map(Operation::Hold),
        None => Err(ServiceError::invalid(
            "operation must be one of earn, spend, adjust, hold, capture, void",
        )),
    }
}

fn batch_result(index: usize, result: ledger::ItemResult) -> pb::BatchResult {
    let index = index as i32;
    match result {
        Ok(result) => {
            let (data, hold_data) = match result {
                OperationResult::Ledger(result) => (Some(mutation_message(result)), None),
                OperationResult::Hold(result) => (None, Some(hold_response(result))),
            };
            pb::BatchResult {
                index,
                code: 0,
                message: "OK".to_owned(),
                reason: "OK".to_owned(),
                data,
                hold_data,
            }
        }
        Err(error) => pb::BatchResult {
            index,
            code: error.code.envelope_code(),
            message: error.message,
            reason: error.code.reason().to_owned(),
            data: None,
            hold_data: None,
        },
    }
}

#[tonic::async_trait]
impl PointsService for Handlers {
    async fn earn(
        &self,
        request: Request<pb::EarnRequest>,
    ) -> Result<Response<pb::MutationResponse>, Status> {
        handle(request, |call, message| async move {
            let mutation = earn_mutation(&message)?;
            Ok(mutation_message(
                ledger::mutate(&self.services, &call, &mutation).await?,
            ))
        })
        .await
    }

    async fn spend(
        &self,
        request: Request<pb::SpendRequest>,
    ) -> Result<Response<pb::MutationResponse>, Status> {
        handle(request, |call, message| async move {
            let mutation = spend_mutation(&message)?;
            Ok(mutation_message(
                ledger::mutate(&self.services, &call, &mutation).await?,
            ))
        })
        .await
    }

    async fn adjust(
        &self,
        request: Request<pb::AdjustRequest>,
    ) -> Result<Response<pb::MutationResponse>, Status> {
        handle(request, |call, message| async move {
            let mutation = adjust_mutation(&message)?;
            Ok(mutation_message(
                ledger::mutate(&self.services, &call, &mutation).await?,
            ))
        })
        .await
    }

    async fn reverse(
        &self,
        request: Request<pb::ReverseRequest>,
    ) -> Result<Response<pb::MutationResponse>, Status> {
        handle(request, |call, message| async move {
            let mutation = reverse_mutation(&message)?;
            Ok(mutation_message(
                ledger::mutate(&self.services, &call, &mutation).await?,
            ))
        })
        .await
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        handle(request, |call, message| async move {
            Ok(entry_message(
                ledger::get_entry(&self.services, &call, &message.entry_id).await?,
            ))
        })
        .await
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        handle(request, |call, message| async move {
            Ok(account_message(
                ledger::get_account(&self.services, &call, &message.uid).await?,
            ))
        })
        .await
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        handle(request, |call, message| async move {
            let filter = ledger::ListEntries {
                uid: &message.uid,
                kind: message.kind.as_deref(),
                from: parse_timestamp("from", message.from)?,
                to: parse_timestamp("to", message.to)?,
                page_size: message.page_size,
                page_token: &message.page_token,
            };
            let (rows, next_page_token) =
                ledger::list_entries(&self.services, &call, filter).await?;
            Ok(pb::ListEntriesResponse {
                items: rows.into_iter().map(entry_message).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        handle(request, |call, message| async move {
            let list = ledger::ListAccounts {
                uid_prefix: message.uid_prefix.as_deref(),
                order: &message.order,
                page_size: message.page_size,
                page_token: &message.page_token,
            };
            let (accounts, next_page_token) =
                ledger::list_accounts(&self.services, &call, list).await?;
            Ok(pb::ListAccountsResponse {
                items: accounts
                    .into_iter()
                    .map(|account| pb::AccountSummary {
                        uid: account.uid,
                        balance: account.balance,
                        held: account.held,
                        available: account.available,
                        updated_at: Some(timestamp(account.updated_at)),
                    })
                    .collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn batch(
        &self,
        request: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        handle(request, |call, message| async move {
            let items: Vec<_> = message.operations.iter().map(batch_item).collect();
            let results = ledger::batch(&self.services, &call, message.atomic, &items).await?;
            let results = results
                .into_iter()
                .enumerate()
                .map(|(index, result)| batch_result(index, result))
                .collect();
            Ok(pb::BatchResponse { results })
        })
        .await
    }

    async fn calculate(
        &self,
        request: Request<pb::CalculateRequest>,
    ) -> Result<Response<pb::CalculateResponse>, Status> {
        handle(request, |call, message| async move {
            super::rules::calculate_response(&self.services, &call, message).await
        })
        .await
    }

    async fn create_hold(
        &self,
        request: Request<pb::CreateHoldRequest>,
    ) -> Result<Response<pb::HoldResponse>, Status> {
        handle(request, |call, message| async move {
            let mutation = create_hold_mutation(&message)?;
            Ok(hold_response(
                ledger::mutate_hold(&self.services, &call, &mutation).await?,
            ))
        })
        .await
    }

    async fn capture_hold(
        &self,
        request: Request<pb::CaptureHoldRequest>,
    ) -> Result<Response<pb::HoldResponse>, Status> {
        handle(request, |call, message| async move {
            let mutation = capture_hold_mutation(&message)?;
            Ok(hold_response(
                ledger::mutate_hold(&self.services, &call, &mutation).await?,
            ))
        })
        .await
    }

    async fn void_hold(
        &self,
        request: Request<pb::VoidHoldRequest>,
    ) -> Result<Response<pb::HoldResponse>, Status> {
        handle(request, |call, message| async move {
            let mutation = void_hold_mutation(&message)?;
            Ok(hold_response(
                ledger::mutate_hold(&self.services, &call, &mutation).await?,
            ))
        })
        .await
    }

    async fn get_hold(
        &self,
        request: Request<pb::GetHoldRequest>,
    ) -> Result<Response<pb::Hold>, Status> {
        handle(request, |call, message| async move {
            Ok(hold_message(
                ledger::get_hold(&self.services, &call, &message.hold_id).await?,
            ))
        })
        .await
    }

    async fn list_holds(
        &self,
        request: Request<pb::ListHoldsRequest>,
    ) -> Result<Response<pb::ListHoldsResponse>, Status> {
        handle(request, |call, message| async move {
            let (holds, next_page_token) = ledger::list_holds(
                &self.services,
                &call,
                &message.uid,
                message.page_size,
                &message.page_token,
            )
            .await?;
            Ok(pb::ListHoldsResponse {
                items: holds.into_iter().map(hold_message).collect(),
                next_page_token,
            })
        })
        .await
    }
}
