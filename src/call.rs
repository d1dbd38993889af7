//! One call and the audit record made of it: who called, how ([`Transport`]), the notes its handler takes as it
//! goes ([`CallNotes`]), its [`Outcome`], and the [`NewRecord`] written for it into its [`Chain`].
//!
//! The services take a [`CallContext`], the audit buffer and chain turn it into records, and the store writes
//! them; all three import this module and none of them imports another for these types.

use std::{
    sync::{Mutex, MutexGuard},
    time::Instant,
};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{
    domain::Scope,
    error::{ErrorCode, ServiceError, ServiceResult},
    tenancy::TenantSchema,
};

/// The merchant a call acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantContext {
    pub merchant_id: Uuid,
    pub schema: TenantSchema,
}

/// Who is calling, established by the auth layer and put into the request's extensions.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub key_id: Uuid,
    pub key_prefix: String,
    pub scopes: Vec<Scope>,
    /// The merchant acted for: the key's own, or the one an admin key named in `x-merchant-id`.
    pub merchant: Option<MerchantContext>,
}

impl AuthContext {
    pub fn is_admin(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }

    /// The merchant this call acts for; methods that need one are declared so in the access table, so a missing
    /// merchant here is refused rather than assumed.
    pub fn merchant(&self) -> ServiceResult<&MerchantContext> {
        self.merchant.as_ref().ok_or_else(|| {
            ServiceError::permission_denied("this method acts for a merchant: send x-merchant-id")
        })
    }

    /// The owner of keys and audit this call sees: its merchant, or the platform (None).
    pub fn owner(&self) -> Option<Uuid> {
        self.merchant.as_ref().map(|merchant| merchant.merchant_id)
    }
}

/// A refused call, with whatever identity was established before the refusal (for the audit).
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub error: ServiceError,
    pub key_id: Option<Uuid>,
    pub key_prefix: Option<String>,
    pub merchant_id: Option<Uuid>,
    /// For a rate-limited call: how long to wait.
    pub retry_after: Option<std::time::Duration>,
}

impl AuthFailure {
    pub fn anonymous(error: ServiceError) -> AuthFailure {
        AuthFailure {
            error,
            key_id: None,
            key_prefix: None,
            merchant_id: None,
            retry_after: None,
        }
    }
}

/// How a call reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    /// Through the REST gateway, which marks its calls with `x-points-transport: rest` and proves it with the
    /// gateway token.
    Rest,
    /// The server's own work, not a call: the expiry sweeper, the refusal summaries.
    System,
}

impl Transport {
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Rest => "rest",
            Transport::System => "system",
        }
    }
}

/// One authenticated call: who, what, and the notes its audit record is made from.
#[derive(Debug)]
pub struct CallContext {
    pub request_id: String,
    /// Full gRPC method path.
    pub method: String,
    pub transport: Transport,
    pub started: Instant,
    pub occurred_at: DateTime<Utc>,
    pub auth: AuthContext,
    notes: Mutex<CallNotes>,
}

impl CallContext {
    pub fn new(
        request_id: String,
        method: String,
        transport: Transport,
        auth: AuthContext,
    ) -> CallContext {
        CallContext {
            request_id,
            method,
            transport,
            started: Instant::now(),
            occurred_at: Utc::now(),
            auth,
            notes: Mutex::default(),
        }
    }

    pub fn notes(&self) -> MutexGuard<'_, CallNotes> {
        self.notes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

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
    /// The id of the record [`crate::audit::record_in_transaction`] wrote; the call layer writes no second record for a call
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
pub enum Outcome {
    /// Success.
    Ok,
    /// The call ended without a response: the client went away or the request timeout cut it off. The only
    /// outcome outside SPEC §8, since no client ever receives it; 499 is the conventional "client closed request".
    Cancelled,
    /// A SPEC §8 error.
    Failed(ErrorCode),
}

impl Outcome {
    pub const fn from_error(code: ErrorCode) -> Outcome {
        Outcome::Failed(code)
    }

    /// The envelope code recorded: 0, 49900 or the SPEC §8 code.
    pub const fn code(self) -> i32 {
        match self {
            Outcome::Ok => 0,
            Outcome::Cancelled => 49_900,
            Outcome::Failed(code) => code.envelope_code(),
        }
    }

    /// The name recorded: `OK`, `CANCELLED` or the SPEC §8 reason.
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "OK",
            Outcome::Cancelled => "CANCELLED",
            Outcome::Failed(code) => code.reason(),
        }
    }

    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }

    /// The outcome of a gRPC status a handler did not explain in its notes (e.g. a message tonic could not
    /// decode): the SPEC row of the contract's one rule ([`ErrorCode::of_status`]), except that a call the
    /// client gave up on (cancelled, or past its deadline) is recorded as `CANCELLED`, not as an error of ours.
    pub fn from_status(status: &tonic::Status) -> Outcome {
        use tonic::Code;
        match status.code() {
            Code::Ok => Outcome::Ok,
            Code::Cancelled | Code::DeadlineExceeded => Outcome::Cancelled,
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
    pub transport: Transport,
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
    /// A record of the server's own work in a merchant's chain (a sweeper's run): transport `system`, no key,
    /// no request; the caller sets the method and what was done.
    pub fn for_system(
        schema: TenantSchema,
        merchant_id: Uuid,
        occurred_at: DateTime<Utc>,
        started: Instant,
    ) -> NewRecord {
        NewRecord {
            chain: Chain::Merchant(schema),
            occurred_at,
            merchant_id: Some(merchant_id),
            key_id: None,
            key_prefix: None,
            transport: Transport::System,
            method: String::new(),
            request_id: Uuid::new_v4().to_string(),
            request_digest: String::new(),
            outcome: Outcome::Ok,
            latency_us: elapsed_us(started),
            entry_ids: Vec::new(),
            uid: None,
            amount: None,
            currency: None,
            rule_code: None,
            rule_version: None,
            points: None,
            unless_committed: None,
        }
    }

    pub fn for_call(call: &CallContext, outcome: Outcome) -> NewRecord {
        let notes = call.notes().clone();
        NewRecord {
            chain: Chain::of_auth(&call.auth),
            occurred_at: call.occurred_at,
            merchant_id: call.auth.owner().or(notes.subject_merchant_id),
            key_id: Some(call.auth.key_id),
            key_prefix: Some(call.auth.key_prefix.clone()),
            transport: call.transport,
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

/// An audit record as stored, sealed or not.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub audit_id: i64,
    pub occurred_at: DateTime<Utc>,
    pub merchant_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub key_prefix: Option<String>,
    pub transport: String,
    pub method: String,
    pub request_id: String,
    pub request_digest: String,
    pub outcome_code: i32,
    pub outcome: String,
    pub latency_us: i64,
    pub entry_ids: Vec<i64>,
    pub entries_digest: Option<String>,
    pub uid: Option<String>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub rule_code: Option<String>,
    pub rule_version: Option<i32>,
    pub points: Option<i64>,
    pub seq: Option<i64>,
    pub record_hash: Option<Vec<u8>>,
    pub sealed_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_carry_the_envelope_code_and_name() {
        assert_eq!(
            Outcome::from_error(ErrorCode::InvalidArgument),
            Outcome::Failed(ErrorCode::InvalidArgument)
        );
        assert_eq!(
            Outcome::from_error(ErrorCode::InvalidArgument).code(),
            40001
        );
        assert_eq!(Outcome::Cancelled.code(), 49_900);
        assert_eq!(Outcome::Ok.name(), "OK");
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
            Outcome::Cancelled
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
