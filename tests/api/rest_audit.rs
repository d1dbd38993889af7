//! The audit routes of SPEC §9 through the REST gateway: list (merchant and platform), get, verify.
//!
//! These assert the behaviour SPEC §7 and §11 promise; they pass once the audit trail (issue #5) is merged. Before
//! that the gateway answers 501 for every audit route and these tests fail.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::idem;
use crate::rest::{
    Rest, assert_fields, assert_time, encode_segment, int, page_items, rest_fixture, text,
};

/// SPEC §11 audit record fields.
const AUDIT_FIELDS: &[&str] = &[
    "audit_id",
    "occurred_at",
    "merchant_id",
    "key_id",
    "key_prefix",
    "transport",
    "method",
    "request_id",
    "request_digest",
    "outcome_code",
    "latency_us",
    "entry_ids",
];

/// How long an audit record may take to become visible (reads are audited through a buffer).
const AUDIT_VISIBLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `GET path` until an item satisfies `wanted`; returns it. Bounded by [`AUDIT_VISIBLE_TIMEOUT`].
async fn wait_for_record(client: &Rest, path: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + AUDIT_VISIBLE_TIMEOUT;
    loop {
        let items = page_items(&client.get(path).await.ok(200));
        if let Some(found) = items.into_iter().find(&wanted) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no matching audit record at {path} within {AUDIT_VISIBLE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An id of the same form as `existing` that names no record.
fn unknown_id_like(existing: &str) -> String {
    if !existing.is_empty() && existing.bytes().all(|byte| byte.is_ascii_digit()) {
        "999999999999".to_owned()
    } else if let Some((prefix, _)) = existing.split_once('_') {
        format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
    } else {
        uuid::Uuid::new_v4().to_string()
    }
}

#[tokio::test]
async fn audit_logs_list_the_merchants_rest_calls_with_request_id_transport_and_entries() {
    let fixture = rest_fixture("audited-shop").await;
    let merchant = &fixture.merchant;
    let request = merchant
        .request(Method::POST, "/api/v1/points/earn")
        .header("x-request-id", "audit-trace-1")
        .json(&json!({"uid": "u1", "points": 25, "idempotency_key": idem()}));
    let earned = merchant.send(request).await.ok(201);
    let entry_id = text(&earned["entry"]["entry_id"]).to_owned();

    let record = wait_for_record(merchant, "/api/v1/audit-logs?page_size=500", |record| {
        record["request_id"] == "audit-trace-1"
    })
    .await;
    assert_fields(&record, AUDIT_FIELDS);
    assert_eq!(record["transport"], "rest");
    assert_eq!(record["method"], "/points.v1.PointsService/Earn");
    assert_eq!(record["merchant_id"], fixture.merchant_id.as_str());
    assert_eq!(record["outcome_code"], 0);
    assert_eq!(record["entry_ids"], json!([entry_id]));
    assert_time(&record["occurred_at"]);
    assert!(int(&record["latency_us"]) >= 0);
    assert!(!text(&record["request_digest"]).is_empty());
    let key_prefix = text(&record["key_prefix"]);
    let key = fixture.merchant_key();
    assert!(
        key.starts_with(key_prefix),
        "the key prefix, never the key: {record}"
    );
    assert!(
        !serde_json::to_string(&record).expect("json").contains(&key),
        "the key never appears in the audit"
    );

    // Rejected calls are audited too, with their outcome code.
    merchant
        .post(
            "/api/v1/points/spend",
            json!({"uid": "u1", "points": 1000, "idempotency_key": idem()}),
        )
        .await
        .error(422, 42201);
    let rejected = wait_for_record(
        merchant,
        "/api/v1/audit-logs?outcome_code=42201",
        |record| record["method"] == "/points.v1.PointsService/Spend",
    )
    .await;
    assert_eq!(rejected["outcome_code"], 42201);

    // Filters: by method and by uid.
    let earns = page_items(
        &merchant
            .get(&format!(
                "/api/v1/audit-logs?method={}",
                encode_segment("/points.v1.PointsService/Earn")
            ))
            .await
            .ok(200),
    );
    assert!(!earns.is_empty());
    assert!(
        earns
            .iter()
            .all(|record| record["method"] == "/points.v1.PointsService/Earn"),
        "{earns:?}"
    );
    let for_uid = page_items(&merchant.get("/api/v1/audit-logs?uid=u1").await.ok(200));
    assert!(!for_uid.is_empty());
    let later = encode_segment(&(chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
    assert!(
        page_items(
            &merchant
                .get(&format!("/api/v1/audit-logs?from={later}"))
                .await
                .ok(200)
        )
        .is_empty()
    );
    let one = merchant.get("/api/v1/audit-logs?page_size=1").await.ok(200);
    assert_eq!(page_items(&one).len(), 1);
    assert!(
        one["next_page_token"].is_string(),
        "more than one record, so a next page: {one}"
    );
}

#[tokio::test]
async fn an_audit_record_is_fetched_by_id_and_an_unknown_id_is_404() {
    let fixture = rest_fixture("audit-get-shop").await;
    let merchant = &fixture.merchant;
    let request = merchant
        .request(Method::POST, "/api/v1/points/earn")
        .header("x-request-id", "audit-get-1")
        .json(&json!({
            "uid": "u1", "points": 5, "idempotency_key": idem(),
        }));
    merchant.send(request).await.ok(201);
    let listed = wait_for_record(merchant, "/api/v1/audit-logs", |record| {
        record["request_id"] == "audit-get-1"
    })
    .await;
    let audit_id = text(&listed["audit_id"]).to_owned();

    let fetched = merchant
        .get(&format!("/api/v1/audit-logs/{}", encode_segment(&audit_id)))
        .await
        .ok(200);
    assert_fields(&fetched, AUDIT_FIELDS);
    assert_eq!(fetched, listed);

    let unknown = unknown_id_like(&audit_id);
    merchant
        .get(&format!("/api/v1/audit-logs/{}", encode_segment(&unknown)))
        .await
        .error(404, 40401);
    // Another merchant cannot read it.
    let (_, other_key) = fixture.admin.register_merchant("audit-nosy").await;
    fixture
        .anonymous
        .with_key(&other_key)
        .get(&format!("/api/v1/audit-logs/{}", encode_segment(&audit_id)))
        .await
        .error(404, 40401);
}

#[tokio::test]
async fn verifying_an_untouched_audit_chain_reports_ok_with_the_number_checked() {
    let fixture = rest_fixture("audit-verify-shop").await;
    let merchant = &fixture.merchant;
    for points in [1, 2, 3] {
        merchant
            .post(
                "/api/v1/points/earn",
                json!({"uid": "u1", "points": points, "idempotency_key": idem()}),
            )
            .await
            .ok(201);
    }
    wait_for_record(merchant, "/api/v1/audit-logs", |record| {
        record["method"] == "/points.v1.PointsService/Earn"
    })
    .await;

    let verification = merchant.get("/api/v1/audit-logs/verify").await.ok(200);
    assert_fields(&verification, &["ok", "checked", "first_bad_audit_id"]);
    assert_eq!(verification["ok"], true, "{verification}");
    assert!(int(&verification["checked"]) >= 3, "{verification}");
    assert!(
        verification["first_bad_audit_id"].is_null(),
        "{verification}"
    );

    merchant
        .get("/api/v1/audit-logs/verify?colour=blue")
        .await
        .error(400, 40001);
    let platform = fixture.admin.get("/api/v1/audit-logs/verify").await.ok(200);
    assert_eq!(platform["ok"], true, "{platform}");
}

#[tokio::test]
async fn an_admin_key_reads_the_platform_audit_and_with_x_merchant_id_the_merchants() {
    let fixture = rest_fixture("audit-platform-shop").await;
    let register = wait_for_record(
        &fixture.admin,
        "/api/v1/audit-logs?page_size=500",
        |record| record["method"] == "/points.v1.MerchantService/RegisterMerchant",
    )
    .await;
    assert_fields(&register, AUDIT_FIELDS);
    assert_eq!(register["transport"], "rest");

    // Rejected calls (a bad key) land in the platform audit.
    fixture
        .anonymous
        .with_key("lp_live_nonsense")
        .get("/api/v1/me")
        .await
        .error(401, 40101);
    wait_for_record(
        &fixture.admin,
        "/api/v1/audit-logs?page_size=500",
        |record| record["outcome_code"] == 40101,
    )
    .await;

    // Acting for the merchant: the call is in the merchant's audit with the admin key's id.
    let acting = fixture.admin.acting_for(&fixture.merchant_id);
    let request = acting
        .request(Method::POST, "/api/v1/points/earn")
        .header("x-request-id", "admin-acting-1")
        .json(&json!({
            "uid": "u1", "points": 5, "idempotency_key": idem(),
        }));
    acting.send(request).await.ok(201);
    let admin_key_id =
        text(&fixture.admin.get("/api/v1/me").await.ok(200)["api_key"]["key_id"]).to_owned();
    let in_merchant = wait_for_record(&fixture.merchant, "/api/v1/audit-logs", |record| {
        record["request_id"] == "admin-acting-1"
    })
    .await;
    assert_eq!(in_merchant["key_id"], admin_key_id.as_str());
    let via_admin = wait_for_record(&acting, "/api/v1/audit-logs", |record| {
        record["request_id"] == "admin-acting-1"
    })
    .await;
    assert_eq!(via_admin["audit_id"], in_merchant["audit_id"]);
}

#[tokio::test]
async fn reading_the_audit_needs_the_audit_read_scope_and_bad_queries_are_400() {
    let fixture = rest_fixture("audit-scope-shop").await;
    let created = fixture
        .merchant
        .post(
            "/api/v1/api-keys",
            json!({"name": "no audit", "scopes": ["points:read"]}),
        )
        .await
        .ok(201);
    let reader = fixture.anonymous.with_key(text(&created["key"]));
    reader.get("/api/v1/audit-logs").await.error(403, 40301);
    reader
        .get("/api/v1/audit-logs/verify")
        .await
        .error(403, 40301);
    fixture
        .anonymous
        .get("/api/v1/audit-logs")
        .await
        .error(401, 40101);

    for path in [
        "/api/v1/audit-logs?page_size=0",
        "/api/v1/audit-logs?page_size=501",
        "/api/v1/audit-logs?page_token=garbage",
        "/api/v1/audit-logs?from=yesterday",
        "/api/v1/audit-logs?outcome_code=abc",
        "/api/v1/audit-logs?colour=blue",
    ] {
        fixture.merchant.get(path).await.error(400, 40001);
    }
}

impl crate::rest::RestFixture {
    /// The plaintext of the fixture merchant's key.
    fn merchant_key(&self) -> String {
        self.merchant.key().expect("a merchant key").to_owned()
    }
}
