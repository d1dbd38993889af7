//! The gRPC server's own services as the gateway's channel, when both run in one process.
//!
//! The gateway's tonic clients are generic over the service they send through. Over the network that is
//! [`Balanced`](crate::backend::Balanced): tonic encodes the message, and the bytes travel over loopback TCP in HTTP/2
//! frames to the server, which decodes them again. In the `points` binary the gateway instead gets an
//! [`InProcessService`] around the very service stack the gRPC listener serves (its call layer — authentication, scopes,
//! rate limits, the gateway-token check, audit, metrics — over the same routes), so a REST call reaches its handler
//! as a function call: no socket, no HTTP/2 framing, no second task.
//!
//! What the network hop did besides carrying bytes, [`InProcessService`] does itself, so the server cannot tell the two
//! apart:
//! - **Only headers cross.** Request extensions are cleared, as a network hop drops them: whatever the gateway side
//!   attached to a request never reaches the server's layers. Everything the server believes about a call (API key,
//!   merchant, request id, the gateway token that alone makes `x-points-transport: rest` count) is read from
//!   headers, exactly as before.
//! - **The peer is loopback.** The call carries the connection info of a loopback peer, which is what the gateway
//!   in the same process was; so the server believes the client address the gateway forwards
//!   (`x-points-client-addr`) for its per-address limits, as it did.
//! - **Deadlines.** The shorter of the call's `grpc-timeout` and the server's request timeout bounds the call, and
//!   when it passes the answer is CANCELLED "Timeout expired", as tonic's server answers.
//! - **Errors** of the service stack become a gRPC status where one fits, as tonic's server recovers them.
//! - **Cancellation.** The call runs inside the REST request's future: when the REST client goes away (or the
//!   gateway's timeout fires), the call's future is dropped, as the server drops a call whose stream was reset.

use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use tonic::transport::server::TcpConnectInfo;
use tower::ServiceExt;

use tower::BoxError;

/// A request of the gateway's gRPC clients.
pub type GrpcRequest = http::Request<tonic::body::Body>;
/// A response to one.
pub type GrpcResponse = http::Response<tonic::body::Body>;
type GrpcFuture = Pin<Box<dyn Future<Output = Result<GrpcResponse, BoxError>> + Send>>;

/// The address an in-process call comes from: loopback (the port means nothing).
const IN_PROCESS_PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// The server's service stack as the gateway's channel (see the module documentation).
///
/// A clone is one reference count: the gateway clones its clients (and so this channel) for every REST request,
/// and the stack behind it — the call layer's shared state over the routes — is cloned once per call instead.
#[derive(Clone)]
pub struct InProcessService {
    call: Arc<dyn Fn(GrpcRequest) -> GrpcFuture + Send + Sync>,
}

impl fmt::Debug for InProcessService {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("InProcessService")
    }
}

impl InProcessService {
    /// Calls into `stack`, the service the gRPC listener serves (its layers over its routes), bounding each call
    /// by the shorter of its `grpc-timeout` and `server_timeout` (`POINTS_REQUEST_TIMEOUT_MS`), as the listener does.
    pub fn new<S, B>(stack: S, server_timeout: Option<Duration>) -> InProcessService
    where
        S: tower::Service<GrpcRequest, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let call = move |mut request: GrpcRequest| -> GrpcFuture {
            let extensions = request.extensions_mut();
            extensions.clear();
            extensions.insert(TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(IN_PROCESS_PEER),
            });
            let deadline = shorter(grpc_timeout(request.headers()), server_timeout);
            let stack = stack.clone();
            Box::pin(async move {
                let call = stack.oneshot(request);
                let outcome = match deadline {
                    Some(deadline) => match tokio::time::timeout(deadline, call).await {
                        Ok(outcome) => outcome,
                        Err(_elapsed) => return Ok(timed_out()),
                    },
                    None => call.await,
                };
                match outcome {
                    Ok(response) => Ok(response.map(tonic::body::Body::new)),
                    Err(error) => match tonic::Status::try_from_error(error.into()) {
                        Ok(status) => Ok(status.into_http()),
                        Err(error) => Err(error),
                    },
                }
            })
        };
        InProcessService {
            call: Arc::new(call),
        }
    }
}

