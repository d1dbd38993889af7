//! Extractors that turn every bad input into the error envelope instead of axum's plain-text rejections.
//!
//! * [`ApiJson`] / [`OptionalApiJson`]: the JSON body (content type, size limit, syntax, types, unknown fields);
//! * [`ApiQuery`] / [`ApiPath`]: query string and path parameters;
//! * [`CallContext`]: the caller's `x-api-key`, `x-merchant-id` and request id, ready to be sent as gRPC metadata.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tonic::metadata::AsciiMetadataValue;

use crate::error::{ApiError, ErrorCode};
use crate::middleware::RequestId;
use crate::state::AppState;

/// Header names, from the contract: the API key; the merchant an admin key acts for; the request id (accepted
/// from the client or generated); the transport the server's audit records (believed with the gateway token only);
/// the HTTP client's address (believed from a loopback peer only).
pub use points_api::headers::{
    API_KEY as HEADER_API_KEY, CLIENT_ADDR as METADATA_CLIENT_ADDR,
    GATEWAY_TOKEN as METADATA_GATEWAY_TOKEN, MERCHANT_ID as HEADER_MERCHANT_ID,
    REQUEST_ID as HEADER_REQUEST_ID, TRANSPORT as METADATA_TRANSPORT,
};

/// How much later than the HTTP request timeout the gRPC deadline falls.
pub const GRPC_DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// A JSON request body, deserialized strictly (the request types deny unknown fields).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// A JSON request body that may be omitted: an empty body means `T::default()`.
#[derive(Debug)]
pub struct OptionalApiJson<T>(pub T);

/// Query-string parameters.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

/// Path parameters.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = is_json_content_type(request.headers());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_rejection)?;
        if !is_json {
            return Err(missing_json_content_type());
        }
        parse_json(&bytes).map(ApiJson)
    }
}

impl<T, S> FromRequest<S> for OptionalApiJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = is_json_content_type(request.headers());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalApiJson(T::default()));
        }
        if !is_json {
            return Err(missing_json_content_type());
        }
        // `null` means "no body" too, as the OpenAPI document allows.
        parse_json::<Option<T>>(&bytes).map(|body| OptionalApiJson(body.unwrap_or_default()))
    }
}

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::invalid_argument(lowercase_first(&rejection.body_text()))
            })
    }
}

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection: PathRejection| {
                ApiError::invalid_argument(lowercase_first(&rejection.body_text()))
            })
    }
}

/// Accepts `application/json` and `application/<anything>+json`, with parameters such as `charset`.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn missing_json_content_type() -> ApiError {
    ApiError::invalid_argument("expected a JSON body with content-type: application/json")
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::invalid_argument("request body is larger than the size limit")
    } else {
        ApiError::invalid_argument(format!(
            "cannot read the request body: {}",
            rejection.body_text()
        ))
    }
}

/// Deserializes a body, naming the path of the offending field (`operations[3].points: invalid type ...`).
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let detail = plain_type_names(&inner.to_string());
        let message = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("malformed JSON body: {inner}")
            }
            serde_json::error::Category::Data | serde_json::error::Category::Io if path == "." => {
                format!("invalid request body: {detail}")
            }
            serde_json::error::Category::Data | serde_json::error::Category::Io => {
                format!("invalid request body: {path}: {detail}")
            }
        };
        ApiError::invalid_argument(message)
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::invalid_argument(format!("malformed JSON body: {error}")))?;
    Ok(value)
}

/// serde names Rust types ("expected i64"); clients know JSON, so say what JSON value is expected.
fn plain_type_names(message: &str) -> String {
    ["i64", "i32", "u64", "u32"]
        .iter()
        .fold(message.to_owned(), |text, rust_type| {
            text.replace(&format!("expected {rust_type}"), "expected an integer")
        })
}

fn lowercase_first(text: &str) -> String {
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_lowercase().chain(characters).collect(),
        None => String::new(),
    }
}

/// Who is calling and how to tell the points service: the metadata every gRPC call carries.
#[derive(Clone, Debug)]
pub struct CallContext {
    api_key: Option<AsciiMetadataValue>,
    merchant_id: Option<AsciiMetadataValue>,
    request_id: AsciiMetadataValue,
    /// The HTTP client's address, which the points service limits failed authentications by.
    client_addr: Option<AsciiMetadataValue>,
    gateway_token: Option<AsciiMetadataValue>,
    timeout: Duration,
}

