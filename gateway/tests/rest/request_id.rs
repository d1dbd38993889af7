//! `x-request-id`: echoed when the client sends a usable one, generated otherwise, on every response.

use axum::body::Body;
use axum::http::Request;

use crate::helpers::{gateway_without_backend, get, send};

#[tokio::test]
async fn a_client_request_id_is_echoed() {
    let app = gateway_without_backend().await;
    let request = Request::get("/healthz")
        .header("x-request-id", "req-123")
        .body(Body::empty())
        .expect("valid");
    assert_eq!(
        send(&app, request).await.header("x-request-id").as_deref(),
        Some("req-123")
    );
}

#[tokio::test]
async fn a_missing_or_unusable_request_id_is_replaced_by_a_uuid() {
    let app = gateway_without_backend().await;
    let too_long = "r".repeat(129);
    let requests = [
        get("/healthz"),
        Request::get("/healthz")
            .header("x-request-id", "")
            .body(Body::empty())
            .expect("valid"),
        Request::get("/healthz")
            .header("x-request-id", too_long.as_str())
            .body(Body::empty())
            .expect("valid"),
    ];
    for request in requests {
        let request_id = send(&app, request)
            .await
            .header("x-request-id")
            .expect("x-request-id is set");
        assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "{request_id}");
    }
}

#[tokio::test]
async fn errors_carry_the_request_id_too() {
    let app = gateway_without_backend().await;
    for uri in [
        "/api/v1/nope",
        "/api/v1/me",
        "/api/v1/merchants?page_size=x",
    ] {
        let request = Request::get(uri)
            .header("x-request-id", "err-1")
            .body(Body::empty())
            .expect("valid");
        assert_eq!(
            send(&app, request).await.header("x-request-id").as_deref(),
            Some("err-1"),
            "{uri}"
        );
    }
    let wrong_method = Request::put("/healthz")
        .header("x-request-id", "err-2")
        .body(Body::empty())
        .expect("valid");
    assert_eq!(
        send(&app, wrong_method)
            .await
            .header("x-request-id")
            .as_deref(),
        Some("err-2")
    );
}
