//! The audit trail (SPEC §7): one record per `points.v1` call, chained with blake3 so that changing or deleting a
//! record, or changing a ledger entry a record lists, is detected.
//!
//! # Writing: one record per call
//! The handler fills [`CallNotes`] as it goes (request digest, outcome, uid, entry ids, conversion facts).
//! - A **mutation** writes its record with [`record_in_transaction`] inside its own transaction, so the change and
//!   its record commit or vanish together.
//! - **Every other call** — reads, refusals by the auth layer (unauthenticated ones too), validation errors,
//!   idempotent replays, failed mutations, calls cut off by the request timeout — is recorded by the call layer
//!   ([`crate::auth::layer`]) after the handler returns, through the bounded in-memory [`buffer::AuditLog`] that a
//!   background task writes in batches and flushes at graceful shutdown. A crash loses only records still in that
//!   buffer (at most one flush interval of reads and refusals); never a mutation's record.
//! - When the buffer is full the call waits (backpressure) up to [`buffer::ENQUEUE_WAIT_MAX`]; only if the writer
//!   is stuck longer than that (database down) is the record dropped, counted in `audit_records_dropped_total`
//!   and logged as a warning.
//! - A failed mutation whose in-transaction record may or may not have committed (the handler failed after the
//!   insert) gets a buffered record that is written only if that in-transaction record does not exist, so each
//!   call still has exactly one record.
//! - A merchant's calls go to its schema's `audit_records`; calls without a merchant (admin operations without
//!   `x-merchant-id`, refusals before a merchant was known) go to `public.platform_audit_records`.
//! - Records hold the calling key's id and display prefix, never the key; a request id or method that looks like
//!   it carries a key is not recorded as such.
//!
//! # Tamper evidence: seal after commit
//! Audit ids come from an identity column, so concurrent transactions commit out of id order and a chain built at
//! insert time would either serialize every call or miss late commits. Records are therefore inserted *unsealed*
//! (`seq` NULL), and [`chain`] seals them afterwards: a sealer locks the chain's head row (one sealer per chain at a
//! time, also across instances), takes committed unsealed records in `audit_id` order in bounded batches, gives
//! them consecutive `seq` numbers after the head and sets
//! `record_hash = blake3(previous record_hash ‖ canonical bytes of the record)`, where the canonical bytes are a
//! length-prefixed encoding of every field, including `audit_id`, `seq`, `sealed_at` and `entries_digest`. A
//! record that commits late simply gets a later `seq`. `entries_digest` is the blake3 of the canonical form of the
//! ledger entries a record lists (every column of each `entries` row), computed by the sealer in the same pass —
//! the entries committed with the record, so they are there — which keeps the mutation's own transaction to one
//! extra INSERT; changing or deleting an entry is then detected by recomputing the digest. The head row (last
//! seq, audit id and hash) makes deleting the newest records detectable too. Records are updated exactly once, to
//! seal them; triggers refuse any other UPDATE or DELETE (and cost the sealing UPDATE nothing).
//!
//! Verification ([`chain::verify`]) first seals what is pending, then walks the chain by `seq` in one snapshot,
//! recomputing every hash and entries digest, and reports the first bad record: a changed record (hash mismatch),
//! a deleted one (gap in `seq`: the record after the gap is reported; at the end of the chain, the head's record),
//! or a changed ledger entry (digest mismatch on the record that lists it).
//!
//! Limits, stated plainly: a record is tamper-evident from the moment it is sealed (the sealer runs every second
//! and before every verification); and the hash is unkeyed, so someone who can rewrite the database can also
//! recompute every hash after their change. Anchoring the head hash outside the database (e.g. logging it
//! periodically) closes that gap.

pub mod buffer;
pub mod chain;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{
    auth::AuthContext,
    error::{ErrorCode, ServiceResult},
    service::CallContext,
    store,
    tenancy::TenantSchema,
};

