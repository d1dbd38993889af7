//! The error-code table of SPEC §8 and the gateway's one error type.
//!
//! Every error the gateway returns — a gRPC status from the points service, a transport failure reaching it, or a
//! request the gateway refuses before calling it — becomes an [`ApiError`], which renders as the `{code, message,
//! data: null}` envelope. The mappings live here and nowhere else:
//!
//! * [`ErrorCode`]: envelope code ⇄ `google.rpc.ErrorInfo.reason` ⇄ HTTP status ⇄ gRPC code (SPEC §8, one row each);
//! * [`fallback_for_grpc_code`]: what a status *without* a known `ErrorInfo.reason` means (google's canonical mapping);
//! * [`ApiError::from_status`]: the combination of the two, plus the rule that `INTERNAL` messages are never echoed.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic::Code;
use tonic_types::StatusExt;

use crate::envelope::ErrorEnvelope;

/// One row of the SPEC §8 error table.
///
/// `ErrorInfo.reason` on the gRPC side carries [`ErrorCode::reason`]; the REST envelope carries [`ErrorCode::code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 40001, HTTP 400: bad JSON, field, size, page token, path or query value.
    InvalidArgument,
    /// 40101, HTTP 401: missing, malformed, unknown, expired or revoked key.
    Unauthenticated,
    /// 40301, HTTP 403: missing scope, suspended merchant, foreign `x-merchant-id`.
    PermissionDenied,
    /// 40401, HTTP 404: unknown resource or route.
    NotFound,
    /// 40901, HTTP 409: the resource exists already.
    AlreadyExists,
    /// 40902, HTTP 409: the idempotency key was used for a different request.
    IdempotencyConflict,
    /// 42201, HTTP 422: the balance is too small.
    InsufficientPoints,
    /// 42202, HTTP 422: no conversion rule applies to the amount, currency or time.
    NoApplicableRule,
    /// 42901, HTTP 429: too many requests; retry later.
    RateLimited,
    /// 50001, HTTP 500: an internal fault; the message never says more.
    Internal,
    /// 50301, HTTP 503: the points service or its database is unavailable; retry.
    Unavailable,
}

impl ErrorCode {
    /// Every row of the table, in SPEC order.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::IdempotencyConflict,
        ErrorCode::InsufficientPoints,
        ErrorCode::NoApplicableRule,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
    ];

    /// The envelope `code`.
    pub const fn code(self) -> i32 {
        match self {
            ErrorCode::InvalidArgument => 40001,
            ErrorCode::Unauthenticated => 40101,
            ErrorCode::PermissionDenied => 40301,
            ErrorCode::NotFound => 40401,
            ErrorCode::AlreadyExists => 40901,
            ErrorCode::IdempotencyConflict => 40902,
            ErrorCode::InsufficientPoints => 42201,
            ErrorCode::NoApplicableRule => 42202,
            ErrorCode::RateLimited => 42901,
            ErrorCode::Internal => 50001,
            ErrorCode::Unavailable => 50301,
        }
    }

    /// The name, as sent in `google.rpc.ErrorInfo.reason`.
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
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// The HTTP status of the row (SPEC §8 is authoritative over the canonical gRPC mapping).
    pub const fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists | ErrorCode::IdempotencyConflict => StatusCode::CONFLICT,
            ErrorCode::InsufficientPoints | ErrorCode::NoApplicableRule => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC code the server pairs with the row.
    pub const fn grpc_code(self) -> Code {
        match self {
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::PermissionDenied => Code::PermissionDenied,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::AlreadyExists | ErrorCode::IdempotencyConflict => Code::AlreadyExists,
            ErrorCode::InsufficientPoints | ErrorCode::NoApplicableRule => Code::FailedPrecondition,
            ErrorCode::RateLimited => Code::ResourceExhausted,
            ErrorCode::Internal => Code::Internal,
            ErrorCode::Unavailable => Code::Unavailable,
        }
    }

    /// The row whose [`reason`](Self::reason) is `reason`, if any.
    pub fn from_reason(reason: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|candidate| candidate.reason() == reason)
    }

    /// The row whose envelope [`code`](Self::code) is `code`, if any.
    pub fn from_code(code: i32) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|candidate| candidate.code() == code)
    }
}

