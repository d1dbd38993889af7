//! Bad input never reaches the backend as a 500 or a plain-text rejection: it is answered with the envelope.

use axum::body::Body;
use axum::http::{Request, header};
use points_gateway::{GatewayConfig, router};

use crate::helpers::{CLOSED_GRPC_URL, config, gateway_without_backend, get, json_request, send};

const EARN: &str = "/api/v1/points/earn";

#[tokio::test]
async fn malformed_json_is_400_invalid_argument() {
    let app = gateway_without_backend().await;
    let response = send(
        &app,
        json_request("POST", EARN, r#"{"uid": "u1", "points": 5"#),
    )
    .await;
    let message = response.assert_error(400, 40001);
    assert!(message.contains("malformed JSON"), "{message}");
}

#[tokio::test]
async fn unknown_fields_are_400_invalid_argument_naming_the_field() {
    let app = gateway_without_backend().await;
    let body = r#"{"uid": "u1", "points": 5, "idempotency_key": "k1", "pointz": 7}"#;
    let message = send(&app, json_request("POST", EARN, body))
        .await
        .assert_error(400, 40001);
    assert!(message.contains("unknown field `pointz`"), "{message}");
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_400_invalid_argument() {
    let app = gateway_without_backend().await;
    let cases = [
        (
            EARN,
            r#"{"uid": "u1", "points": "five", "idempotency_key": "k1"}"#,
            "points",
        ),
        (
            EARN,
            r#"{"points": 5, "idempotency_key": "k1"}"#,
            "missing field `uid`",
        ),
        (
            EARN,
            r#"{"uid": "u1", "idempotency_key": "k1", "metadata": [1, 2]}"#,
            "metadata",
        ),
        (
            EARN,
            r#"{"uid": "u1", "idempotency_key": "k1", "expires_at": "tomorrow"}"#,
            "expires_at",
        ),
        (EARN, "[]", "invalid"),
        (
            "/api/v1/points/spend",
            r#"{"uid": "u1", "points": 1.5, "idempotency_key": "k1"}"#,
            "points",
        ),
        (
            "/api/v1/merchants",
            r#"{"slug": "shop"}"#,
            "missing field `name`",
        ),
        (
            "/api/v1/api-keys",
            r#"{"name": "pos", "scopes": ["points:fly"]}"#,
            "unknown variant",
        ),
    ];
    for (uri, body, expected) in cases {
        let message = send(&app, json_request("POST", uri, body))
            .await
            .assert_error(400, 40001);
        assert!(message.contains(expected), "{uri} {body}: {message}");
    }
}

#[tokio::test]
async fn batch_operations_are_checked_per_operation() {
    let app = gateway_without_backend().await;
    let cases = [
        (
            r#"{"operations": [{"op": "steal", "uid": "u1"}]}"#,
            "unknown variant `steal`",
        ),
        (
            r#"{"operations": [{"uid": "u1", "points": 1, "idempotency_key": "k"}]}"#,
            "missing field `op`",
        ),
        (
            r#"{"operations": [{"op": "spend", "uid": "u1", "points": 1, "idempotency_key": "k", "extra": 1}]}"#,
            "unknown field `extra`",
        ),
        (r#"{"atomic": "yes", "operations": []}"#, "atomic"),
    ];
    for (body, expected) in cases {
        let message = send(&app, json_request("POST", "/api/v1/points/batch", body))
            .await
            .assert_error(400, 40001);
        assert!(message.contains(expected), "{body}: {message}");
    }
}

#[tokio::test]
async fn a_wrong_or_missing_content_type_is_400_invalid_argument() {
    let app = gateway_without_backend().await;
    let body = r#"{"uid": "u1", "points": 5, "idempotency_key": "k1"}"#;
    let text = Request::post(EARN)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body))
        .expect("valid");
    let message = send(&app, text).await.assert_error(400, 40001);
    assert!(message.contains("content-type"), "{message}");
    let none = Request::post(EARN).body(Body::from(body)).expect("valid");
    send(&app, none).await.assert_error(400, 40001);
    let empty = Request::post(EARN)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::empty())
        .expect("ok");
    send(&app, empty).await.assert_error(400, 40001);
}