/// Facts about one call, filled in by its handler.
#[derive(Debug, Clone, Default)]
pub struct CallNotes {
    /// blake3 of the encoded request message, hex.
    pub request_digest: Option<String>,
    /// The error outcome, None while the call succeeds.
    pub outcome: Option<ErrorCode>,
    /// Set by [`crate::grpc::handle`] when the handler returned a response.
    pub succeeded: bool,
    /// Entries the call created.
    pub entry_ids: Vec<i64>,
    /// The uid the call was about.
    pub uid: Option<String>,
    /// Conversions: the money amount, its currency, the rule used and the resulting points.
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub rule_code: Option<String>,
    pub rule_version: Option<i32>,
    pub points: Option<i64>,
    /// For admin operations without a merchant context: the merchant the operation concerned (e.g. the merchant
    /// just registered), recorded as the record's `merchant_id` in the platform audit.
    pub subject_merchant_id: Option<Uuid>,
    /// The id of the record [`record_in_transaction`] wrote; the call layer writes no second record for a call
    /// that succeeded with one.
    pub in_transaction_audit_id: Option<i64>,
}

/// The audit chain a record belongs to: the platform's, or one merchant's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Chain {
    /// `public.platform_audit_records`.
    Platform,
    /// `audit_records` in the merchant's schema.
    Merchant(TenantSchema),
}

impl Chain {
    /// The chain of calls made in this auth context: its merchant's, or the platform's.
    pub fn of_auth(auth: &AuthContext) -> Chain {
        match &auth.merchant {
            Some(merchant) => Chain::Merchant(merchant.schema.clone()),
            None => Chain::Platform,
        }
    }

    /// The chain of a merchant, or the platform's for None.
    pub fn of_merchant(merchant_id: Option<Uuid>) -> Chain {
        match merchant_id {
            Some(merchant_id) => Chain::Merchant(TenantSchema::for_merchant(merchant_id)),
            None => Chain::Platform,
        }
    }

    /// A name for logs.
    pub fn name(&self) -> &str {
        match self {
            Chain::Platform => "platform",
            Chain::Merchant(schema) => schema.name(),
        }
    }
}

/// The outcome a record stores: the SPEC §8 envelope code (0 for success) and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub code: i32,
    pub name: &'static str,
}

impl Outcome {
    /// Success.
    pub const OK: Outcome = Outcome {
        code: 0,
        name: "OK",
    };
    /// The call ended without a response: the client went away or the request timeout cut it off. The only
    /// outcome outside SPEC §8, since no client ever receives it; 499 is the conventional "client closed request".
    pub const CANCELLED: Outcome = Outcome {
        code: 49_900,
        name: "CANCELLED",
    };

    pub const fn from_error(code: ErrorCode) -> Outcome {
        Outcome {
            code: code.envelope_code(),
            name: code.reason(),
        }
    }

    pub fn is_ok(self) -> bool {
        self == Outcome::OK
    }

    /// The outcome of a gRPC status a handler did not explain in its notes (e.g. a message tonic could not
    /// decode): the SPEC row of the contract's one rule ([`ErrorCode::of_status`]), except that a call the
    /// client gave up on (cancelled, or past its deadline) is recorded as `CANCELLED`, not as an error of ours.
    pub fn from_status(status: &tonic::Status) -> Outcome {
        use tonic::Code;
        match status.code() {
            Code::Ok => Outcome::OK,
            Code::Cancelled | Code::DeadlineExceeded => Outcome::CANCELLED,
            _ => Outcome::from_error(ErrorCode::of_status(status)),
        }
    }
}

/// One record to write (the database assigns `audit_id`; sealing assigns `seq` and `record_hash`).
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub chain: Chain,
    pub occurred_at: DateTime<Utc>,
    pub merchant_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub key_prefix: Option<String>,
    /// "grpc" or "rest".
    pub transport: &'static str,
    pub method: String,
    pub request_id: String,
    /// Empty when the request body was never read (the call was refused before it).
    pub request_digest: String,
    pub outcome: Outcome,
    pub latency_us: i64,
    pub entry_ids: Vec<i64>,
    pub uid: Option<String>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub rule_code: Option<String>,
    pub rule_version: Option<i32>,
    pub points: Option<i64>,
    /// The in-transaction record of this call, if one was inserted: this record is written only if that one
    /// never committed.
    pub unless_committed: Option<i64>,
}

