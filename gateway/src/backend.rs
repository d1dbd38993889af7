//! Several replicas of the points service behind the one channel every gRPC client of the gateway uses.
//!
//! [`Balanced`] sends each call to the next healthy backend in turn (round robin). A backend is healthy while its
//! `grpc.health.v1` check of the server as a whole answers SERVING (probed every [`PROBE_INTERVAL`]; the server's
//! health follows its database and turns NOT_SERVING when it starts shutting down) and no call to it has just failed
//! to connect. Unhealthy backends are still tried, last, so a stale probe never leaves the gateway with nothing.
//!
//! A call that fails on one backend is sent to the next:
//! - when the connection failed before the call was sent (refused, unreachable): always;
//! - when the backend answered UNAVAILABLE, or the connection broke after the call was sent: only for calls that are
//!   safe to repeat — reads, and the ledger mutations, which all carry a required idempotency key (a repeat
//!   replays the first outcome). A merchant registration or a key creation is never sent twice.
//!
//! With a single backend, calls go straight to its channel, unbuffered and unprobed, as before.
//!
//! [`Upstream`] is what the gateway's clients send through: these backends over the network (the standalone
//! `points-gateway`), or the server's own services in the same process (see [`crate::in_process`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower::ServiceExt;

/// What the balanced channel fails with.
pub use tower::BoxError;

/// How often each backend's health is asked, and how long one answer may take.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// `grpc-status` of UNAVAILABLE.
const GRPC_STATUS_UNAVAILABLE: &str = "14";

/// One backend: its lazily connected channel and what the gateway believes about its health.
struct Member {
    url: String,
    channel: Channel,
    healthy: AtomicBool,
}

impl Member {
    fn set_healthy(&self, healthy: bool, why: &str) {
        if self.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            if healthy {
                tracing::info!(backend = %self.url, why, "gRPC backend is back");
            } else {
                tracing::warn!(backend = %self.url, why, "gRPC backend is down; calls go to the others");
            }
        }
        metrics::gauge!("gateway_backend_up", "backend" => self.url.clone()).set(if healthy {
            1.0
        } else {
            0.0
        });
    }
}

struct Members {
    list: Vec<Member>,
    next: AtomicUsize,
}

/// The channel over every configured backend (see the module documentation). Cheap to clone.
#[derive(Clone)]
pub struct Balanced {
    members: Arc<Members>,
}

impl fmt::Debug for Balanced {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = formatter.debug_map();
        for member in &self.members.list {
            list.entry(&member.url, &member.healthy.load(Ordering::Relaxed));
        }
        list.finish()
    }
}

impl Balanced {
    /// One lazily connected channel per URL (nothing connects yet, so the gateway starts while backends are down);
    /// with several, a task probes their health until the last clone of this channel is dropped.
    pub fn new(urls: &[&str], connect_timeout: Duration) -> anyhow::Result<Balanced> {
        let list = urls
            .iter()
            .map(|url| {
                let endpoint = Endpoint::from_shared((*url).to_owned())?
                    .connect_timeout(connect_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .keep_alive_timeout(Duration::from_secs(10));
                anyhow::Ok(Member {
                    url: (*url).to_owned(),
                    channel: endpoint.connect_lazy(),
                    healthy: AtomicBool::new(true),
                })
            })
            .collect::<anyhow::Result<Vec<Member>>>()?;
        anyhow::ensure!(!list.is_empty(), "no gRPC backend configured");
        let members = Arc::new(Members {
            list,
            next: AtomicUsize::new(0),
        });
        if members.list.len() > 1 {
            tokio::spawn(probe_health(Arc::downgrade(&members)));
        }
        Ok(Balanced { members })
    }

    /// The backends in the order one call tries them: the healthy ones from the next in turn, then the others.
    fn order(&self) -> Vec<usize> {
        let count = self.members.list.len();
        let start = self.members.next.fetch_add(1, Ordering::Relaxed) % count;
        let (healthy, down): (Vec<usize>, Vec<usize>) = (0..count)
            .map(|offset| (start + offset) % count)
            .partition(|&index| self.members.list[index].healthy.load(Ordering::Relaxed));
        healthy.into_iter().chain(down).collect()
    }

    async fn call_with_failover(
        self,
        request: http::Request<tonic::body::Body>,
    ) -> Result<http::Response<tonic::body::Body>, BoxError> {
        let (parts, body) = request.into_parts();
        // A unary request of the gateway: small, and already bounded by the REST body limit.
        let body = body.collect().await?.to_bytes();
        let replayable = is_replayable(parts.uri.path());
        let order = self.order();
        for (attempt, &index) in order.iter().enumerate() {
            let member = &self.members.list[index];
            let last = attempt + 1 == order.len();
            let request = rebuild(&parts, body.clone());
            let retry_because = match member.channel.clone().oneshot(request).await {
                Ok(response) => {
                    let unavailable = response
                        .headers()
                        .get("grpc-status")
                        .is_some_and(|status| status == GRPC_STATUS_UNAVAILABLE);
                    if last || !unavailable || !replayable {
                        return Ok(response);
                    }
                    "unavailable"
                }
                Err(error) => {
                    let error: BoxError = error.into();
                    let not_sent = is_connect_error(error.as_ref());
                    if not_sent {
                        member.set_healthy(false, "connect failed");
                    }
                    if last || !(not_sent || replayable) {
                        return Err(error);
                    }
                    if not_sent { "connect" } else { "broken" }
                }
            };
            metrics::counter!("gateway_backend_retries_total", "reason" => retry_because)
                .increment(1);
            tracing::debug!(backend = %member.url, reason = retry_because, path = parts.uri.path(),
                "retrying the call on another gRPC backend");
        }
        Err("no gRPC backend configured".into())
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Balanced {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each call waits for the readiness of the backend it picks.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if let [only] = self.members.list.as_slice() {
            let channel = only.channel.clone();
            return Box::pin(async move { channel.oneshot(request).await.map_err(BoxError::from) });
        }
        Box::pin(self.clone().call_with_failover(request))
    }
}

/// Where the gateway's gRPC calls go. Cheap to clone.
#[derive(Clone)]
pub enum Upstream {
    /// Over the network to the backends of `POINTS_GATEWAY_GRPC_URL` (the standalone gateway).
    Network(Balanced),
    /// Into the gRPC server's own service stack, in this process (the gateway inside the `points` binary).
    InProcess(crate::in_process::InProcessService),
}

impl fmt::Debug for Upstream {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Network(balanced) => {
                formatter.debug_tuple("Network").field(balanced).finish()
            }
            Upstream::InProcess(_) => formatter.write_str("InProcess"),
        }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Upstream {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Upstream::Network(balanced) => balanced.poll_ready(context),
            Upstream::InProcess(service) => service.poll_ready(context),
        }
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        match self {
            Upstream::Network(balanced) => balanced.call(request),
            Upstream::InProcess(service) => service.call(request),
        }
    }
}

