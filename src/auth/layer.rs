//! The tower layer every `points.v1` call passes through: request id, tracing span, authentication and
//! authorization, the call's audit record (see [`crate::audit`]), metrics, and the call's log line. Health and
//! reflection pass untouched.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::FutureExt;
use http::HeaderValue;
use tower::{Layer, Service};
use tracing::Instrument;

use super::limits::{
    RATE_LIMIT_HEADER, RATE_LIMIT_POLICY_HEADER, RETRY_AFTER_HEADER, RateLimits,
    retry_after_seconds,
};
use super::sources::{CLIENT_ADDR_HEADER, Recording, Sources};
use super::{API_KEY_HEADER, Authenticator, MERCHANT_HEADER};
use crate::call::AuthFailure;
use crate::{
    audit::buffer::{AuditLog, CallRecorder},
    call::{self, CallContext, Transport},
};

pub use points_api::headers::{
    GATEWAY_TOKEN as GATEWAY_TOKEN_HEADER, REQUEST_ID as REQUEST_ID_HEADER,
    TRANSPORT as TRANSPORT_HEADER,
};
const REQUEST_ID_LENGTH_MAX: usize = 128;

/// The layer; see the module docs.
#[derive(Clone)]
pub struct CallLayer {
    authenticator: Arc<Authenticator>,
    audit: Arc<AuditLog>,
    limits: Arc<RateLimits>,
    sources: Arc<Sources>,
    in_flight: Arc<tokio::sync::Semaphore>,
    gateway_token: blake3::Hash,
}

impl CallLayer {
    pub fn new(
        authenticator: Arc<Authenticator>,
        audit: Arc<AuditLog>,
        limits: Arc<RateLimits>,
        sources: Arc<Sources>,
        in_flight: Arc<tokio::sync::Semaphore>,
        gateway_token: &str,
    ) -> CallLayer {
        CallLayer {
            authenticator,
            audit,
            limits,
            sources,
            in_flight,
            gateway_token: blake3::hash(gateway_token.as_bytes()),
        }
    }
}

impl<S> Layer<S> for CallLayer {
    type Service = CallService<S>;

    fn layer(&self, inner: S) -> CallService<S> {
        CallService {
            inner,
            authenticator: self.authenticator.clone(),
            audit: self.audit.clone(),
            limits: self.limits.clone(),
            sources: self.sources.clone(),
            in_flight: self.in_flight.clone(),
            gateway_token: self.gateway_token,
        }
    }
}

/// The service [`CallLayer`] wraps around the gRPC routes.
#[derive(Clone)]
pub struct CallService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
    audit: Arc<AuditLog>,
    limits: Arc<RateLimits>,
    sources: Arc<Sources>,
    /// Calls in progress: a call that finds no permit is shed (UNAVAILABLE at once) instead of queueing.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// The hash of the gateway token: compared as hashes (blake3's equality is constant-time), so the time a
    /// wrong token takes says nothing about the right one.
    gateway_token: blake3::Hash,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

fn header<'a>(request: &'a http::Request<tonic::body::Body>, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// The client's address: the TCP peer's, or — for a loopback peer, i.e. a gateway beside the server — the one
/// the gateway forwards in `x-points-client-addr`.
fn source_address(request: &http::Request<tonic::body::Body>) -> Option<std::net::IpAddr> {
    let peer = request
        .extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
        .map(|address| address.ip());
    match peer {
        Some(peer) if peer.is_loopback() => Some(
            header(request, CLIENT_ADDR_HEADER)
                .and_then(|value| value.parse().ok())
                .unwrap_or(peer),
        ),
        other => other,
    }
}

/// A caller's request id is kept when it is short printable ASCII; one that looks like it carries an API key is
/// replaced, so a key never reaches logs or audit records that way.
fn valid_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= REQUEST_ID_LENGTH_MAX
        && value.bytes().all(|b| b.is_ascii_graphic())
        && !call::looks_like_api_key(value)
}

