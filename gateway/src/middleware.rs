//! Layers every request goes through: request id, metrics, timeout, and the safety net that turns any bare error
//! response (axum's 405, tower-http's 413, a caught panic, a missing static file) into the JSON envelope.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::extract::HEADER_REQUEST_ID;

/// Longest accepted client request id; longer ones are replaced by a generated id.
pub const REQUEST_ID_LENGTH_MAX: usize = 128;
/// How every API key starts (SPEC §4): a request id containing one is refused, never logged.
const KEY_MARKERS: [&str; 2] = ["lp_live_", "lp_test_"];

/// The route label of requests that matched no route (keeps the metric's cardinality bounded).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The request id of the current request: the client's `x-request-id` when it looks like a request id (1–128
/// visible ASCII characters, nothing that starts like an API key), otherwise a generated UUID (v7, so ids sort by
/// time in logs). A key sent as a request id must never reach the logs or the audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh id.
    pub fn generate() -> RequestId {
        RequestId(uuid::Uuid::now_v7().to_string())
    }

    /// The client's id, if it is acceptable.
    pub fn from_client(value: &HeaderValue) -> Option<RequestId> {
        let bytes = value.as_bytes();
        let acceptable = !bytes.is_empty()
            && bytes.len() <= REQUEST_ID_LENGTH_MAX
            && bytes.iter().all(|byte| byte.is_ascii_graphic())
            && !KEY_MARKERS.iter().any(|marker| {
                bytes
                    .windows(marker.len())
                    .any(|window| window == marker.as_bytes())
            });
        acceptable.then(|| RequestId(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Accepts or generates the request id, stores it as an extension (and in the request header, for the trace span),
/// and returns it in the response's `x-request-id`.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let request_id = match request.headers().get(HEADER_REQUEST_ID) {
        None => RequestId::generate(),
        Some(given) => RequestId::from_client(given).unwrap_or_else(|| {
            let replacement = RequestId::generate();
            // The refused value is not logged: it may be a key.
            tracing::info!(
                request_id = replacement.as_str(),
                given_length = given.len(),
                "client x-request-id refused (not 1-128 visible ASCII characters, or key-shaped) and replaced"
            );
            replacement
        }),
    };
    let header_value = HeaderValue::from_str(request_id.as_str()).ok();
    if let Some(value) = &header_value {
        request
            .headers_mut()
            .insert(HEADER_REQUEST_ID, value.clone());
    }
    request.extensions_mut().insert(request_id);
    let mut response = next.run(request).await;
    if let Some(value) = header_value {
        response.headers_mut().insert(HEADER_REQUEST_ID, value);
    }
    response
}

/// The route label of a request: its route template (`/api/v1/points/entries/{entry_id}`), never the raw path.
pub fn route_label(request: &Request) -> String {
    match request.extensions().get::<MatchedPath>() {
        // Nested services (`/admin`, `/docs`) match a private tail parameter; give it a readable name.
        Some(path) => path
            .as_str()
            .replace("{*__private__axum_nest_tail_param}", "{*rest}"),
        None => UNMATCHED_ROUTE.to_owned(),
    }
}

/// The method label: standard methods by name, anything else as `OTHER` (bounded cardinality).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// Records `http_requests_total{route,method,code}` and `http_request_duration_seconds{route,method}`.
pub async fn record_metrics(request: Request, next: Next) -> Response {
    let route = route_label(&request);
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed_seconds = started.elapsed().as_secs_f64();
    let code = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method, "code" => code)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route, "method" => method)
        .record(elapsed_seconds);
    response
}

/// Answers 503 / 50301 (SPEC §8) when the request takes longer than the configured timeout.
pub async fn timeout(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => {
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
            ApiError::timeout().into_response()
        }
    }
}

/// Replaces an error response that is not JSON by the envelope, keeping the status for 404 and 405 (with `Allow`).
///
/// Handlers already answer with envelopes; this catches what axum and tower-http produce on their own: 405 for a
/// known path with another method, 413 from the body limit (→ 400, as SPEC §8 puts size errors under 40001),
/// ServeDir's 404 / 405, and the 500 of a caught panic.
pub async fn envelope_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if is_json {
        return response;
    }
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::method_not_allowed(response.headers().get(header::ALLOW).cloned())
        }
        StatusCode::NOT_FOUND => ApiError::not_found("not found"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::invalid_argument("request body is larger than the size limit")
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ApiError::timeout(),
        StatusCode::SERVICE_UNAVAILABLE => {
            ApiError::new(ErrorCode::Unavailable, "service unavailable, retry later")
        }
        _ if status.is_client_error() => ApiError::invalid_argument(format!(
            "bad request ({})",
            status
                .canonical_reason()
                .unwrap_or("client error")
                .to_lowercase()
        )),
        _ => {
            tracing::error!(
                status = status.as_u16(),
                "bare server error response replaced by the envelope"
            );
            ApiError::internal()
        }
    };
    let mut enveloped = error.into_response();
    if let Some(request_id) = response.headers().get(HEADER_REQUEST_ID) {
        enveloped
            .headers_mut()
            .insert(HEADER_REQUEST_ID, request_id.clone());
    }
    enveloped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_accepted_only_when_reasonable() {
        let accepted = ["abc", "0190d6a4-7b1c-7c9e-8f00-123456789abc", "trace:1/2"];
        for value in accepted {
            let header = HeaderValue::from_static(value);
            assert_eq!(
                RequestId::from_client(&header).map(|id| id.0),
                Some(value.to_owned())
            );
        }
        let too_long = "x".repeat(REQUEST_ID_LENGTH_MAX + 1);
        let refused = [
            HeaderValue::from_static(""),
            HeaderValue::from_static("has space"),
            too_long.parse().expect("ascii"),
            HeaderValue::from_static("lp_live_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
            HeaderValue::from_static("trace-lp_test_x"),
        ];
        for value in refused {
            assert_eq!(RequestId::from_client(&value), None, "{value:?}");
        }
    }
}
