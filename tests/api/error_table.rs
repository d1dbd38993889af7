//! SPEC §8 walked row by row: for every error a request can produce, the same request over REST and over gRPC
//! answers the row's envelope code and HTTP status, and its gRPC code and `ErrorInfo.reason` — all taken from the
//! contract's one table ([`points_api::ErrorCode`]). INTERNAL is the one row no request can produce on purpose.

use serde_json::json;
use tonic_types::StatusExt;

use crate::helpers::{TestApp, earn_request, idem, spawn_app_with, spend_request};
use crate::rest::{Reply, Rest};
use points::pb;
use points_api::ErrorCode;

/// Checks one row: the REST reply and the gRPC status of the same request.
fn assert_row(row: ErrorCode, rest: Reply, grpc: Result<impl std::fmt::Debug, tonic::Status>) {
    let label = row.reason();
    assert_eq!(
        rest.status,
        row.http_status(),
        "{label} over REST: {}",
        rest.text
    );
    assert_eq!(
        rest.body["code"],
        json!(row.envelope_code()),
        "{label} over REST: {}",
        rest.text
    );
    assert!(rest.body["data"].is_null(), "{label}: {}", rest.text);
    let status = grpc.expect_err(label);
    assert_eq!(
        status.code(),
        row.grpc_code(),
        "{label} over gRPC: {status:?}"
    );
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("{label} over gRPC carries no ErrorInfo: {status:?}"));
    assert_eq!(info.reason, row.reason(), "{label} over gRPC");
    assert_eq!(info.domain, points_api::ERROR_DOMAIN, "{label} over gRPC");
    assert_eq!(ErrorCode::of_status(&status), row);
}

struct Merchant {
    rest: Rest,
    key: String,
    merchant_id: String,
}

async fn merchant(app: &TestApp, slug: &str) -> Merchant {
    let (merchant, key) = app.register_merchant(slug).await;
    Merchant {
        rest: Rest::new(app).with_key(&key),
        key,
        merchant_id: merchant.merchant_id,
    }
}

