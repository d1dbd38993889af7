//! The gateway's own refusals (malformed JSON, unknown route or field, oversize body, 405, timeout), reported to the
//! points service so they are audited like the calls it refuses itself (SPEC §14).
//!
//! [`ApiError`](crate::error::ApiError) marks every response the gateway produces on its own with [`Refused`];
//! the [`record`] layer turns each such response into a [`GatewayRefusal`] in a bounded buffer, and a background
//! task sends the buffer to `points.gateway.v1.GatewayService/RecordRefusals` every [`FLUSH_INTERVAL`]. The service
//! applies the per-address recording budget, so a flood adds a bounded number of audit rows. What does not fit in
//! the buffer, or could not be sent, is still counted per client address and reported as such, so the summary
//! records keep the true number.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::connections::ClientAddr;
use crate::middleware::RequestId;
use crate::pb::gateway::{
    GatewayRefusal, RecordRefusalsRequest, RefusalCount,
    gateway_service_client::GatewayServiceClient,
};
use crate::state::GrpcChannel;

/// How often buffered refusals are sent.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Refusals kept individually between two sends (the service takes at most 1,000 per report).
const BUFFERED_MAX: usize = 1000;
/// Client addresses whose overflow is counted between two sends; beyond, refusals are only in the metrics.
const OVERFLOW_ADDRESSES_MAX: usize = 10_000;
/// How long one report may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Response extension: the gateway refused this request itself, with this SPEC §8 reason.
#[derive(Clone, Copy, Debug)]
pub struct Refused {
    /// `ErrorInfo.reason` of the envelope code.
    pub reason: &'static str,
}

#[derive(Default)]
struct Buffer {
    refusals: Vec<GatewayRefusal>,
    overflow: HashMap<String, u64>,
}

impl Buffer {
    fn count_overflow(&mut self, client_addr: String, count: u64) {
        if let Some(counted) = self.overflow.get_mut(&client_addr) {
            *counted += count;
        } else if self.overflow.len() < OVERFLOW_ADDRESSES_MAX {
            self.overflow.insert(client_addr, count);
        } else {
            metrics::counter!("gateway_refusals_unreported_total").increment(count);
        }
    }
}

/// The buffer of refusals not yet reported, and the client that reports them.
pub struct RefusalReporter {
    buffer: Mutex<Buffer>,
    client: GatewayServiceClient<GrpcChannel>,
}

impl std::fmt::Debug for RefusalReporter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("RefusalReporter")
    }
}

impl RefusalReporter {
    /// A reporter over `channel`, with its sending task (which ends when the reporter is dropped).
    pub fn start(channel: GrpcChannel) -> Arc<RefusalReporter> {
        let reporter = Arc::new(RefusalReporter {
            buffer: Mutex::default(),
            client: GatewayServiceClient::new(channel),
        });
        tokio::spawn(run_sender(Arc::downgrade(&reporter)));
        reporter
    }

    fn push(&self, refusal: GatewayRefusal) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        if buffer.refusals.len() < BUFFERED_MAX {
            buffer.refusals.push(refusal);
        } else {
            buffer.count_overflow(refusal.client_addr, 1);
        }
    }

    /// Sends what is buffered; on failure the refusals are kept as counts for the next report.
    async fn send(&self) {
        let report = {
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            if buffer.refusals.is_empty() && buffer.overflow.is_empty() {
                return;
            }
            let taken = std::mem::take(&mut *buffer);
            RecordRefusalsRequest {
                refusals: taken.refusals,
                overflow: taken
                    .overflow
                    .into_iter()
                    .map(|(client_addr, count)| RefusalCount { client_addr, count })
                    .collect(),
            }
        };
        let mut client = self.client.clone();
        let sent = tokio::time::timeout(SEND_TIMEOUT, client.record_refusals(report.clone())).await;
        if let Ok(Ok(_)) = sent {
            return;
        }
        tracing::debug!(
            "could not report the gateway's refusals to the points service; kept as counts"
        );
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        for refusal in report.refusals {
            buffer.count_overflow(refusal.client_addr, 1);
        }
        for count in report.overflow {
            buffer.count_overflow(count.client_addr, count.count);
        }
    }
}

async fn run_sender(reporter: Weak<RefusalReporter>) {
    loop {
        tokio::time::sleep(FLUSH_INTERVAL).await;
        let Some(reporter) = reporter.upgrade() else {
            return;
        };
        reporter.send().await;
    }
}

/// Layer: a response the gateway refused itself becomes a refusal to report (with the route template, never the
/// raw path, and the client's address).
pub async fn record(
    State(reporter): State<Arc<RefusalReporter>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let client_addr = request
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|ConnectInfo(ClientAddr(address))| address.ip().to_string());
    let route = format!(
        "{} {}",
        request
            .method()
            .as_str()
            .chars()
            .take(16)
            .collect::<String>(),
        crate::middleware::route_label(&request)
    );
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    let response = next.run(request).await;
    if let (Some(refused), Some(client_addr)) =
        (response.extensions().get::<Refused>(), client_addr)
    {
        let now = std::time::SystemTime::now();
        reporter.push(GatewayRefusal {
            client_addr,
            route,
            request_id,
            reason: refused.reason.to_owned(),
            occurred_at: Some(prost_types::Timestamp::from(now)),
            latency_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
        });
    }
    response
}
