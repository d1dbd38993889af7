//! Against a fake points service: metadata pass-through, JSON ⇄ proto conversion, and status → envelope mapping.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use points_gateway::{GatewayConfig, router};
use serde_json::json;

use crate::helpers::{
    FakeBackend, FakePoints, config, get, json_request, send, start_fake_backend,
};

async fn gateway_with_fake() -> (axum::Router, FakeBackend) {
    let backend = start_fake_backend(FakePoints::default(), true).await;
    let app = router(&config(&backend.grpc_url)).await.expect("builds");
    (app, backend)
}

#[tokio::test]
async fn earn_sends_the_callers_headers_as_grpc_metadata() {
    let (app, backend) = gateway_with_fake().await;
    let request = Request::post("/api/v1/points/earn")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-api-key", "lp_live_abc")
        .header("x-merchant-id", "m_7")
        .header("x-request-id", "req-earn-1")
        .body(Body::from(
            r#"{"uid": "u1", "points": 5, "idempotency_key": "k1"}"#,
        ))
        .expect("valid");
    send(&app, request).await.assert_success(201);

    let calls = backend.points.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "Earn");
    let metadata = &calls[0].metadata;
    let value = |name: &str| {
        metadata
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(value("x-api-key").as_deref(), Some("lp_live_abc"));
    assert_eq!(value("x-merchant-id").as_deref(), Some("m_7"));
    assert_eq!(value("x-request-id").as_deref(), Some("req-earn-1"));
    assert_eq!(value("x-points-transport").as_deref(), Some("rest"));
    assert!(
        value("grpc-timeout").is_some(),
        "the request timeout travels as the gRPC deadline"
    );
}

/// Only the gateway says a call came over REST (SPEC §7's transport): it sends its own configured token, never one a
/// client put in a header, and none at all when it has none.
#[tokio::test]
async fn the_gateway_token_sent_is_the_gateways_own_never_a_clients() {
    const OWN_TOKEN: &str = "the-gateways-own-token-0123456789abcdef";
    const FORGED: &str = "a-client-guessing-the-token-0123456789abcdef";
    for own_token in [Some(OWN_TOKEN), None] {
        let backend = start_fake_backend(FakePoints::default(), true).await;
        let config = GatewayConfig {
            gateway_token: own_token.map(str::to_owned),
            ..config(&backend.grpc_url)
        };
        let app = router(&config).await.expect("builds");
        let request = Request::get("/api/v1/points/accounts/u1")
            .header("x-api-key", "lp_live_abc")
            .header("x-points-gateway-token", FORGED)
            .body(Body::empty())
            .expect("valid");
        send(&app, request).await.assert_success(200);
        let calls = backend.points.calls();
        assert_eq!(calls.len(), 1);
        let sent: Vec<&str> = calls[0]
            .metadata
            .get_all("x-points-gateway-token")
            .iter()
            .map(|value| value.to_str().expect("ascii"))
            .collect();
        assert_eq!(
            sent,
            own_token.into_iter().collect::<Vec<_>>(),
            "{own_token:?}"
        );
    }
}

