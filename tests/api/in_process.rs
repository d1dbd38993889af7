//! The REST gateway inside the `points` binary calls the gRPC services in-process (issue 12): what the network hop
//! used to guarantee still holds — only the gateway token makes a call `rest`, the server's deadline ends a call as
//! CANCELLED, a REST client that goes away cancels its call, and a graceful stop lets a REST call in flight finish.
//! (That no connection reaches the gRPC listener is `tests/in_process_gateway.rs`, a binary of its own, since it
//! reads process-wide metrics.)

use std::time::{Duration, Instant};

use serde_json::json;
use tonic::metadata::MetadataValue;

use crate::helpers::{TEST_GATEWAY_TOKEN, earn_request, idem, spawn_app_with};
use crate::rest::{Rest, earn, rest_fixture};

const WAIT_MAX: Duration = Duration::from_secs(15);

fn schema_of(merchant_id: &str) -> String {
    format!("merchant_{}", merchant_id.replace('-', ""))
}

/// The transport and outcome code of the audit records of `request_id`, waiting up to [`WAIT_MAX`] for one (reads and
/// refusals are written by the buffer, after the call).
async fn audited(
    db: &tokio_postgres::Client,
    merchant_id: &str,
    request_id: &str,
) -> Vec<(String, i32)> {
    let sql = format!(
        "SELECT transport, outcome_code FROM {}.audit_records WHERE request_id = $1 ORDER BY audit_id",
        schema_of(merchant_id)
    );
    let started = Instant::now();
    loop {
        let rows = db.query(&sql, &[&request_id]).await.expect("audit rows");
        if !rows.is_empty() || started.elapsed() > WAIT_MAX {
            return rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a query of the app's database waits for a lock: the call under test has reached the database.
async fn wait_for_a_blocked_query(db: &tokio_postgres::Client) {
    let started = Instant::now();
    loop {
        let blocked: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if blocked > 0 {
            return;
        }
        assert!(started.elapsed() < WAIT_MAX, "no call reached the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn only_the_gateway_token_makes_a_call_rest_whether_it_comes_in_process_or_over_the_network()
{
    let fixture = rest_fixture("token-boundary").await;
    let app = &fixture.app;
    let merchant_key = fixture.merchant.key().expect("key").to_owned();
    let db = app.db().await;

    // Through the in-process gateway: recorded as rest, as before.
    fixture
        .merchant
        .send(
            fixture
                .merchant
                .request(reqwest::Method::POST, "/api/v1/points/earn")
                .header("x-request-id", "in-process-rest")
                .json(&json!({"uid": "u-1", "points": 5, "idempotency_key": idem()})),
        )
        .await
        .ok(201);
    assert_eq!(
        audited(&db, &fixture.merchant_id, "in-process-rest").await,
        vec![("rest".to_owned(), 0)]
    );

    // Over the network, claiming rest: only the right token makes it so.
    for (request_id, token, transport) in [
        ("network-no-token", None, "grpc"),
        ("network-wrong-token", Some("not-the-gateway-token"), "grpc"),
        ("network-right-token", Some(TEST_GATEWAY_TOKEN), "rest"),
    ] {
        let mut request = tonic::Request::new(earn_request("u-2", 1, &idem()));
        let metadata = request.metadata_mut();
        metadata.insert(
            "x-api-key",
            MetadataValue::try_from(merchant_key.as_str()).expect("ascii"),
        );
        metadata.insert("x-request-id", MetadataValue::from_static(request_id));
        metadata.insert("x-points-transport", MetadataValue::from_static("rest"));
        if let Some(token) = token {
            metadata.insert(
                "x-points-gateway-token",
                MetadataValue::try_from(token).expect("ascii"),
            );
        }
        points::pb::points_service_client::PointsServiceClient::new(app.channel.clone())
            .earn(request)
            .await
            .expect("earn over gRPC");
        assert_eq!(
            audited(&db, &fixture.merchant_id, request_id).await,
            vec![(transport.to_owned(), 0)],
            "{request_id}"
        );
    }

    // The in-process path authenticates like the listener: a key the server does not know is refused there.
    let stranger = fixture
        .anonymous
        .with_key("lp_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let refused = stranger
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u-3", "points": 1, "idempotency_key": idem()}),
        )
        .await;
    assert_eq!(refused.status, 401, "{}", refused.text);
}

#[tokio::test]
async fn the_servers_request_timeout_ends_an_in_process_call_as_over_the_network() {
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_REQUEST_TIMEOUT_MS".into(), "400".into());
    })
    .await;
    let admin = Rest::new(&app).with_key(&app.admin_key);
    let (merchant_id, key) = admin.register_merchant("slow-shop").await;
    let merchant = Rest::new(&app).with_key(&key);
    earn(&merchant, "u-1", 5).await;

    let db = app.db().await;
    db.batch_execute(&format!(
        "BEGIN; LOCK TABLE {}.accounts IN ACCESS EXCLUSIVE MODE",
        schema_of(&merchant_id)
    ))
    .await
    .expect("lock the accounts");

    // Over the network: tonic's server ends the call at its timeout with CANCELLED.
    let mut request = tonic::Request::new(points::pb::GetAccountRequest { uid: "u-1".into() });
    request.metadata_mut().insert(
        "x-api-key",
        MetadataValue::try_from(key.as_str()).expect("ascii"),
    );
    let status = points::pb::points_service_client::PointsServiceClient::new(app.channel.clone())
        .get_account(request)
        .await
        .expect_err("the server times the call out");
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");

    // In-process: the same timeout, the same status, which the gateway answers as 503 / 50301.
    let started = Instant::now();
    let reply = merchant.get("/api/v1/points/accounts/u-1").await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.body["code"], 50301, "{}", reply.text);
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    db.batch_execute("ROLLBACK").await.expect("unlock");
}

#[tokio::test]
async fn a_rest_client_that_goes_away_cancels_its_in_process_call_which_is_recorded_as_cancelled() {
    let fixture = rest_fixture("leaving-client").await;
    earn(&fixture.merchant, "u-1", 5).await;
    let db = fixture.app.db().await;
    let locker = fixture.app.db().await;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {}.accounts IN ACCESS EXCLUSIVE MODE",
            schema_of(&fixture.merchant_id)
        ))
        .await
        .expect("lock the accounts");

    let leaving = fixture
        .merchant
        .request(reqwest::Method::GET, "/api/v1/points/accounts/u-1")
        .header("x-request-id", "client-went-away")
        .send();
    let call = tokio::spawn(leaving);
    wait_for_a_blocked_query(&db).await;
    // The client goes away: its connection closes with the request unanswered.
    call.abort();
    assert!(call.await.expect_err("aborted").is_cancelled());

    let records = audited(&db, &fixture.merchant_id, "client-went-away").await;
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    assert_eq!(records, vec![("rest".to_owned(), 49900)]);
}

#[tokio::test]
async fn a_graceful_stop_lets_a_rest_call_in_flight_finish_and_records_it() {
    let fixture = rest_fixture("stopping-rest-shop").await;
    earn(&fixture.merchant, "u-1", 5).await;
    let locker = fixture.app.db().await;
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM {}.accounts WHERE uid = 'u-1' FOR UPDATE",
            schema_of(&fixture.merchant_id)
        ))
        .await
        .expect("lock the account");

    let in_flight = tokio::spawn({
        let merchant = fixture.merchant.clone();
        async move {
            merchant
                .send(
                    merchant
                        .request(reqwest::Method::POST, "/api/v1/points/earn")
                        .header("x-request-id", "in-flight-at-stop")
                        .json(&json!({"uid": "u-1", "points": 7, "idempotency_key": idem()})),
                )
                .await
        }
    });
    let db = fixture.app.db().await;
    wait_for_a_blocked_query(&db).await;

    let merchant_id = fixture.merchant_id.clone();
    let stopping = tokio::spawn(fixture.app.stop());
    // The stop waits for the call; give it a moment to prove it does not end first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "stopped with a call in flight");
    assert!(
        !in_flight.is_finished(),
        "the call ended while its row was locked"
    );

    locker.batch_execute("COMMIT").await.expect("unlock");
    let reply = in_flight.await.expect("join");
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["data"]["balance"], 12, "{}", reply.text);
    stopping.await.expect("join").expect("a graceful stop");
    assert_eq!(
        audited(&db, &merchant_id, "in-flight-at-stop").await,
        vec![("rest".to_owned(), 0)]
    );
}
