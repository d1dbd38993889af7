//! The SPEC §8 error table, once for the server and the gateway.
//!
//! Each row is an [`ErrorCode`]; its envelope code, HTTP status, gRPC code and `google.rpc.ErrorInfo.reason` are
//! exhaustive matches, so a new row cannot be added without deciding all four. The server sends the reason in
//! every error status; whoever reads a status back (the gateway for its envelope, the server for its audit
//! record) uses [`ErrorCode::of_status`]: the reason when it is one of ours, else [`ErrorCode::fallback_for`] the
//! gRPC code. That fallback is stated here and nowhere else.

use http::StatusCode;
use tonic::Code;
use tonic_types::StatusExt;

/// The `ErrorInfo.domain` of every error the points service returns.
pub const ERROR_DOMAIN: &str = "points.v1";

/// One row of the SPEC §8 error table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 40001, HTTP 400, INVALID_ARGUMENT: bad JSON, field, size, page token, path or query value.
    InvalidArgument,
    /// 40101, HTTP 401, UNAUTHENTICATED: missing, malformed, unknown, expired or revoked key.
    Unauthenticated,
    /// 40301, HTTP 403, PERMISSION_DENIED: missing scope, suspended merchant, foreign `x-merchant-id`.
    PermissionDenied,
    /// 40401, HTTP 404, NOT_FOUND: unknown resource or route.
    NotFound,
    /// 40901, HTTP 409, ALREADY_EXISTS: the resource exists already.
    AlreadyExists,
    /// 40902, HTTP 409, ALREADY_EXISTS: the idempotency key was used for a different request.
    IdempotencyConflict,
    /// 42201, HTTP 422, FAILED_PRECONDITION: the balance is too small.
    InsufficientPoints,
    /// 42202, HTTP 422, FAILED_PRECONDITION: no conversion rule applies to the amount, currency or time.
    NoApplicableRule,
    /// 42203, HTTP 422, FAILED_PRECONDITION: capture or void of a hold that is captured, voided or expired.
    HoldNotActive,
    /// 42901, HTTP 429, RESOURCE_EXHAUSTED: too many requests; retry after `Retry-After` / `RetryInfo`.
    RateLimited,
    /// 50001, HTTP 500, INTERNAL: an internal fault; the cause is logged, never returned.
    Internal,
    /// 50301, HTTP 503, UNAVAILABLE: the service or its database cannot serve now (or the call ran out of
    /// time); retry later.
    Unavailable,
}

