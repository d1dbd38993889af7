//! The tower layer every `points.v1` call passes through: request id, tracing span, authentication and
//! authorization, metrics, and the call's log line. Health and reflection pass untouched.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::HeaderValue;
use tower::{Layer, Service};
use tracing::Instrument;

use super::{API_KEY_HEADER, Authenticator, MERCHANT_HEADER};
use crate::service::{CallContext, Transport};

/// Request id metadata key, accepted from the caller (the gateway) or generated.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Set by the REST gateway on the calls it makes.
pub const TRANSPORT_HEADER: &str = "x-points-transport";
const REQUEST_ID_LENGTH_MAX: usize = 128;

/// The layer; see the module docs.
#[derive(Clone)]
pub struct CallLayer {
    authenticator: Arc<Authenticator>,
}

impl CallLayer {
    pub fn new(authenticator: Arc<Authenticator>) -> CallLayer {
        CallLayer { authenticator }
    }
}

impl<S> Layer<S> for CallLayer {
    type Service = CallService<S>;

    fn layer(&self, inner: S) -> CallService<S> {
        CallService { inner, authenticator: self.authenticator.clone() }
    }
}

/// The service [`CallLayer`] wraps around the gRPC routes.
#[derive(Clone)]
pub struct CallService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

fn header<'a>(request: &'a http::Request<tonic::body::Body>, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|value| value.to_str().ok())
}

fn valid_request_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= REQUEST_ID_LENGTH_MAX && value.bytes().all(|b| b.is_ascii_graphic())
}

impl<S, B> Service<http::Request<tonic::body::Body>> for CallService<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<B>> + Clone + Send + 'static,
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
        let request_id = header(&request, REQUEST_ID_HEADER)
            .filter(|value| valid_request_id(value))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let transport = match header(&request, TRANSPORT_HEADER) {
            Some("rest") => Transport::Rest,
            _ => Transport::Grpc,
        };
        let api_key = header(&request, API_KEY_HEADER).map(str::to_owned);
        let merchant = header(&request, MERCHANT_HEADER).map(str::to_owned);
        let span = tracing::info_span!("call", %method, %request_id, transport = transport.as_str());
        Box::pin(
            async move {
                let started = std::time::Instant::now();
                let auth = authenticator.authenticate(&method, api_key.as_deref(), merchant.as_deref()).await;
                let (mut response, outcome) = match auth {
                    Err(failure) => {
                        let reason = failure.error.code.reason();
                        tracing::info!(outcome = reason, message = %failure.error.message, "call refused");
                        (failure.error.into_status().into_http(), reason)
                    }
                    Ok(auth) => {
                        let call = Arc::new(CallContext::new(request_id.clone(), method.clone(), transport, auth));
                        request.extensions_mut().insert(call.clone());
                        let response = inner.call(request).await?;
                        let outcome = call.notes().outcome.map_or("OK", |code| code.reason());
                        (response, outcome)
                    }
                };
                let latency = started.elapsed();
                tracing::info!(outcome, latency_us = latency.as_micros() as u64, "call finished");
                metrics::counter!("grpc_requests_total", "method" => method.clone(), "outcome" => outcome)
                    .increment(1);
                metrics::histogram!("grpc_request_duration_seconds", "method" => method).record(latency.as_secs_f64());
                if let Ok(value) = HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}