/// What a gRPC status means when it carries no known `ErrorInfo.reason`: the envelope row and the HTTP status.
///
/// The HTTP status is google's canonical mapping (`google/rpc/code.proto`) with two departures: `CANCELLED` (499, a
/// status no HTTP client expects) and `OK` (never an error) both become 503 / 500 rows a client can act on.
pub const fn fallback_for_grpc_code(code: Code) -> (ErrorCode, StatusCode) {
    match code {
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            (ErrorCode::InvalidArgument, StatusCode::BAD_REQUEST)
        }
        Code::Unauthenticated => (ErrorCode::Unauthenticated, StatusCode::UNAUTHORIZED),
        Code::PermissionDenied => (ErrorCode::PermissionDenied, StatusCode::FORBIDDEN),
        Code::NotFound => (ErrorCode::NotFound, StatusCode::NOT_FOUND),
        Code::AlreadyExists | Code::Aborted => (ErrorCode::AlreadyExists, StatusCode::CONFLICT),
        Code::ResourceExhausted => (ErrorCode::RateLimited, StatusCode::TOO_MANY_REQUESTS),
        Code::Unimplemented => (ErrorCode::Internal, StatusCode::NOT_IMPLEMENTED),
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
            (ErrorCode::Internal, StatusCode::INTERNAL_SERVER_ERROR)
        }
        Code::Unavailable | Code::Cancelled => {
            (ErrorCode::Unavailable, StatusCode::SERVICE_UNAVAILABLE)
        }
        Code::DeadlineExceeded => (ErrorCode::Unavailable, StatusCode::GATEWAY_TIMEOUT),
    }
}

/// The fixed message of every `INTERNAL` error: internal causes are logged, never sent.
pub const INTERNAL_MESSAGE: &str = "internal error";

/// The message of a request that failed to reach the points service.
pub const BACKEND_UNAVAILABLE_MESSAGE: &str = "the points service is unavailable, retry later";

/// The message of a request that ran past the gateway's request timeout.
pub const TIMEOUT_MESSAGE: &str = "the request timed out, retry later";

/// An error response: an HTTP status and the envelope `{code, message, data: null}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    allow: Option<HeaderValue>,
    /// Seconds to wait before retrying (`Retry-After`), for rate-limited calls.
    retry_after_seconds: Option<u64>,
    /// True when the points service answered this error; false when the gateway refused the request itself
    /// (malformed JSON, unknown route or field, body too large, ...), which `gateway_refusals_total` counts.
    from_backend: bool,
}