impl ErrorCode {
    /// Every row, in SPEC order.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::IdempotencyConflict,
        ErrorCode::InsufficientPoints,
        ErrorCode::NoApplicableRule,
        ErrorCode::HoldNotActive,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
    ];

    /// The name, as sent in `google.rpc.ErrorInfo.reason` (and stored in audit records).
    pub const fn reason(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            ErrorCode::InsufficientPoints => "INSUFFICIENT_POINTS",
            ErrorCode::NoApplicableRule => "NO_APPLICABLE_RULE",
            ErrorCode::HoldNotActive => "HOLD_NOT_ACTIVE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// The REST envelope `code`.
    pub const fn envelope_code(self) -> i32 {
        match self {
            ErrorCode::InvalidArgument => 40001,
            ErrorCode::Unauthenticated => 40101,
            ErrorCode::PermissionDenied => 40301,
            ErrorCode::NotFound => 40401,
            ErrorCode::AlreadyExists => 40901,
            ErrorCode::IdempotencyConflict => 40902,
            ErrorCode::InsufficientPoints => 42201,
            ErrorCode::NoApplicableRule => 42202,
            ErrorCode::HoldNotActive => 42203,
            ErrorCode::RateLimited => 42901,
            ErrorCode::Internal => 50001,
            ErrorCode::Unavailable => 50301,
        }
    }

    /// The HTTP status.
    pub const fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists | ErrorCode::IdempotencyConflict => StatusCode::CONFLICT,
            ErrorCode::InsufficientPoints
            | ErrorCode::NoApplicableRule
            | ErrorCode::HoldNotActive => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code.
    pub const fn grpc_code(self) -> Code {
        match self {
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::PermissionDenied => Code::PermissionDenied,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::AlreadyExists | ErrorCode::IdempotencyConflict => Code::AlreadyExists,
            ErrorCode::InsufficientPoints
            | ErrorCode::NoApplicableRule
            | ErrorCode::HoldNotActive => Code::FailedPrecondition,
            ErrorCode::RateLimited => Code::ResourceExhausted,
            ErrorCode::Internal => Code::Internal,
            ErrorCode::Unavailable => Code::Unavailable,
        }
    }

    /// The row whose [`reason`](Self::reason) is `reason`, if any.
    pub fn from_reason(reason: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.reason() == reason)
    }

    /// The row whose [`envelope_code`](Self::envelope_code) is `code`, if any.
    pub fn from_envelope_code(code: i32) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|row| row.envelope_code() == code)
    }

    /// What a gRPC code means when the status carries no reason of ours (a status tonic or a proxy produced:
    /// an undecodable message, a transport failure, a deadline): google's canonical mapping onto our rows.
    /// `FAILED_PRECONDITION` and `OUT_OF_RANGE` without a reason are bad input; `ABORTED` is a conflict;
    /// `CANCELLED` and `DEADLINE_EXCEEDED` are "retry later"; `UNIMPLEMENTED`, `UNKNOWN`, `DATA_LOSS` and a
    /// stray `OK` are internal faults.
    pub const fn fallback_for(code: Code) -> ErrorCode {
        match code {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                ErrorCode::InvalidArgument
            }
            Code::Unauthenticated => ErrorCode::Unauthenticated,
            Code::PermissionDenied => ErrorCode::PermissionDenied,
            Code::NotFound => ErrorCode::NotFound,
            Code::AlreadyExists | Code::Aborted => ErrorCode::AlreadyExists,
            Code::ResourceExhausted => ErrorCode::RateLimited,
            Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => ErrorCode::Unavailable,
            Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss | Code::Unimplemented => {
                ErrorCode::Internal
            }
        }
    }

    /// The row of an error status: its `ErrorInfo.reason` when it is one of ours, else the
    /// [fallback](Self::fallback_for) of its gRPC code.
    pub fn of_status(status: &tonic::Status) -> ErrorCode {
        status
            .get_details_error_info()
            .and_then(|info| ErrorCode::from_reason(&info.reason))
            .unwrap_or_else(|| ErrorCode::fallback_for(status.code()))
    }

    /// The HTTP status of an error status: its row's, except that `UNIMPLEMENTED` (a method the server does not
    /// have: version skew between gateway and server) keeps google's canonical 501.
    pub fn http_status_of(status: &tonic::Status) -> StatusCode {
        if status.code() == Code::Unimplemented {
            StatusCode::NOT_IMPLEMENTED
        } else {
            ErrorCode::of_status(status).http_status()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    fn status_with_reason(code: Code, reason: &str) -> tonic::Status {
        let details =
            ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
        tonic::Status::with_error_details(code, "detail", details)
    }

    #[test]
    fn every_row_maps_reason_code_and_statuses_as_spec_section_8_says() {
        let expected = [
            ("INVALID_ARGUMENT", 40001, 400, Code::InvalidArgument),
            ("UNAUTHENTICATED", 40101, 401, Code::Unauthenticated),
            ("PERMISSION_DENIED", 40301, 403, Code::PermissionDenied),
            ("NOT_FOUND", 40401, 404, Code::NotFound),
            ("ALREADY_EXISTS", 40901, 409, Code::AlreadyExists),
            ("IDEMPOTENCY_CONFLICT", 40902, 409, Code::AlreadyExists),
            ("INSUFFICIENT_POINTS", 42201, 422, Code::FailedPrecondition),
            ("NO_APPLICABLE_RULE", 42202, 422, Code::FailedPrecondition),
            ("HOLD_NOT_ACTIVE", 42203, 422, Code::FailedPrecondition),
            ("RATE_LIMITED", 42901, 429, Code::ResourceExhausted),
            ("INTERNAL", 50001, 500, Code::Internal),
            ("UNAVAILABLE", 50301, 503, Code::Unavailable),
        ];
        assert_eq!(expected.len(), ErrorCode::ALL.len());
        for (reason, code, http, grpc) in expected {
            let row = ErrorCode::from_reason(reason).expect("reason is in the table");
            assert_eq!(row.envelope_code(), code, "{reason}");
            assert_eq!(row.http_status().as_u16(), http, "{reason}");
            assert_eq!(row.grpc_code(), grpc, "{reason}");
            assert_eq!(ErrorCode::from_envelope_code(code), Some(row));
            assert_eq!(ErrorCode::of_status(&status_with_reason(grpc, reason)), row);
        }
    }

    #[test]
    fn a_status_without_a_reason_of_ours_falls_back_on_its_grpc_code() {
        let table = [
            (Code::InvalidArgument, 40001),
            (Code::OutOfRange, 40001),
            (Code::FailedPrecondition, 40001),
            (Code::Unauthenticated, 40101),
            (Code::PermissionDenied, 40301),
            (Code::NotFound, 40401),
            (Code::AlreadyExists, 40901),
            (Code::Aborted, 40901),
            (Code::ResourceExhausted, 42901),
            (Code::Unimplemented, 50001),
            (Code::Unknown, 50001),
            (Code::Internal, 50001),
            (Code::DataLoss, 50001),
            (Code::Ok, 50001),
            (Code::Unavailable, 50301),
            (Code::Cancelled, 50301),
            (Code::DeadlineExceeded, 50301),
        ];
        for (grpc, code) in table {
            assert_eq!(
                ErrorCode::of_status(&tonic::Status::new(grpc, "detail")).envelope_code(),
                code,
                "{grpc:?}"
            );
            assert_eq!(
                ErrorCode::of_status(&status_with_reason(grpc, "SOMETHING_NEW")).envelope_code(),
                code,
                "{grpc:?} with a reason that is not ours"
            );
        }
        let unimplemented = tonic::Status::unimplemented("no such method");
        assert_eq!(ErrorCode::http_status_of(&unimplemented).as_u16(), 501);
        let deadline = tonic::Status::deadline_exceeded("late");
        assert_eq!(ErrorCode::http_status_of(&deadline).as_u16(), 503);
    }

    #[test]
    fn reasons_and_envelope_codes_are_distinct() {
        let reasons: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|code| code.reason()).collect();
        let codes: std::collections::HashSet<_> = ErrorCode::ALL
            .iter()
            .map(|code| code.envelope_code())
            .collect();
        assert_eq!(reasons.len(), ErrorCode::ALL.len());
        assert_eq!(codes.len(), ErrorCode::ALL.len());
    }
}
