//! What every handler shares: the gRPC clients of the points service and the settings handlers need.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tonic_health::pb::health_client::HealthClient;

use crate::backend::Upstream;
use crate::config::GatewayConfig;
use crate::ratelimit::CaptureRateLimit;

/// The channel every client uses: the lazily connected gRPC backends (one, or several balanced with failover), or
/// the server's services in this process, noting each response's rate-limit fields.
pub type GrpcChannel = CaptureRateLimit<Upstream>;
use crate::pb::api_key_service_client::ApiKeyServiceClient;
use crate::pb::audit_service_client::AuditServiceClient;
use crate::pb::merchant_service_client::MerchantServiceClient;
use crate::pb::points_service_client::PointsServiceClient;
use crate::pb::report_service_client::ReportServiceClient;
use crate::pb::rule_service_client::RuleServiceClient;

/// The largest gRPC response the gateway decodes: a page of 500 audit records or a batch of 1,000 results fits many
/// times over.
const GRPC_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// One client per points.v1 service plus the health client, all over one channel: lazily connected and balanced
/// over the backends `POINTS_GATEWAY_GRPC_URL` lists, or in-process.
///
/// Clients are cheap to clone (they share the channel); handlers clone the one they need because tonic's calls take
/// `&mut self`.
#[derive(Clone, Debug)]
pub struct Backend {
    /// `points.v1.MerchantService`.
    pub merchants: MerchantServiceClient<GrpcChannel>,
    /// `points.v1.ApiKeyService`.
    pub api_keys: ApiKeyServiceClient<GrpcChannel>,
    /// `points.v1.PointsService`.
    pub points: PointsServiceClient<GrpcChannel>,
    /// `points.v1.RuleService`.
    pub rules: RuleServiceClient<GrpcChannel>,
    /// `points.v1.AuditService`.
    pub audit: AuditServiceClient<GrpcChannel>,
    /// `points.v1.ReportService`.
    pub reports: ReportServiceClient<GrpcChannel>,
    /// `grpc.health.v1.Health`.
    pub health: HealthClient<GrpcChannel>,
    /// The channel itself, for the gateway's own reports (`points.gateway.v1`).
    pub channel: GrpcChannel,
}

impl Backend {
    /// Builds the clients without connecting: the first call connects, and a lost connection is re-established by
    /// the channel, so the gateway starts (and answers 503) while the gRPC server is still down.
    pub fn connect_lazy(config: &GatewayConfig) -> anyhow::Result<Backend> {
        let balanced = crate::backend::Balanced::new(
            &config.grpc_urls(),
            config.request_timeout.min(Duration::from_secs(5)),
        )?;
        Ok(Backend::over(Upstream::Network(balanced)))
    }

    /// The clients over `upstream`.
    pub fn over(upstream: Upstream) -> Backend {
        let channel = CaptureRateLimit(upstream);
        Backend {
            merchants: MerchantServiceClient::new(channel.clone())
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX),
            api_keys: ApiKeyServiceClient::new(channel.clone())
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX),
            points: PointsServiceClient::new(channel.clone())
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX),
            rules: RuleServiceClient::new(channel.clone())
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX),
            audit: AuditServiceClient::new(channel.clone())
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX),
            reports: ReportServiceClient::new(channel.clone())
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX),
            health: HealthClient::new(channel.clone()),
            channel,
        }
    }
}

/// The router state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The gRPC clients, shared: axum clones the state for every request, and cloning the clients themselves (one
    /// channel and origin each) showed in the profile of the in-process path.
    pub backend: Arc<Backend>,
    /// The whole-request timeout, also sent as each call's gRPC deadline.
    pub request_timeout: Duration,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Sent as `x-points-gateway-token`, so the server records the calls as `rest`.
    pub gateway_token: Option<tonic::metadata::AsciiMetadataValue>,
}
