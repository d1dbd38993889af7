//! Operations endpoints without a key: `/healthz` (process up), `/readyz` (gRPC health), `/metrics` (Prometheus).

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::envelope::{ApiResult, Envelope, ErrorEnvelope, Success};
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The gRPC health service name `/readyz` checks.
pub const READINESS_SERVICE: &str = "points.v1.PointsService";

/// The longest `/readyz` waits for the gRPC health check (kept below the request timeout so the answer is 503,
/// answered by readiness itself, not by the request timeout).
const READINESS_TIMEOUT_MAX: Duration = Duration::from_secs(2);

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// "ok" for `/healthz`, "serving" for `/readyz`.
    #[schema(example = "ok")]
    pub status: String,
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "The gateway process is up.", body = Envelope<Health>))
)]
async fn healthz() -> ApiResult<Health> {
    Ok(Success::ok(Health {
        status: "ok".to_owned(),
    }))
}

/// The points service answers `SERVING` to `grpc.health.v1.Health/Check` for `points.v1.PointsService`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "The points service is serving.", body = Envelope<Health>),
        (status = 503, description = "The points service is down, unreachable or not serving.", body = ErrorEnvelope,
            example = json!({"code": 50301, "message": "not ready: the points service is unreachable", "data": null})),
    )
)]
async fn readyz(State(state): State<AppState>) -> ApiResult<Health> {
    let timeout = READINESS_TIMEOUT_MAX.min(state.request_timeout * 3 / 4);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: READINESS_SERVICE.to_owned(),
    });
    request.set_timeout(timeout);
    let mut health = state.backend.health.clone();
    let not_ready =
        |reason: &str| ApiError::new(ErrorCode::Unavailable, format!("not ready: {reason}"));
    match tokio::time::timeout(timeout, health.check(request)).await {
        Ok(Ok(response)) => match response.into_inner().status() {
            ServingStatus::Serving => Ok(Success::ok(Health {
                status: "serving".to_owned(),
            })),
            status => Err(not_ready(&format!(
                "the points service reports {}",
                status.as_str_name()
            ))),
        },
        Ok(Err(status)) => {
            tracing::warn!(grpc_code = ?status.code(), message = status.message(), "readiness check failed");
            Err(not_ready("the points service is unreachable or unhealthy"))
        }
        Err(_elapsed) => Err(not_ready("the points service did not answer in time")),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format.", content_type = "text/plain", body = String))
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