/// Longest method path recorded; longer (unknown) paths are cut.
const METHOD_LENGTH_MAX: usize = 200;
/// The prefixes every API key starts with (SPEC §4).
const KEY_MARKERS: [&str; 2] = ["lp_live_", "lp_test_"];

/// True when `value` contains something that starts like an API key; such values are never recorded.
pub fn looks_like_api_key(value: &str) -> bool {
    KEY_MARKERS.iter().any(|marker| value.contains(marker))
}

/// The method as recorded: bounded, and never carrying a key an odd client put into the path.
pub fn recorded_method(method: &str) -> String {
    if looks_like_api_key(method) {
        return "[redacted: the method path contained an API key]".to_owned();
    }
    method.chars().take(METHOD_LENGTH_MAX).collect()
}

/// Microseconds since `started`, saturating.
pub fn elapsed_us(started: std::time::Instant) -> i64 {
    i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX)
}

impl NewRecord {
    /// The record of an authenticated call with `outcome`. Entry ids are kept only for a success: a failed call's
    /// entries were rolled back.
    pub fn for_call(call: &CallContext, outcome: Outcome) -> NewRecord {
        let notes = call.notes().clone();
        NewRecord {
            chain: Chain::of_auth(&call.auth),
            occurred_at: call.occurred_at,
            merchant_id: call.auth.owner().or(notes.subject_merchant_id),
            key_id: Some(call.auth.key_id),
            key_prefix: Some(call.auth.key_prefix.clone()),
            transport: call.transport.as_str(),
            method: recorded_method(&call.method),
            request_id: call.request_id.clone(),
            request_digest: notes.request_digest.unwrap_or_default(),
            outcome,
            latency_us: elapsed_us(call.started),
            entry_ids: if outcome.is_ok() {
                notes.entry_ids
            } else {
                Vec::new()
            },
            uid: notes.uid,
            amount: notes.amount,
            currency: notes.currency,
            rule_code: notes.rule_code,
            rule_version: notes.rule_version,
            points: notes.points,
            unless_committed: notes.in_transaction_audit_id,
        }
    }
}

/// Writes the call's record inside the mutation's transaction and notes its id, so the call layer does not write
/// a second one. Call it last, just before `commit`, after noting the entry ids (`notes().entry_ids`) and any
/// conversion facts. A merchant call's record goes to the merchant's `audit_records`, a call without a merchant
/// to `public.platform_audit_records`; the table is schema-qualified, so this works inside a tenant transaction
/// and inside a transaction on `public` tables alike. The record is written unsealed, in one round trip; sealing
/// digests the entries it lists and chains it later.
pub async fn record_in_transaction(
    transaction: &tokio_postgres::Transaction<'_>,
    call: &CallContext,
) -> ServiceResult<()> {
    let record = NewRecord::for_call(call, Outcome::OK);
    let audit_id = store::audit::insert_one(transaction, &record).await?;
    call.notes().in_transaction_audit_id = Some(audit_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_carry_the_envelope_code_and_name() {
        assert_eq!(
            Outcome::from_error(ErrorCode::InvalidArgument),
            Outcome {
                code: 40001,
                name: "INVALID_ARGUMENT"
            }
        );
        let status =
            crate::error::ServiceError::new(ErrorCode::IdempotencyConflict, "x").into_status();
        assert_eq!(
            Outcome::from_status(&status),
            Outcome::from_error(ErrorCode::IdempotencyConflict)
        );
        assert_eq!(
            Outcome::from_status(&tonic::Status::unimplemented("no")),
            Outcome::from_error(ErrorCode::Internal)
        );
        assert_eq!(
            Outcome::from_status(&tonic::Status::cancelled("gone")),
            Outcome::CANCELLED
        );
    }

    #[test]
    fn methods_are_bounded_and_never_carry_keys() {
        assert_eq!(
            recorded_method("/points.v1.PointsService/Earn"),
            "/points.v1.PointsService/Earn"
        );
        assert_eq!(recorded_method(&"x".repeat(1000)).len(), METHOD_LENGTH_MAX);
        assert!(!recorded_method("/points.v1.X/lp_live_abcdef").contains("lp_live_"));
    }
}