impl tower::Service<GrpcRequest> for InProcessService {
    type Response = GrpcResponse;
    type Error = BoxError;
    type Future = GrpcFuture;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each call waits for the readiness of its own clone of the stack (in its future).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: GrpcRequest) -> GrpcFuture {
        (self.call)(request)
    }
}

/// The answer of a call whose deadline passed: what tonic's server answers (`TimeoutExpired` as a status).
fn timed_out() -> GrpcResponse {
    tonic::Status::cancelled(tonic::TimeoutExpired(()).to_string()).into_http()
}

fn shorter(first: Option<Duration>, second: Option<Duration>) -> Option<Duration> {
    match (first, second) {
        (Some(first), Some(second)) => Some(first.min(second)),
        (first, second) => first.or(second),
    }
}

/// The call's `grpc-timeout` (gRPC over HTTP/2: at most 8 digits and a unit), or `None` when absent or malformed,
/// which the server then ignores, as tonic's does.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 60 * 60),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    fn headers(timeout: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "grpc-timeout",
            http::HeaderValue::from_str(timeout).expect("ascii"),
        );
        headers
    }

    #[test]
    fn grpc_timeouts_are_read_in_every_unit_and_malformed_ones_ignored() {
        let cases = [
            ("3H", Some(Duration::from_secs(3 * 3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("15S", Some(Duration::from_secs(15))),
            ("10100m", Some(Duration::from_millis(10_100))),
            ("7u", Some(Duration::from_micros(7))),
            ("99999999n", Some(Duration::from_nanos(99_999_999))),
            ("123456789m", None),
            ("m", None),
            ("", None),
            ("-5S", None),
            ("+5S", None),
            ("5s", None),
            ("5", None),
        ];
        for (value, expected) in cases {
            assert_eq!(grpc_timeout(&headers(value)), expected, "{value:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    /// A stand-in for the server's stack: notes what it was called with, answers after `delay`.
    #[derive(Clone)]
    struct Recording {
        seen: Arc<Mutex<Option<http::request::Parts>>>,
        delay: Duration,
    }

    impl tower::Service<GrpcRequest> for Recording {
        type Response = GrpcResponse;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<GrpcResponse, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: GrpcRequest) -> Self::Future {
            *self.seen.lock().expect("lock") = Some(request.into_parts().0);
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(tonic::Status::ok("").into_http())
            })
        }
    }

    fn request(timeout: Option<&str>) -> GrpcRequest {
        let mut request = http::Request::new(tonic::body::Body::empty());
        if let Some(timeout) = timeout {
            *request.headers_mut() = headers(timeout);
        }
        request.extensions_mut().insert("set by the gateway");
        request
    }

    #[tokio::test]
    async fn the_server_sees_a_loopback_peer_and_no_extension_of_the_caller() {
        let inner = Recording {
            seen: Arc::default(),
            delay: Duration::ZERO,
        };
        InProcessService::new(inner.clone(), None)
            .oneshot(request(None))
            .await
            .expect("answer");
        let seen = inner.seen.lock().expect("lock").take().expect("called");
        assert!(seen.extensions.get::<&str>().is_none());
        let peer = seen
            .extensions
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .expect("peer");
        assert!(peer.ip().is_loopback());
    }

    #[tokio::test(start_paused = true)]
    async fn the_shorter_of_the_callers_deadline_and_the_servers_timeout_ends_the_call_as_cancelled()
     {
        for (grpc_timeout, server_timeout, delay, times_out) in [
            (Some("100m"), Some(Duration::from_secs(5)), 200, true),
            (Some("5S"), Some(Duration::from_millis(100)), 200, true),
            (None, Some(Duration::from_millis(100)), 200, true),
            (Some("100m"), None, 200, true),
            (Some("300m"), Some(Duration::from_secs(5)), 200, false),
            (None, None, 200, false),
        ] {
            let inner = Recording {
                seen: Arc::default(),
                delay: Duration::from_millis(delay),
            };
            let response = InProcessService::new(inner, server_timeout)
                .oneshot(request(grpc_timeout))
                .await
                .expect("answer");
            let status = tonic::Status::from_header_map(response.headers()).expect("status");
            let expected = if times_out {
                tonic::Code::Cancelled
            } else {
                tonic::Code::Ok
            };
            assert_eq!(
                status.code(),
                expected,
                "{grpc_timeout:?} {server_timeout:?}"
            );
        }
    }
}