impl<S, B> Service<http::Request<tonic::body::Body>> for CallService<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Default + Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<B>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let method = request.uri().path().to_owned();
        if !method.starts_with("/points.v1.") {
            return Box::pin(self.inner.call(request));
        }
        // The clone that was polled ready is the one we must call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        let audit = self.audit.clone();
        let limits = self.limits.clone();
        let sources = self.sources.clone();
        let permit = self.in_flight.clone().try_acquire_owned().ok();
        let source = source_address(&request);
        let request_id = match request.headers().get(REQUEST_ID_HEADER) {
            None => uuid::Uuid::new_v4().to_string(),
            Some(given) => match given.to_str().ok().filter(|value| valid_request_id(value)) {
                Some(value) => value.to_owned(),
                None => {
                    let replacement = uuid::Uuid::new_v4().to_string();
                    // The refused value is not logged: it may be a key.
                    tracing::info!(
                        request_id = %replacement,
                        given_length = given.len(),
                        "client x-request-id refused (not 1-128 visible ASCII characters, or key-shaped) and replaced"
                    );
                    replacement
                }
            },
        };
        // Only the gateway may say a call came over REST: it proves itself with the gateway token.
        let from_gateway = header(&request, GATEWAY_TOKEN_HEADER)
            .is_some_and(|token| blake3::hash(token.as_bytes()) == self.gateway_token);
        let transport = match header(&request, TRANSPORT_HEADER) {
            Some("rest") if from_gateway => Transport::Rest,
            _ => Transport::Grpc,
        };
        let api_key = header(&request, API_KEY_HEADER).map(str::to_owned);
        let merchant = header(&request, MERCHANT_HEADER).map(str::to_owned);
        // The method path is the client's: one carrying a key is logged (and audited) redacted.
        let span = tracing::info_span!(
            "call",
            method = %call::recorded_method(&method),
            %request_id,
            transport = transport.as_str()
        );
        Box::pin(
            async move {
                let started = std::time::Instant::now();
                // Records the call whatever happens next, even if this future is dropped (see CallRecorder).
                let mut recorder = CallRecorder::start(audit, &method, &request_id, transport);
                let lookup_blocked = || source.and_then(|address| sources.blocked_for(address));
                let auth = match &permit {
                    Some(_) => {
                        authenticator
                            .authenticate(&method, api_key.as_deref(), merchant.as_deref(), lookup_blocked)
                            .await
                    }
                    None => {
                        metrics::counter!("calls_shed_total").increment(1);
                        Err(AuthFailure {
                            retry_after: Some(std::time::Duration::from_secs(1)),
                            ..AuthFailure::anonymous(crate::error::ServiceError::unavailable(
                                "the server is at its limit of calls in progress; retry shortly",
                            ))
                        })
                    }
                };
                if let (Err(failure), Some(address)) = (&auth, source)
                    && failure.error.code == crate::error::ErrorCode::Unauthenticated
                {
                    sources.failed(address);
                }
                let mut allowance = None;
                let auth = auth.and_then(|auth| match limits.check(&auth) {
                    Ok(granted) => {
                        allowance = Some(granted);
                        Ok(auth)
                    }
                    Err(limited) => Err(AuthFailure::limited(&auth, limited)),
                });
                let (mut response, outcome) = match auth {
                    Err(failure) => {
                        let reason = failure.error.code.reason();
                        let message = &failure.error.message;
                        let message = if call::looks_like_api_key(message) { "[redacted]" } else { message };
                        tracing::info!(outcome = reason, message, "call refused");
                        // Refusals cost at most a bounded number of audit rows per address and minute; the rest
                        // are counted into one summary record (see auth::sources).
                        let outcome = match source.map(|address| sources.refusal(address)) {
                            Some(Recording::Summarised) => recorder.summarised(&failure),
                            _ => recorder.refused(&failure).await,
                        };
                        let retry_after = failure.retry_after;
                        let mut response = failure.error.into_status_with_retry(retry_after).into_http();
                        if let Some(wait) = retry_after
                            && let Ok(value) = HeaderValue::from_str(&retry_after_seconds(wait).to_string())
                        {
                            response.headers_mut().insert(RETRY_AFTER_HEADER, value);
                        }
                        (response, outcome)
                    }
                    Ok(auth) => {
                        let call = Arc::new(CallContext::new(request_id.clone(), method.clone(), transport, auth));
                        request.extensions_mut().insert(call.clone());
                        recorder.attach(call);
                        // A panic in a handler is a bug: answer INTERNAL (the panic is logged) instead of tearing
                        // down the connection, which clients would see as UNAVAILABLE and retry.
                        let response = match std::panic::AssertUnwindSafe(inner.call(request)).catch_unwind().await {
                            Ok(response) => response?,
                            Err(_) => {
                                let error = std::io::Error::other(format!("handler of {method} panicked"));
                                crate::error::ServiceError::internal(&error).into_status().into_http()
                            }
                        };
                        let outcome = recorder.served(tonic::Status::from_header_map(response.headers())).await;
                        (response, outcome)
                    }
                };
                let outcome = outcome.name();
                let latency = started.elapsed();
                tracing::info!(outcome, latency_us = latency.as_micros() as u64, "call finished");
                // Only declared methods become label values: an arbitrary path must not grow the metric set.
                let method_label = if super::access::requirement(&method).is_some() { method.clone() } else { "unknown".to_owned() };
                metrics::counter!("grpc_requests_total", "method" => method_label.clone(), "outcome" => outcome)
                    .increment(1);
                metrics::histogram!("grpc_request_duration_seconds", "method" => method_label).record(latency.as_secs_f64());
                if let Ok(value) = HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                if let Some(allowance) = allowance {
                    for (name, value) in [(RATE_LIMIT_POLICY_HEADER, allowance.policy), (RATE_LIMIT_HEADER, allowance.state)] {
                        if let Ok(value) = HeaderValue::from_str(&value) {
                            response.headers_mut().insert(name, value);
                        }
                    }
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}