#[tokio::test]
async fn every_error_a_request_can_produce_has_the_same_code_status_and_reason_over_rest_and_grpc()
{
    // A short lock timeout makes UNAVAILABLE reachable: a tenant table locked by someone else.
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_DB_STATEMENT_TIMEOUT_MS".into(), "300".into());
    })
    .await;
    let shop = merchant(&app, "table-shop").await;
    let points = || app.points(app.caller(&shop.key));
    let mut covered = Vec::new();

    // INVALID_ARGUMENT: no points.
    let rest = shop
        .rest
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u", "points": 0, "idempotency_key": idem()}),
        )
        .await;
    let grpc = points().earn(earn_request("u", 0, &idem())).await;
    assert_row(ErrorCode::InvalidArgument, rest, grpc);
    covered.push(ErrorCode::InvalidArgument);

    // UNAUTHENTICATED: a key nobody issued.
    let stranger = "lp_live_0000000000000000000000000000000000000000";
    let rest = Rest::new(&app).with_key(stranger).get("/api/v1/me").await;
    let grpc = app
        .merchants(app.caller(stranger))
        .get_me(pb::GetMeRequest {})
        .await;
    assert_row(ErrorCode::Unauthenticated, rest, grpc);
    covered.push(ErrorCode::Unauthenticated);

    // PERMISSION_DENIED: a read-only key earning.
    let created = shop
        .rest
        .post(
            "/api/v1/api-keys",
            json!({"name": "reader", "scopes": ["points:read"]}),
        )
        .await
        .ok(201);
    let reader = created["key"].as_str().expect("key").to_owned();
    let body = json!({"uid": "u", "points": 5, "idempotency_key": idem()});
    let rest = Rest::new(&app)
        .with_key(&reader)
        .post("/api/v1/points/earn", body)
        .await;
    let grpc = app
        .points(app.caller(&reader))
        .earn(earn_request("u", 5, &idem()))
        .await;
    assert_row(ErrorCode::PermissionDenied, rest, grpc);
    covered.push(ErrorCode::PermissionDenied);

    // NOT_FOUND: an entry that does not exist.
    let rest = shop.rest.get("/api/v1/points/entries/999999999").await;
    let grpc = points()
        .get_entry(pb::GetEntryRequest {
            entry_id: "999999999".into(),
        })
        .await;
    assert_row(ErrorCode::NotFound, rest, grpc);
    covered.push(ErrorCode::NotFound);

    // ALREADY_EXISTS: a slug that is taken.
    let admin = Rest::new(&app).with_key(&app.admin_key);
    let rest = admin
        .post(
            "/api/v1/merchants",
            json!({"slug": "table-shop", "name": "Again"}),
        )
        .await;
    let grpc = app
        .merchants(app.admin())
        .register_merchant(pb::RegisterMerchantRequest {
            slug: "table-shop".into(),
            name: "Again".into(),
        })
        .await;
    assert_row(ErrorCode::AlreadyExists, rest, grpc);
    covered.push(ErrorCode::AlreadyExists);

    // IDEMPOTENCY_CONFLICT: a key used again for another request.
    let (rest_key, grpc_key) = (idem(), idem());
    shop.rest
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u", "points": 5, "idempotency_key": rest_key}),
        )
        .await
        .ok(201);
    points()
        .earn(earn_request("u", 5, &grpc_key))
        .await
        .expect("first use of the key");
    let rest = shop
        .rest
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u", "points": 6, "idempotency_key": rest_key}),
        )
        .await;
    let grpc = points().earn(earn_request("u", 6, &grpc_key)).await;
    assert_row(ErrorCode::IdempotencyConflict, rest, grpc);
    covered.push(ErrorCode::IdempotencyConflict);

    // INSUFFICIENT_POINTS: spending more than the balance (10).
    let rest = shop
        .rest
        .post(
            "/api/v1/points/spend",
            json!({"uid": "u", "points": 11, "idempotency_key": idem()}),
        )
        .await;
    let grpc = points().spend(spend_request("u", 11, &idem())).await;
    assert_row(ErrorCode::InsufficientPoints, rest, grpc);
    covered.push(ErrorCode::InsufficientPoints);

    // NO_APPLICABLE_RULE: an amount in a currency no rule converts.
    let body = json!({"uid": "u", "amount": "10.00", "currency": "JPY", "idempotency_key": idem()});
    let rest = shop.rest.post("/api/v1/points/earn", body).await;
    let grpc = points()
        .earn(pb::EarnRequest {
            uid: "u".into(),
            amount: Some("10.00".into()),
            currency: Some("JPY".into()),
            idempotency_key: idem(),
            ..Default::default()
        })
        .await;
    assert_row(ErrorCode::NoApplicableRule, rest, grpc);
    covered.push(ErrorCode::NoApplicableRule);

    // HOLD_NOT_ACTIVE: capturing a hold that was voided.
    let hold_id = points()
        .create_hold(pb::CreateHoldRequest {
            uid: "u".into(),
            points: 1,
            idempotency_key: idem(),
            ..Default::default()
        })
        .await
        .expect("hold")
        .into_inner()
        .hold
        .expect("hold")
        .hold_id;
    points()
        .void_hold(pb::VoidHoldRequest {
            hold_id: hold_id.clone(),
            idempotency_key: idem(),
        })
        .await
        .expect("void");
    let rest = shop
        .rest
        .post(
            &format!("/api/v1/points/holds/{hold_id}/capture"),
            json!({"idempotency_key": idem()}),
        )
        .await;
    let grpc = points()
        .capture_hold(pb::CaptureHoldRequest {
            hold_id,
            idempotency_key: idem(),
            points: None,
        })
        .await;
    assert_row(ErrorCode::HoldNotActive, rest, grpc);
    covered.push(ErrorCode::HoldNotActive);

    // UNAVAILABLE: the tenant's accounts locked by another session past the lock timeout.
    let db = app.db().await;
    let schema = crate::helpers::schema_of(&shop.merchant_id);
    let (mut locker, connection) =
        tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    let lock = locker.transaction().await.expect("begin");
    lock.batch_execute(&format!(
        "LOCK TABLE {schema}.accounts IN ACCESS EXCLUSIVE MODE"
    ))
    .await
    .expect("lock");
    let rest = shop
        .rest
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u", "points": 1, "idempotency_key": idem()}),
        )
        .await;
    let grpc = points().earn(earn_request("u", 1, &idem())).await;
    assert_row(ErrorCode::Unavailable, rest, grpc);
    covered.push(ErrorCode::Unavailable);
    lock.rollback().await.expect("unlock");
    let balance: i64 = db
        .query_one(
            &format!("SELECT balance FROM {schema}.accounts WHERE uid = 'u'"),
            &[],
        )
        .await
        .expect("balance")
        .get(0);
    assert_eq!(balance, 10, "no refused request wrote anything");
    app.stop().await.expect("stop");

    // RATE_LIMITED: a key past its burst, on a server with a small limit.
    let limited = spawn_app_with(|settings| {
        settings.insert("POINTS_RATE_LIMIT_KEY_PER_SECOND".into(), "1".into());
        settings.insert("POINTS_RATE_LIMIT_KEY_BURST".into(), "2".into());
    })
    .await;
    let busy = merchant(&limited, "busy-shop").await;
    for _ in 0..2 {
        busy.rest.get("/api/v1/me").await.ok(200);
    }
    let rest = busy.rest.get("/api/v1/me").await;
    assert!(
        rest.headers.contains_key("retry-after"),
        "{:?}",
        rest.headers
    );
    let grpc = limited
        .merchants(limited.caller(&busy.key))
        .get_me(pb::GetMeRequest {})
        .await;
    assert_row(ErrorCode::RateLimited, rest, grpc);
    covered.push(ErrorCode::RateLimited);
    limited.stop().await.expect("stop");

    let missing: Vec<&str> = ErrorCode::ALL
        .into_iter()
        .filter(|row| !covered.contains(row) && *row != ErrorCode::Internal)
        .map(ErrorCode::reason)
        .collect();
    assert!(missing.is_empty(), "rows without a request: {missing:?}");
}