impl CallContext {
    /// Wraps `message` in a gRPC request with `x-api-key`, `x-merchant-id`, `x-request-id`,
    /// `x-points-transport: rest` and the gRPC deadline (the request timeout plus [`GRPC_DEADLINE_MARGIN`]).
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if let Some(api_key) = &self.api_key {
            metadata.insert(HEADER_API_KEY, api_key.clone());
        }
        if let Some(merchant_id) = &self.merchant_id {
            metadata.insert(HEADER_MERCHANT_ID, merchant_id.clone());
        }
        metadata.insert(HEADER_REQUEST_ID, self.request_id.clone());
        metadata.insert(METADATA_TRANSPORT, AsciiMetadataValue::from_static("rest"));
        if let Some(token) = &self.gateway_token {
            metadata.insert(METADATA_GATEWAY_TOKEN, token.clone());
        }
        if let Some(client_addr) = &self.client_addr {
            metadata.insert(METADATA_CLIENT_ADDR, client_addr.clone());
        }
        // The deadline is a little later than the gateway's own timeout, so a slow call always ends in the
        // gateway's own 503 timeout answer (not in whatever status the server's deadline handling chooses) while the server still
        // learns when to give up.
        request.set_timeout(self.timeout + GRPC_DEADLINE_MARGIN);
        request
    }
}

impl FromRequestParts<AppState> for CallContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let api_key = match parts.headers.get(HEADER_API_KEY) {
            Some(value) => Some(printable_ascii(value).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "the x-api-key header is malformed",
                )
            })?),
            None => None,
        };
        let merchant_id = match parts.headers.get(HEADER_MERCHANT_ID) {
            Some(value) => Some(printable_ascii(value).ok_or_else(|| {
                ApiError::invalid_argument("the x-merchant-id header is malformed")
            })?),
            None => None,
        };
        let request_id = match parts.extensions.get::<RequestId>() {
            Some(request_id) => request_id.clone(),
            None => RequestId::generate(),
        };
        let request_id = AsciiMetadataValue::try_from(request_id.as_str()).map_err(|_| {
            tracing::error!("request id is not ASCII although the middleware checked it");
            ApiError::internal()
        })?;
        let client_addr = parts
            .extensions
            .get::<axum::extract::ConnectInfo<crate::connections::ClientAddr>>()
            .and_then(|info| AsciiMetadataValue::try_from(info.0.0.ip().to_string()).ok());
        Ok(CallContext {
            api_key,
            merchant_id,
            request_id,
            client_addr,
            gateway_token: state.gateway_token.clone(),
            timeout: state.request_timeout,
        })
    }
}

/// The header as gRPC ASCII metadata, if every byte is printable ASCII (HTTP also allows bytes 0x80–0xFF, which
/// no key or id contains).
fn printable_ascii(value: &HeaderValue) -> Option<AsciiMetadataValue> {
    let bytes = value.as_bytes();
    if !bytes.iter().all(|byte| (b' '..=b'~').contains(byte)) {
        return None;
    }
    AsciiMetadataValue::try_from(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        uid: String,
        points: i64,
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            (r#"{"uid": "u1", "points": 5"#, "malformed JSON body"),
            (r#"{"uid": "u1", "points": "five"}"#, "points: invalid type"),
            (r#"{"uid": "u1", "points": "5"}"#, "expected an integer"),
            (
                r#"{"uid": "u1", "points": 5, "extra": 1}"#,
                "unknown field `extra`",
            ),
            (r#"{"uid": "u1"}"#, "missing field `points`"),
            (
                r#"{"uid": "u1", "points": 5} trailing"#,
                "malformed JSON body",
            ),
        ];
        for (body, expected) in cases {
            let error = parse_json::<Body>(body.as_bytes()).expect_err(body);
            assert_eq!(error.code(), ErrorCode::InvalidArgument);
            assert!(
                error.message().contains(expected),
                "{body}: {}",
                error.message()
            );
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        let accepted = [
            "application/json",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
        ];
        let refused = ["text/plain", "application/x-www-form-urlencoded", "json"];
        for (content_type, expected) in accepted
            .iter()
            .map(|value| (value, true))
            .chain(refused.iter().map(|value| (value, false)))
        {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                content_type.parse().expect("valid header"),
            );
            assert_eq!(is_json_content_type(&headers), expected, "{content_type}");
        }
        assert!(!is_json_content_type(&HeaderMap::new()));
    }
}
