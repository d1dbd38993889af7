//! Rate limits per key and per merchant (SPEC §14), over REST and gRPC.

use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{earn_request, idem, spawn_app_with};
use crate::rest::Rest;

#[tokio::test]
async fn a_key_over_its_limit_gets_42901_with_retry_after_and_another_key_of_the_merchant_does_not()
{
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_RATE_LIMIT_KEY_PER_SECOND".into(), "1".into());
        settings.insert("POINTS_RATE_LIMIT_KEY_BURST".into(), "3".into());
        settings.insert(
            "POINTS_RATE_LIMIT_MERCHANT_PER_SECOND".into(),
            "1000".into(),
        );
        settings.insert("POINTS_RATE_LIMIT_MERCHANT_BURST".into(), "1000".into());
    })
    .await;
    let anonymous = Rest::new(&app);
    let (merchant_id, key) = anonymous
        .with_key(&app.admin_key)
        .register_merchant("limited-shop")
        .await;
    let first = anonymous.with_key(&key);
    // A second key of the same merchant, made by the admin (whose own bucket is separate).
    let second_key = anonymous
        .with_key(&app.admin_key)
        .acting_for(&merchant_id)
        .post(
            "/api/v1/api-keys",
            json!({"name": "second", "scopes": ["points:read", "points:write"]}),
        )
        .await
        .ok(201)["key"]
        .as_str()
        .expect("plaintext key")
        .to_owned();
    let second = anonymous.with_key(&second_key);

    // Within the burst: answered, with the IETF fields of the key's bucket.
    let reply = first.get("/api/v1/points/accounts/alice").await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert_eq!(
        reply
            .headers
            .get("ratelimit-policy")
            .and_then(|v| v.to_str().ok()),
        Some("\"key\";q=3;w=1")
    );
    let state = reply
        .headers
        .get("ratelimit")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(state.starts_with("\"key\";r="), "{state}");
    first.get("/api/v1/points/accounts/alice").await.ok(200);
    first.get("/api/v1/points/accounts/alice").await.ok(200);
    // Past it: 429 / 42901 with Retry-After, nothing written.
    let limited = first
        .post(
            "/api/v1/points/earn",
            json!({"uid": "alice", "points": 5, "idempotency_key": idem()}),
        )
        .await;
    let retry_after = limited
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(retry_after, Some(1), "{:?}", limited.headers);
    let message = limited.error(429, 42901);
    assert!(message.contains("rate limit"), "{message}");
    // The other key of the merchant is within its own limit and the merchant's.
    second
        .post(
            "/api/v1/points/earn",
            json!({"uid": "alice", "points": 5, "idempotency_key": idem()}),
        )
        .await
        .ok(201);
    let balance = second.get("/api/v1/points/accounts/alice").await.ok(200);
    assert_eq!(
        balance["balance"],
        json!(5),
        "the limited earn wrote nothing"
    );

    // Over gRPC: RESOURCE_EXHAUSTED with ErrorInfo RATE_LIMITED and RetryInfo.
    let status = app
        .points(app.caller(&key))
        .earn(earn_request("alice", 1, &idem()))
        .await
        .expect_err("still limited");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.get_details_error_info().map(|info| info.reason),
        Some("RATE_LIMITED".to_owned())
    );
    let delay = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo");
    assert!(delay <= std::time::Duration::from_secs(1), "{delay:?}");
    // After the wait, the key works again.
    tokio::time::sleep(delay + std::time::Duration::from_millis(50)).await;
    first.get("/api/v1/points/accounts/alice").await.ok(200);
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn a_merchant_over_its_limit_limits_all_its_keys_but_no_other_merchant() {
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_RATE_LIMIT_MERCHANT_PER_SECOND".into(), "1".into());
        settings.insert("POINTS_RATE_LIMIT_MERCHANT_BURST".into(), "2".into());
    })
    .await;
    let anonymous = Rest::new(&app);
    let admin = anonymous.with_key(&app.admin_key);
    let (_, key) = admin.register_merchant("busy-shop").await;
    let (_, other_key) = admin.register_merchant("quiet-shop").await;
    let busy = anonymous.with_key(&key);
    busy.get("/api/v1/points/accounts/a").await.ok(200);
    busy.get("/api/v1/points/accounts/a").await.ok(200);
    let message = busy
        .get("/api/v1/points/accounts/a")
        .await
        .error(429, 42901);
    assert!(message.contains("merchant"), "{message}");
    anonymous
        .with_key(&other_key)
        .get("/api/v1/points/accounts/a")
        .await
        .ok(200);
    app.stop().await.expect("stop");
}