#[tokio::test]
async fn earn_converts_metadata_and_timestamps_both_ways_and_answers_201() {
    let (app, backend) = gateway_with_fake().await;
    let body = json!({
        "uid": "u1",
        "amount": "12.50",
        "currency": "EUR",
        "rule_code": "vip",
        "idempotency_key": "k1",
        "reference": "order-1",
        "metadata": {"order": 7, "tags": ["a"]},
        "expires_at": "2030-01-01T00:00:00+02:00",
    });
    let response = send(
        &app,
        json_request("POST", "/api/v1/points/earn", &body.to_string()),
    )
    .await;
    let data = response.assert_success(201);
    assert_eq!(data["replayed"], false);
    assert_eq!(data["balance"], 10);
    let entry = &data["entry"];
    assert_eq!(entry["metadata"], json!({"order": 7, "tags": ["a"]}));
    assert_eq!(entry["expires_at"], "2029-12-31T22:00:00Z");
    assert_eq!(entry["created_at"], "2023-11-14T22:13:20Z");
    assert_eq!(entry["amount"], "12.50");
    assert_eq!(entry["rule_version"], 2);
    assert_eq!(entry["reverses_entry_id"], json!(null));

    let sent = &backend.points.calls()[0].request;
    assert!(sent.contains(r#"points: None"#), "{sent}");
    assert!(sent.contains(r#"amount: Some("12.50")"#), "{sent}");
    assert!(
        sent.contains(r#""order": Value { kind: Some(NumberValue(7.0)) }"#),
        "{sent}"
    );
    assert!(sent.contains(r#"StringValue("a")"#), "{sent}");
}

#[tokio::test]
async fn a_replayed_mutation_answers_200() {
    let (app, _backend) = gateway_with_fake().await;
    let body = r#"{"uid": "u1", "points": 5, "idempotency_key": "replay-me"}"#;
    let data = send(&app, json_request("POST", "/api/v1/points/earn", body))
        .await
        .assert_success(200);
    assert_eq!(data["replayed"], true);
}

#[tokio::test]
async fn error_info_reasons_become_spec_codes_and_statuses() {
    let (app, _backend) = gateway_with_fake().await;
    let spend = json_request(
        "POST",
        "/api/v1/points/spend",
        r#"{"uid": "u1", "points": 50, "idempotency_key": "k"}"#,
    );
    let message = send(&app, spend).await.assert_error(422, 42201);
    assert_eq!(message, "balance 3 is less than 50");

    let reverse = json_request(
        "POST",
        "/api/v1/points/entries/e_1/reverse",
        r#"{"idempotency_key": "k"}"#,
    );
    send(&app, reverse).await.assert_error(409, 40902);

    // NOT_FOUND without ErrorInfo: derived from the gRPC code.
    send(&app, get("/api/v1/points/entries/e_9"))
        .await
        .assert_error(404, 40401);
}

#[tokio::test]
async fn internal_errors_never_leak_their_message() {
    let (app, _backend) = gateway_with_fake().await;
    let adjust = json_request(
        "POST",
        "/api/v1/points/adjust",
        r#"{"uid": "u1", "delta": -5, "reason": "fix", "idempotency_key": "k"}"#,
    );
    let message = send(&app, adjust).await.assert_error(500, 50001);
    assert_eq!(message, "internal error");
}

#[tokio::test]
async fn unimplemented_methods_are_501() {
    let (app, _backend) = gateway_with_fake().await;
    let calculate = json_request(
        "POST",
        "/api/v1/points/calculate",
        r#"{"amount": "1.00", "currency": "EUR"}"#,
    );
    send(&app, calculate).await.assert_error(501, 50001);
    // The fake serves no MerchantService at all.
    send(&app, get("/api/v1/me")).await.assert_error(501, 50001);
}

#[tokio::test]
async fn batch_operations_become_the_proto_oneof_and_results_keep_their_codes() {
    let (app, backend) = gateway_with_fake().await;
    let body = json!({
        "atomic": false,
        "operations": [
            {"op": "earn", "uid": "u1", "points": 3, "idempotency_key": "b1"},
            {"op": "spend", "uid": "u1", "points": 9, "idempotency_key": "b2"},
            {"op": "adjust", "uid": "u1", "delta": 1, "reason": "r", "idempotency_key": "b3"},
        ],
    });
    let data = send(
        &app,
        json_request("POST", "/api/v1/points/batch", &body.to_string()),
    )
    .await
    .assert_success(200);
    let results = data["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["code"], 0);
    assert_eq!(results[0]["data"]["entry"]["delta"], 3);
    assert_eq!(results[1]["index"], 1);
    assert_eq!(results[1]["code"], 42201);
    assert_eq!(results[1]["data"], json!(null));

    let sent = &backend.points.calls()[0].request;
    assert!(
        sent.contains("Earn(EarnRequest")
            && sent.contains("Spend(SpendRequest")
            && sent.contains("Adjust(AdjustRequest"),
        "{sent}"
    );
}

#[tokio::test]
async fn list_filters_become_proto_fields() {
    let (app, backend) = gateway_with_fake().await;
    let uri = "/api/v1/points/accounts/user%2F42/entries?kind=spend&from=2025-01-01T00:00:00+01:00&page_size=10&page_token=t2";
    let data = send(&app, get(uri)).await.assert_success(200);
    assert_eq!(data, json!({"items": [], "next_page_token": null}));
    let sent = &backend.points.calls()[0].request;
    for expected in [
        r#"uid: "user/42""#,
        r#"kind: Some("spend")"#,
        "seconds: 1735686000",
        "page_size: 10",
        r#"page_token: "t2""#,
    ] {
        assert!(sent.contains(expected), "{expected} not in {sent}");
    }
}

#[tokio::test]
async fn accounts_convert_expiring_points() {
    let (app, _backend) = gateway_with_fake().await;
    let data = send(&app, get("/api/v1/points/accounts/u1"))
        .await
        .assert_success(200);
    assert_eq!(
        data,
        json!({"uid": "u1", "balance": 100, "held": 0, "available": 100, "expiring": [{"points": 40, "expires_at": "2023-11-15T22:13:20Z"}]})
    );
}

#[tokio::test]
async fn a_request_past_the_timeout_is_503_unavailable_as_spec_section_8_says() {
    let points = FakePoints {
        account_delay: Duration::from_secs(3),
        ..FakePoints::default()
    };
    let backend = start_fake_backend(points, true).await;
    let config = GatewayConfig {
        request_timeout: Duration::from_millis(200),
        ..config(&backend.grpc_url)
    };
    let app = router(&config).await.expect("builds");
    let message = send(&app, get("/api/v1/points/accounts/u1"))
        .await
        .assert_error(503, 50301);
    assert!(message.contains("timed out"), "{message}");
}
