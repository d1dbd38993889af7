//! The error-code table of SPEC §8 and the gateway's one error type.
//!
//! Every error the gateway returns — a gRPC status from the points service, a transport failure reaching it, or a
//! request the gateway refuses before calling it — becomes an [`ApiError`], which renders as the `{code, message,
//! data: null}` envelope. The mappings live here and nowhere else:
//!
//! * [`ErrorCode`], the contract crate's SPEC §8 table: envelope code, `ErrorInfo.reason`, HTTP status, gRPC code,
//!   and the one rule for reading a status back ([`ErrorCode::of_status`]);
//! * [`ApiError::from_status`]: that row with the row's HTTP status, plus the rule that `INTERNAL` messages and
//!   transport failures are never echoed.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic_types::StatusExt;

use crate::envelope::ErrorEnvelope;

pub use points_api::ErrorCode;

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

    /// The 503 / 50301 error of a request that ran past the request timeout (SPEC §8: 50301 is 503).
    pub fn timeout() -> ApiError {
        ApiError::new(ErrorCode::Unavailable, TIMEOUT_MESSAGE)
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
    /// The row is [`ErrorCode::of_status`] (the reason, or the fallback of the gRPC code) and the HTTP status is the
    /// row's ([`ErrorCode::http_status_of`]). `INTERNAL` messages and transport failures are replaced by fixed messages (and logged here, once).
    pub fn from_status(status: &tonic::Status) -> ApiError {
        // A status with a source was produced by the client side: connect refused, connection reset, h2 error.
        // Its message describes our network, not the request, so it is logged and replaced.
        if std::error::Error::source(status).is_some() {
            tracing::warn!(grpc_code = ?status.code(), error = %status, "points service unreachable");
            let mut error = ApiError::new(ErrorCode::Unavailable, BACKEND_UNAVAILABLE_MESSAGE);
            error.from_backend = true;
            return error;
        }
        let code = ErrorCode::of_status(status);
        let message = match code {
            ErrorCode::Internal => {
                tracing::error!(grpc_code = ?status.code(), message = status.message(), "points service internal error");
                if status.code() == tonic::Code::Unimplemented {
                    "not implemented by the points service".to_owned()
                } else {
                    INTERNAL_MESSAGE.to_owned()
                }
            }
            ErrorCode::Unavailable if status.code() == tonic::Code::DeadlineExceeded => {
                TIMEOUT_MESSAGE.to_owned()
            }
            _ if status.message().is_empty() => code.reason().to_lowercase().replace('_', " "),
            _ => status.message().to_owned(),
        };
        let mut error = ApiError::new(code, message).with_status(ErrorCode::http_status_of(status));
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

/// A conversion that cannot fail (`From` seen as `TryFrom`), for the generic forwarding path.
impl From<std::convert::Infallible> for ApiError {
    fn from(never: std::convert::Infallible) -> ApiError {
        match never {}
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
                "code" => self.code.envelope_code().to_string()
            )
            .increment(1);
        }
        let body = ErrorEnvelope::new(self.code.envelope_code(), self.message);
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
    use tonic::Code;
    use tonic_types::{ErrorDetails, StatusExt};

    fn status_with_reason(code: Code, reason: &str, message: &str) -> tonic::Status {
        let details =
            ErrorDetails::with_error_info(reason, "points.v1", std::collections::HashMap::new());
        tonic::Status::with_error_details(code, message, details)
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
        assert_eq!(error.code().envelope_code(), 42201);
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
            (Code::DeadlineExceeded, 50301, 503),
        ];
        for (grpc, code, http) in table {
            let error = ApiError::from_status(&tonic::Status::new(grpc, "detail"));
            assert_eq!(error.code().envelope_code(), code, "{grpc:?}");
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
    fn deadline_exceeded_is_503_as_spec_section_8_says_for_50301() {
        let status = status_with_reason(Code::DeadlineExceeded, "UNAVAILABLE", "deadline");
        let error = ApiError::from_status(&status);
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.code(), ErrorCode::Unavailable);
        let error = ApiError::from_status(&tonic::Status::deadline_exceeded("late"));
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.message(), TIMEOUT_MESSAGE);
    }
}
