//! Thin tonic adapters: take the request, parse it into domain input, call the service, convert back.
//! No SQL here. [`handle`] is the one path every RPC takes, so each call's notes (digest, outcome) are complete.

pub mod api_keys;
pub mod audit;
pub mod gateway;
pub mod holds;
pub mod merchants;
pub mod messages;
pub mod points;
pub mod reports;
pub mod rules;

use std::{future::Future, sync::Arc};

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use crate::{
    call::CallContext,
    error::{ServiceError, ServiceResult},
    service::Services,
};

/// The state every adapter holds.
#[derive(Clone)]
pub struct Handlers {
    pub services: Arc<Services>,
}

/// Runs one RPC: takes the call context the auth layer attached, notes the request digest and the outcome.
pub async fn handle<Req, Res, F, Fut>(
    request: Request<Req>,
    run: F,
) -> Result<Response<Res>, Status>
where
    Req: prost::Message,
    F: FnOnce(Arc<CallContext>, Req) -> Fut,
    Fut: Future<Output = ServiceResult<Res>>,
{
    let Some(call) = request.extensions().get::<Arc<CallContext>>().cloned() else {
        // The auth layer attaches a context to every points.v1 call; without one the call is refused, not served.
        return Err(ServiceError::unauthenticated("call was not authenticated").into_status());
    };
    let message = request.into_inner();
    call.notes().request_digest = Some(blake3::hash(&message.encode_to_vec()).to_hex().to_string());
    let result = run(call.clone(), message).await;
    {
        let mut notes = call.notes();
        match &result {
            Ok(_) => notes.succeeded = true,
            Err(error) => notes.outcome = Some(error.code),
        }
    }
    result.map(Response::new).map_err(ServiceError::into_status)
}

/// chrono → protobuf timestamp.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// An optional chrono time → optional protobuf timestamp.
pub fn timestamp_opt(at: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    at.map(timestamp)
}

/// protobuf timestamp → chrono, refusing out-of-range values with a message naming the field.
pub fn parse_timestamp(
    field: &str,
    value: Option<prost_types::Timestamp>,
) -> ServiceResult<Option<DateTime<Utc>>> {
    match value {
        None => Ok(None),
        Some(value) => {
            let nanos = u32::try_from(value.nanos)
                .ok()
                .filter(|nanos| *nanos < 1_000_000_000);
            nanos
                .and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos))
                .filter(|at| (1970..=9999).contains(&chrono::Datelike::year(at)))
                .map(Some)
                .ok_or_else(|| ServiceError::invalid(format!("{field} is not a valid timestamp")))
        }
    }
}
