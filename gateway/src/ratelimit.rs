//! Passes the points service's rate-limit fields (`RateLimit-Policy`, `RateLimit`; SPEC §14) on to REST clients.
//!
//! The service puts them on each gRPC response as metadata. Handlers only see the message, so the capture happens
//! underneath them: [`CaptureRateLimit`] wraps the gRPC channel and copies the two fields of every response into a
//! slot of the current request's task ([`pass_rate_limit_headers`] opens that slot around the handler, then sets the
//! HTTP headers from it). The gRPC call runs inside the handler's future, so it sees the slot of its own request.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The fields, as the service names them in its metadata and as they go out over HTTP.
const FIELDS: [HeaderName; 2] = [
    HeaderName::from_static("ratelimit-policy"),
    HeaderName::from_static("ratelimit"),
];

type Captured = Vec<(HeaderName, HeaderValue)>;

tokio::task_local! {
    static CAPTURED: RefCell<Captured>;
}

/// Middleware: the rate-limit fields of the gRPC calls the handler made become the response's headers (the last
/// call's win).
pub async fn pass_rate_limit_headers(request: Request, next: Next) -> Response {
    CAPTURED
        .scope(RefCell::new(Vec::new()), async move {
            let mut response = next.run(request).await;
            let captured = CAPTURED.with(|captured| std::mem::take(&mut *captured.borrow_mut()));
            for (name, value) in captured {
                response.headers_mut().insert(name, value);
            }
            response
        })
        .await
}

/// A gRPC channel that notes the rate-limit fields of each response.
#[derive(Clone, Debug)]
pub struct CaptureRateLimit<S>(pub S);

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for CaptureRateLimit<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let response = self.0.call(request);
        Box::pin(async move {
            let response = response.await?;
            let fields: Captured = FIELDS
                .iter()
                .filter_map(|name| {
                    response
                        .headers()
                        .get(name)
                        .map(|value| (name.clone(), value.clone()))
                })
                .collect();
            if !fields.is_empty() {
                // Outside a REST request (no slot) there is nobody to tell.
                let _ = CAPTURED.try_with(|captured| *captured.borrow_mut() = fields);
            }
            Ok(response)
        })
    }
}