/// The same call again, for another backend.
fn rebuild(parts: &http::request::Parts, body: Bytes) -> http::Request<tonic::body::Body> {
    let mut request = http::Request::new(tonic::body::Body::new(Full::new(body)));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request
}

/// True for the methods a second delivery cannot harm: reads, and the idempotency-keyed ledger mutations.
fn is_replayable(path: &str) -> bool {
    const READS: [&str; 5] = ["Get", "List", "Verify", "Calculate", "Check"];
    const IDEMPOTENT: [&str; 5] = ["Earn", "Spend", "Adjust", "Reverse", "Batch"];
    let method = path.rsplit('/').next().unwrap_or_default();
    READS.iter().any(|prefix| method.starts_with(prefix)) || IDEMPOTENT.contains(&method)
}

/// True when the error says the connection was never made, so the call was not sent.
fn is_connect_error(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            )
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// Asks every backend's health every [`PROBE_INTERVAL`], until the channel is dropped.
async fn probe_health(members: Weak<Members>) {
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(members) = members.upgrade() else {
            return;
        };
        let checks = members.list.iter().map(|member| async move {
            let mut client = HealthClient::new(member.channel.clone());
            let check = client.check(HealthCheckRequest {
                service: String::new(),
            });
            match tokio::time::timeout(PROBE_TIMEOUT, check).await {
                Ok(Ok(response)) => {
                    let status = response.into_inner().status();
                    member.set_healthy(status == ServingStatus::Serving, status.as_str_name());
                }
                Ok(Err(_)) | Err(_) => member.set_healthy(false, "no health answer"),
            }
        });
        futures_util::future::join_all(checks).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_and_idempotent_mutations_are_replayed() {
        for path in [
            "/points.v1.PointsService/Earn",
            "/points.v1.PointsService/Batch",
            "/points.v1.PointsService/ListEntries",
            "/points.v1.AuditService/VerifyAuditLog",
            "/grpc.health.v1.Health/Check",
            "/points.v1.MerchantService/GetMe",
        ] {
            assert!(is_replayable(path), "{path}");
        }
        for path in [
            "/points.v1.MerchantService/RegisterMerchant",
            "/points.v1.ApiKeyService/CreateApiKey",
            "/points.v1.RuleService/PutRule",
            "/points.gateway.v1.GatewayService/RecordRefusals",
        ] {
            assert!(!is_replayable(path), "{path}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_goes_to_the_next_backend() {
        // Two ports nobody listens on: the first call's error is a connect error, and both are tried.
        let closed = [
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        ]
        .map(|listener| format!("http://{}", listener.local_addr().expect("address")));
        let urls: Vec<&str> = closed.iter().map(String::as_str).collect();
        let balanced = Balanced::new(&urls, Duration::from_millis(500)).expect("channel");
        let mut client = HealthClient::new(balanced.clone());
        let error = client
            .check(HealthCheckRequest::default())
            .await
            .expect_err("nothing listens");
        assert_eq!(error.code(), tonic::Code::Unavailable, "{error}");
        for member in &balanced.members.list {
            assert!(!member.healthy.load(Ordering::Relaxed), "{}", member.url);
        }
    }
}
