//! `/healthz`, `/readyz` and `/metrics`.

use points_gateway::pb::points_service_server::PointsServiceServer;
use points_gateway::router;

use crate::helpers::{FakePoints, config, gateway_without_backend, get, send, start_fake_backend};

#[tokio::test]
async fn healthz_is_200_while_the_backend_is_down() {
    let app = gateway_without_backend().await;
    let data = send(&app, get("/healthz")).await.assert_success(200);
    assert_eq!(data["status"], "ok");
}

#[tokio::test]
async fn readyz_is_503_unavailable_when_the_backend_is_down() {
    let app = gateway_without_backend().await;
    let message = send(&app, get("/readyz")).await.assert_error(503, 50301);
    assert!(message.starts_with("not ready"), "{message}");
}

#[tokio::test]
async fn readyz_is_200_when_the_points_service_is_serving() {
    let backend = start_fake_backend(FakePoints::default(), true).await;
    let app = router(&config(&backend.grpc_url)).await.expect("builds");
    let data = send(&app, get("/readyz")).await.assert_success(200);
    assert_eq!(data["status"], "serving");
}

#[tokio::test]
async fn readyz_is_503_when_the_points_service_is_not_serving() {
    let backend = start_fake_backend(FakePoints::default(), false).await;
    let app = router(&config(&backend.grpc_url)).await.expect("builds");
    let message = send(&app, get("/readyz")).await.assert_error(503, 50301);
    assert!(message.contains("NOT_SERVING"), "{message}");
}

#[tokio::test]
async fn readyz_follows_the_points_service_health() {
    let backend = start_fake_backend(FakePoints::default(), true).await;
    let app = router(&config(&backend.grpc_url)).await.expect("builds");
    send(&app, get("/readyz")).await.assert_success(200);
    backend
        .health
        .set_not_serving::<PointsServiceServer<FakePoints>>()
        .await;
    send(&app, get("/readyz")).await.assert_error(503, 50301);
    backend
        .health
        .set_serving::<PointsServiceServer<FakePoints>>()
        .await;
    send(&app, get("/readyz")).await.assert_success(200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_method_and_status() {
    let app = gateway_without_backend().await;
    send(&app, get("/api/v1/points/entries/e_secret_id")).await;
    send(&app, get("/api/v1/does-not-exist")).await;
    let response = send(&app, get("/metrics")).await;
    assert_eq!(response.status.as_u16(), 200);
    assert!(response.content_type().starts_with("text/plain"));
    let text = response.text();
    let counted = text.lines().any(|line| {
        line.starts_with("http_requests_total{")
            && line.contains(r#"route="/api/v1/points/entries/{entry_id}""#)
            && line.contains(r#"method="GET""#)
            && line.contains(r#"code="503""#)
    });
    assert!(counted, "{text}");
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    // The unknown route is the gateway's own refusal, counted as such (SPEC §14).
    assert!(
        text.lines()
            .any(|line| line.starts_with("gateway_refusals_total{")
                && line.contains(r#"status="404""#)
                && line.contains(r#"code="40401""#)),
        "{text}"
    );
    assert!(
        !text.contains("e_secret_id"),
        "raw paths must not become labels"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "{text}"
    );
}

#[tokio::test]
async fn install_metrics_recorder_is_idempotent() {
    let first = points_gateway::install_metrics_recorder();
    let second = points_gateway::install_metrics_recorder();
    metrics::counter!("gateway_test_idempotent_total").increment(1);
    assert!(first.render().contains("gateway_test_idempotent_total"));
    assert!(second.render().contains("gateway_test_idempotent_total"));
}
