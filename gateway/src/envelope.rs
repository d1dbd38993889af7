//! The response envelope of SPEC §8: `{"code": <int>, "message": <string>, "data": <object|null>}`.
//!
//! Handlers return [`ApiResult<T>`]: `Ok(Success)` renders `{code: 0, message: "OK", data}` with 200 or 201, and
//! `Err(ApiError)` renders the error envelope (see [`crate::error`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::error::ApiError;

/// The success envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Always 0 on success.
    #[schema(example = 0)]
    pub code: i32,
    /// Always "OK" on success.
    #[schema(example = "OK")]
    pub message: String,
    /// The payload.
    pub data: T,
}

/// The error envelope: `data` is always null.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// The SPEC §8 error code, e.g. 40001.
    #[schema(example = 40001)]
    pub code: i32,
    /// A human-readable explanation; never internal details.
    #[schema(example = "invalid request body: missing field `uid`")]
    pub message: String,
    /// Always null.
    #[schema(schema_with = null_schema)]
    pub data: (),
}

impl ErrorEnvelope {
    /// An error envelope with `data: null`.
    pub fn new(code: i32, message: impl Into<String>) -> ErrorEnvelope {
        ErrorEnvelope {
            code,
            message: message.into(),
            data: (),
        }
    }
}

/// The schema of a value that is always `null`.
fn null_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(schema::SchemaType::Type(Type::Null))
        .build()
        .into()
}

/// A success response: 200 or 201 with the envelope around `data`.
#[derive(Debug)]
pub struct Success<T> {
    status: StatusCode,
    data: T,
}

impl<T> Success<T> {
    /// 200 OK.
    pub fn ok(data: T) -> Success<T> {
        Success::with_status(StatusCode::OK, data)
    }

    /// 201 Created: the call created a merchant, an API key or a ledger entry.
    pub fn created(data: T) -> Success<T> {
        Success::with_status(StatusCode::CREATED, data)
    }

    /// A success with the given status (200 or 201).
    pub fn with_status(status: StatusCode, data: T) -> Success<T> {
        Success { status, data }
    }
}

impl<T: Serialize> IntoResponse for Success<T> {
    fn into_response(self) -> Response {
        let body = Envelope {
            code: 0,
            message: "OK".to_owned(),
            data: self.data,
        };
        (self.status, Json(body)).into_response()
    }
}

/// What every handler returns.
pub type ApiResult<T> = Result<Success<T>, ApiError>;
