//! The hold methods of `points.v1.PointsService` (SPEC §12): requests parsed into hold operations, results
//! converted back. The trait methods themselves live with the others in [`super::points`].

use prost::Message;

use super::messages::{digest, entry_message, metadata_message, metadata_object};
use super::{parse_timestamp, timestamp, timestamp_opt};
use crate::{
    domain::{
        holds::{Hold, parse_hold_id},
        points::{IdempotencyKey, Points, Uid, parse_description, parse_metadata, parse_reference},
    },
    error::ServiceResult,
    pb,
    service::ledger::{Account, HoldMutation, HoldOperation, HoldResult, Outcome},
};

pub fn hold_message(hold: Hold) -> pb::Hold {
    pb::Hold {
        hold_id: hold.hold_id.to_string(),
        uid: hold.uid,
        points: hold.points,
        captured_points: hold.captured_points,
        status: hold.status.as_str().to_owned(),
        expires_at: Some(timestamp(hold.expires_at)),
        reference: hold.reference,
        description: hold.description,
        metadata: Some(metadata_message(&hold.metadata)),
        idempotency_key: hold.idempotency_key,
        capture_entry_id: hold.capture_entry_id.map(|id| id.to_string()),
        created_at: Some(timestamp(hold.created_at)),
        closed_at: timestamp_opt(hold.closed_at),
    }
}

pub fn account_message(account: Account) -> pb::Account {
    pb::Account {
        uid: account.uid,
        balance: account.balance,
        held: account.held,
        available: account.available,
        expiring: account
            .expiring
            .into_iter()
            .map(|(points, at)| pb::ExpiringPoints {
                points,
                expires_at: Some(timestamp(at)),
            })
            .collect(),
    }
}

pub fn hold_response(result: HoldResult) -> pb::HoldResponse {
    pb::HoldResponse {
        hold: Some(hold_message(result.hold)),
        account: Some(account_message(result.account)),
        replayed: result.outcome == Outcome::Replayed,
        entry: result.entry.map(entry_message),
    }
}

fn hold_mutation(
    key: &str,
    operation: &str,
    message: &impl Message,
    kind: HoldOperation,
) -> ServiceResult<HoldMutation> {
    Ok(HoldMutation {
        idempotency_key: IdempotencyKey::parse(key)?,
        request_digest: digest(operation, message),
        kind,
    })
}

pub fn create_hold_mutation(message: &pb::CreateHoldRequest) -> ServiceResult<HoldMutation> {
    let kind = HoldOperation::Create {
        uid: Uid::parse(&message.uid)?,
        points: Points::parse("points", message.points)?,
        expires_at: parse_timestamp("expires_at", message.expires_at)?,
        reference: parse_reference(message.reference.as_deref())?,
        description: parse_description("description", message.description.as_deref())?,
        metadata: parse_metadata(metadata_object(message.metadata.as_ref())?)?,
    };
    hold_mutation(&message.idempotency_key, "hold", message, kind)
}

pub fn capture_hold_mutation(message: &pb::CaptureHoldRequest) -> ServiceResult<HoldMutation> {
    let kind = HoldOperation::Capture {
        hold_id: parse_hold_id(&message.hold_id)?,
        points: message
            .points
            .map(|points| Points::parse("points", points))
            .transpose()?,
    };
    hold_mutation(&message.idempotency_key, "capture", message, kind)
}

pub fn void_hold_mutation(message: &pb::VoidHoldRequest) -> ServiceResult<HoldMutation> {
    let kind = HoldOperation::Void {
        hold_id: parse_hold_id(&message.hold_id)?,
    };
    hold_mutation(&message.idempotency_key, "void", message, kind)
}
