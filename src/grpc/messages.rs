//! Conversions the points and holds services share: stored entries and metadata to messages, request metadata to
//! JSON, and the idempotency digest of a request.

use prost::Message;

use super::{timestamp, timestamp_opt};
use crate::{
    domain::points::Entry,
    error::{ServiceError, ServiceResult},
    pb,
};

pub fn entry_message(row: Entry) -> pb::Entry {
    pb::Entry {
        entry_id: row.entry_id.to_string(),
        uid: row.uid,
        kind: row.kind.as_str().to_owned(),
        delta: row.delta,
        balance_after: row.balance_after,
        idempotency_key: row.idempotency_key.unwrap_or_default(),
        reference: row.reference,
        description: row.description,
        metadata: Some(metadata_message(&row.metadata)),
        rule_code: row.rule_code,
        rule_version: row.rule_version,
        amount: row.amount.map(|amount| amount.normalize().to_string()),
        currency: row.currency,
        reverses_entry_id: row.reverses_entry_id.map(|id| id.to_string()),
        expires_at: timestamp_opt(row.expires_at),
        hold_id: row.hold_id.map(|id| id.to_string()),
        created_at: Some(timestamp(row.created_at)),
    }
}

/// The stored metadata object as a `Struct` (always an object; metadata stored before it travelled as a `Struct`
/// may hold integers beyond ±2^53, shown rounded).
pub fn metadata_message(metadata: &serde_json::Value) -> prost_types::Struct {
    match metadata.as_object() {
        Some(object) => points_api::metadata::to_struct_rounding(object),
        None => {
            tracing::error!("stored entry metadata is not a JSON object");
            prost_types::Struct::default()
        }
    }
}

/// A request's metadata `Struct` as a JSON object.
pub fn metadata_object(
    metadata: Option<&prost_types::Struct>,
) -> ServiceResult<Option<serde_json::Map<String, serde_json::Value>>> {
    metadata
        .map(points_api::metadata::from_struct)
        .transpose()
        .map_err(|error| ServiceError::invalid(error.to_string()))
}

/// Identifies a request for idempotency: the operation and the exact request fields.
pub fn digest(operation: &str, message: &impl Message) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(operation.as_bytes());
    hasher.update(&[0]);
    hasher.update(&message.encode_to_vec());
    hasher.finalize().to_hex().to_string()
}