#[tokio::test]
async fn an_oversize_body_is_400_invalid_argument() {
    let config = GatewayConfig {
        body_limit_bytes: 2048,
        ..config(CLOSED_GRPC_URL)
    };
    let app = router(&config).await.expect("builds");
    let padding = "x".repeat(4096);
    let body = format!(
        r#"{{"uid": "u1", "points": 5, "idempotency_key": "k1", "description": "{padding}"}}"#
    );
    let message = send(&app, json_request("POST", EARN, &body))
        .await
        .assert_error(400, 40001);
    assert!(message.contains("size limit"), "{message}");

    // Without a content length (a streamed body) the limit holds as well.
    let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(body.into_bytes())]);
    let streamed = Request::post(EARN)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("valid");
    send(&app, streamed).await.assert_error(400, 40001);
}

#[tokio::test]
async fn unknown_routes_are_404_not_found_envelopes() {
    let app = gateway_without_backend().await;
    for uri in [
        "/api/v1/nope",
        "/api/v1/points/earn/extra",
        "/api/v2/points/earn",
        "/nope",
        "/",
    ] {
        let message = send(&app, get(uri)).await.assert_error(404, 40401);
        assert!(message.contains("no route"), "{uri}: {message}");
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_with_an_envelope_and_allow() {
    let app = gateway_without_backend().await;
    let response = send(&app, get(EARN)).await;
    response.assert_error(405, 40001);
    assert_eq!(response.header("allow").as_deref(), Some("POST"));
    let delete = Request::delete("/api/v1/me")
        .body(Body::empty())
        .expect("valid");
    let response = send(&app, delete).await;
    response.assert_error(405, 40001);
    assert!(
        response
            .header("allow")
            .is_some_and(|allow| allow.contains("GET"))
    );
}

#[tokio::test]
async fn bad_query_values_are_400_invalid_argument() {
    let app = gateway_without_backend().await;
    let cases = [
        ("/api/v1/merchants?page_size=abc", "page_size"),
        ("/api/v1/merchants?page_size=-1", "page_size"),
        ("/api/v1/merchants?page_size=0", "page_size"),
        ("/api/v1/merchants?page_size=501", "page_size"),
        ("/api/v1/merchants?pagesize=5", "unknown field `pagesize`"),
        ("/api/v1/points/accounts/u1/entries?kind=gift", "kind"),
        (
            "/api/v1/points/accounts/u1/entries?from=yesterday",
            "RFC 3339",
        ),
        ("/api/v1/audit-logs?outcome_code=ok", "outcome_code"),
        ("/api/v1/rules/default?at=2025-13-01T00:00:00Z", "RFC 3339"),
    ];
    for (uri, expected) in cases {
        let request = Request::get(uri)
            .header("x-api-key", "lp_test_key")
            .body(Body::empty())
            .expect("valid");
        let message = send(&app, request).await.assert_error(400, 40001);
        assert!(message.contains(expected), "{uri}: {message}");
    }
}

#[tokio::test]
async fn valid_requests_reach_the_backend_and_get_503_unavailable_when_it_is_down() {
    let app = gateway_without_backend().await;
    let requests = [
        json_request(
            "POST",
            EARN,
            r#"{"uid": "u1", "points": 5, "idempotency_key": "k1"}"#,
        ),
        json_request("POST", "/api/v1/api-keys/k_1/rotate", ""),
        get("/api/v1/me"),
        get("/api/v1/points/accounts/u%2F1/entries?from=2025-01-01T00:00:00+01:00&page_size=10"),
        get("/api/v1/audit-logs/verify"),
        Request::delete("/api/v1/api-keys/k_1")
            .body(Body::empty())
            .expect("valid"),
    ];
    for request in requests {
        let uri = request.uri().to_string();
        let message = send(&app, request).await.assert_error(503, 50301);
        assert!(
            !message.contains("127.0.0.1") && !message.contains("tcp"),
            "{uri} leaks: {message}"
        );
    }
}

#[tokio::test]
async fn a_non_ascii_api_key_is_401_unauthenticated() {
    let app = gateway_without_backend().await;
    let request = Request::get("/api/v1/me")
        .header(
            "x-api-key",
            axum::http::HeaderValue::from_bytes(b"lp_\xff").expect("obs-text is a valid header"),
        )
        .body(Body::empty())
        .expect("valid");
    send(&app, request).await.assert_error(401, 40101);
}