impl ApiError {
    /// An error with the row's own HTTP status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: code.http_status(),
            code,
            message: message.into(),
            allow: None,
            retry_after_seconds: None,
            from_backend: false,
        }
    }

    /// A 400 / 40001 error.
    pub fn invalid_argument(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidArgument, message)
    }

    /// A 404 / 40401 error.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// A 500 / 50001 error with the fixed message; log the cause before calling this.
    pub fn internal() -> ApiError {
        ApiError::new(ErrorCode::Internal, INTERNAL_MESSAGE)
    }

    /// The 504 / 50301 error of a request that ran past the request timeout.
    pub fn timeout() -> ApiError {
        ApiError::new(ErrorCode::Unavailable, TIMEOUT_MESSAGE)
            .with_status(StatusCode::GATEWAY_TIMEOUT)
    }

    /// The 405 / 40001 error of a known path called with a method it does not serve; `allow` lists the methods it does.
    pub fn method_not_allowed(allow: Option<HeaderValue>) -> ApiError {
        let mut error = ApiError::invalid_argument("method not allowed on this path")
            .with_status(StatusCode::METHOD_NOT_ALLOWED);
        error.allow = allow;
        error
    }

    /// The same error with another HTTP status (for the few departures from the row's status).
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    /// Translates a gRPC status from the points service (or from the transport reaching it).
    ///
    /// The envelope code comes from `ErrorInfo.reason`; without a known reason it is derived from the gRPC code. The
    /// HTTP status is the reason's SPEC row, except that `DEADLINE_EXCEEDED` is always 504. `INTERNAL` messages and
    /// transport failures are replaced by fixed messages (and logged here, once).
    pub fn from_status(status: &tonic::Status) -> ApiError {
        // A status with a source was produced by the client side: connect refused, connection reset, h2 error.
        // Its message describes our network, not the request, so it is logged and replaced.
        if std::error::Error::source(status).is_some() {
            tracing::warn!(grpc_code = ?status.code(), error = %status, "points service unreachable");
            let (_, http_status) = fallback_for_grpc_code(status.code());
            let http_status = if http_status == StatusCode::GATEWAY_TIMEOUT {
                http_status
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut error = ApiError::new(ErrorCode::Unavailable, BACKEND_UNAVAILABLE_MESSAGE)
                .with_status(http_status);
            error.from_backend = true;
            return error;
        }
        let known_reason = status
            .get_details_error_info()
            .and_then(|info| ErrorCode::from_reason(&info.reason));
        let (code, http_status) = match known_reason {
            Some(code) if status.code() == Code::DeadlineExceeded => {
                (code, StatusCode::GATEWAY_TIMEOUT)
            }
            Some(code) => (code, code.http_status()),
            None => fallback_for_grpc_code(status.code()),
        };
        let message = match code {
            ErrorCode::Internal => {
                tracing::error!(grpc_code = ?status.code(), message = status.message(), "points service internal error");
                if http_status == StatusCode::NOT_IMPLEMENTED {
                    "not implemented by the points service".to_owned()
                } else {
                    INTERNAL_MESSAGE.to_owned()
                }
            }
            _ if status.message().is_empty() => code.reason().to_lowercase().replace('_', " "),
            _ => status.message().to_owned(),
        };
        let mut error = ApiError::new(code, message).with_status(http_status);
        error.from_backend = true;
        // RATE_LIMITED carries google.rpc.RetryInfo: the wait, rounded up to whole seconds (at least 1).
        error.retry_after_seconds = status
            .get_details_retry_info()
            .and_then(|info| info.retry_delay)
            .map(|delay| delay.as_millis().div_ceil(1000).max(1) as u64);
        error
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The envelope row.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The envelope message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> ApiError {
        ApiError::from_status(&status)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} {}: {}",
            self.status.as_u16(),
            self.code.reason(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if !self.from_backend {
            metrics::counter!(
                "gateway_refusals_total",
                "status" => self.status.as_u16().to_string(),
                "code" => self.code.code().to_string()
            )
            .increment(1);
        }
        let body = ErrorEnvelope::new(self.code.code(), self.message);
        let mut response = (self.status, Json(body)).into_response();
        if !self.from_backend {
            response.extensions_mut().insert(crate::refusals::Refused {
                reason: self.code.reason(),
            });
        }
        if let Some(allow) = self.allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    fn status_with_reason(code: Code, reason: &str, message: &str) -> tonic::Status {
        let details =
            ErrorDetails::with_error_info(reason, "points.v1", std::collections::HashMap::new());
        tonic::Status::with_error_details(code, message, details)
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
            ("RATE_LIMITED", 42901, 429, Code::ResourceExhausted),
            ("INTERNAL", 50001, 500, Code::Internal),
            ("UNAVAILABLE", 50301, 503, Code::Unavailable),
        ];
        assert_eq!(expected.len(), ErrorCode::ALL.len());
        for (reason, code, http, grpc) in expected {
            let row = ErrorCode::from_reason(reason).expect("reason is in the table");
            assert_eq!(row.code(), code, "{reason}");
            assert_eq!(row.http_status().as_u16(), http, "{reason}");
            assert_eq!(row.grpc_code(), grpc, "{reason}");
            assert_eq!(ErrorCode::from_code(code), Some(row));
        }
    }

    #[test]
    fn a_status_with_error_info_takes_code_and_http_status_from_the_reason() {
        for row in ErrorCode::ALL {
            let status = status_with_reason(row.grpc_code(), row.reason(), "something specific");
            let error = ApiError::from_status(&status);
            assert_eq!(error.code(), row);
            assert_eq!(error.status(), row.http_status());
            if row == ErrorCode::Internal {
                assert_eq!(error.message(), INTERNAL_MESSAGE);
            } else {
                assert_eq!(error.message(), "something specific");
            }
        }
    }

    #[test]
    fn failed_precondition_with_insufficient_points_is_422_not_400() {
        let status = status_with_reason(
            Code::FailedPrecondition,
            "INSUFFICIENT_POINTS",
            "balance 3 < 5",
        );
        let error = ApiError::from_status(&status);
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.code().code(), 42201);
    }

    #[test]
    fn a_status_without_error_info_is_derived_from_the_grpc_code() {
        let table = [
            (Code::InvalidArgument, 40001, 400),
            (Code::OutOfRange, 40001, 400),
            (Code::FailedPrecondition, 40001, 400),
            (Code::Unauthenticated, 40101, 401),
            (Code::PermissionDenied, 40301, 403),
            (Code::NotFound, 40401, 404),
            (Code::AlreadyExists, 40901, 409),
            (Code::Aborted, 40901, 409),
            (Code::ResourceExhausted, 42901, 429),
            (Code::Unimplemented, 50001, 501),
            (Code::Unknown, 50001, 500),
            (Code::Internal, 50001, 500),
            (Code::DataLoss, 50001, 500),
            (Code::Unavailable, 50301, 503),
            (Code::Cancelled, 50301, 503),
            (Code::DeadlineExceeded, 50301, 504),
        ];
        for (grpc, code, http) in table {
            let error = ApiError::from_status(&tonic::Status::new(grpc, "detail"));
            assert_eq!(error.code().code(), code, "{grpc:?}");
            assert_eq!(error.status().as_u16(), http, "{grpc:?}");
        }
    }

    #[test]
    fn an_unknown_reason_falls_back_to_the_grpc_code() {
        let status = status_with_reason(Code::NotFound, "SOMETHING_NEW", "gone");
        let error = ApiError::from_status(&status);
        assert_eq!(error.code(), ErrorCode::NotFound);
        assert_eq!(error.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn internal_messages_never_leak() {
        for code in [Code::Internal, Code::Unknown, Code::DataLoss] {
            let status = tonic::Status::new(code, "relation merchant_7.point_lots does not exist");
            assert_eq!(ApiError::from_status(&status).message(), INTERNAL_MESSAGE);
        }
    }

    #[test]
    fn deadline_exceeded_is_504_even_with_a_reason() {
        let status = status_with_reason(Code::DeadlineExceeded, "UNAVAILABLE", "deadline");
        let error = ApiError::from_status(&status);
        assert_eq!(error.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(error.code(), ErrorCode::Unavailable);
    }
}
