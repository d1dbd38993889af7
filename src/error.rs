//! The service error every layer returns. Its codes are the SPEC §8 table of the contract crate
//! ([`points_api::ErrorCode`]); internal causes are logged here, once, and never reach a client.

use std::collections::HashMap;

use tonic_types::{ErrorDetails, StatusExt};

pub use points_api::{ERROR_DOMAIN, ErrorCode};

/// An error as a client sees it: a SPEC code and a message safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
}

/// The message every internal error shows; the cause is only logged.
pub const INTERNAL_MESSAGE: &str = "internal error; the cause has been logged";

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError::new(ErrorCode::InvalidArgument, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        ServiceError::new(ErrorCode::Unauthenticated, message)
    }
    pub fn permission_denied(message: impl Into<String>) -> Self {
        ServiceError::new(ErrorCode::PermissionDenied, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ServiceError::new(ErrorCode::NotFound, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        ServiceError::new(ErrorCode::Unavailable, message)
    }

    /// Logs an unexpected cause with its full chain and returns the fixed internal error.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %ErrorChain(cause), "internal error");
        ServiceError::new(ErrorCode::Internal, INTERNAL_MESSAGE)
    }

    /// Converts to a tonic status carrying `google.rpc.ErrorInfo { reason, domain }`.
    pub fn into_status(self) -> tonic::Status {
        self.into_status_with_retry(None)
    }

    /// Like [`ServiceError::into_status`], with `google.rpc.RetryInfo { retry_delay }` when a retry delay is known
    /// (rate limits).
    pub fn into_status_with_retry(self, retry_after: Option<std::time::Duration>) -> tonic::Status {
        let mut details = ErrorDetails::with_error_info(
            self.code.reason(),
            ERROR_DOMAIN,
            HashMap::<String, String>::new(),
        );
        if let Some(delay) = retry_after {
            details.set_retry_info(Some(delay));
        }
        tonic::Status::with_error_details(self.code.grpc_code(), self.message, details)
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(error: ServiceError) -> Self {
        error.into_status()
    }
}

/// SQLSTATEs that mean "the database cannot serve right now", as opposed to a bug.
const UNAVAILABLE_SQLSTATES: &[&str] = &[
    "57014", // query_canceled: statement_timeout fired
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "53300", // too_many_connections
    "55P03", // lock_not_available: lock_timeout fired
];

impl From<tokio_postgres::Error> for ServiceError {
    fn from(error: tokio_postgres::Error) -> Self {
        // Class 08, connection exception: the connection failed or was refused. pgbouncer also reports its own
        // refusals so (08P01: a query that waited query_wait_timeout for a server session, a server whose login keeps
        // failing).
        let sqlstate_unavailable = error.code().is_some_and(|state| {
            UNAVAILABLE_SQLSTATES.contains(&state.code()) || state.code().starts_with("08")
        });
        if error.is_closed()
            || sqlstate_unavailable
            || error.code().is_none() && is_io_error(&error)
        {
            tracing::warn!(error = %ErrorChain(&error), "database unavailable");
            return ServiceError::unavailable("database unavailable; retry later");
        }
        ServiceError::internal(&error)
    }
}

fn is_io_error(error: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

impl From<deadpool_postgres::PoolError> for ServiceError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        // Whatever kept the pool from handing out a connection (timeout, a refused or failed connect, a database
        // not accepting connections), the database cannot serve this request now: the client should retry.
        tracing::warn!(error = %ErrorChain(&error), "database pool unavailable");
        ServiceError::unavailable("database unavailable; retry later")
    }
}

/// Displays an error with all its sources, `outer: inner: root`.
pub struct ErrorChain<'a>(pub &'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(formatter, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Result of a service call.
pub type ServiceResult<T> = Result<T, ServiceError>;

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn status_carries_the_reason_as_error_info() {
        let status = ServiceError::new(ErrorCode::InsufficientPoints, "short").into_status();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "INSUFFICIENT_POINTS");
        assert_eq!(info.domain, ERROR_DOMAIN);
    }
}
