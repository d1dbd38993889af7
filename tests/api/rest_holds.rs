//! Holds over REST (SPEC §12, §9): the five routes through the real gateway and server, their statuses, envelope
//! codes and shapes, and hold operations in a batch.

use serde_json::{Value, json};

use crate::helpers::idem;
use crate::rest::{
    ENTRY_FIELDS, Rest, assert_fields, assert_time, earn, encode_segment, mutation_entry,
    page_items, rest_fixture, text,
};

const HOLD_FIELDS: &[&str] = &[
    "hold_id",
    "uid",
    "points",
    "captured_points",
    "status",
    "expires_at",
    "reference",
    "description",
    "metadata",
    "idempotency_key",
    "capture_entry_id",
    "created_at",
    "closed_at",
];

/// Asserts `data` is `{hold, account, replayed}` with the account's (balance, held, available); returns the hold.
#[track_caller]
fn hold_result(data: &Value, replayed: bool, figures: (i64, i64, i64)) -> Value {
    assert_fields(data, &["hold", "account", "replayed"]);
    assert_eq!(data["replayed"], replayed, "{data}");
    let account = &data["account"];
    assert_eq!(
        (&account["balance"], &account["held"], &account["available"]),
        (&json!(figures.0), &json!(figures.1), &json!(figures.2)),
        "{data}"
    );
    assert_fields(&data["hold"], HOLD_FIELDS).clone()
}

async fn create_hold(client: &Rest, uid: &str, points: i64) -> Value {
    let body = json!({"uid": uid, "points": points, "idempotency_key": idem()});
    let data = client.post("/api/v1/points/holds", body).await.ok(201);
    data["hold"].clone()
}

#[tokio::test]
async fn a_hold_is_created_fetched_listed_captured_and_voided_over_rest() {
    let fixture = rest_fixture("rest-hold-shop").await;
    let merchant = &fixture.merchant;
    earn(merchant, "user/42", 100).await;
    let body = json!({
        "uid": "user/42",
        "points": 30,
        "idempotency_key": "order-1-hold",
        "reference": "order-1",
        "metadata": {"store": "north"},
    });
    let data = merchant
        .post("/api/v1/points/holds", body.clone())
        .await
        .ok(201);
    let hold = hold_result(&data, false, (100, 30, 70));
    assert_eq!(hold["status"], "active");
    assert_eq!(hold["metadata"], json!({"store": "north"}));
    assert!(hold["closed_at"].is_null() && hold["capture_entry_id"].is_null());
    assert_time(&hold["expires_at"]);
    let hold_id = text(&hold["hold_id"]).to_owned();

    let replay = merchant
        .post("/api/v1/points/holds", body.clone())
        .await
        .ok(200);
    assert_eq!(
        hold_result(&replay, true, (100, 30, 70))["hold_id"],
        hold_id
    );
    let changed = json!({"uid": "user/42", "points": 31, "idempotency_key": "order-1-hold"});
    merchant
        .post("/api/v1/points/holds", changed)
        .await
        .error(409, 40902);

    let account = merchant
        .get(&format!(
            "/api/v1/points/accounts/{}",
            encode_segment("user/42")
        ))
        .await
        .ok(200);
    assert_eq!(
        (&account["held"], &account["available"]),
        (&json!(30), &json!(70))
    );
    let fetched = merchant
        .get(&format!("/api/v1/points/holds/{hold_id}"))
        .await
        .ok(200);
    assert_eq!(fetched, hold);

    let capture_path = format!("/api/v1/points/holds/{hold_id}/capture");
    let capture = json!({"idempotency_key": "order-1-capture", "points": 25});
    let captured = merchant.post(&capture_path, capture.clone()).await.ok(201);
    let closed = hold_result(&captured, false, (75, 0, 75));
    assert_eq!(
        (&closed["status"], &closed["captured_points"]),
        (&json!("captured"), &json!(25))
    );
    let entry = assert_fields(&captured["entry"], ENTRY_FIELDS);
    assert_eq!(
        (&entry["kind"], &entry["delta"]),
        (&json!("spend"), &json!(-25))
    );
    assert_eq!(entry["hold_id"], hold_id);
    assert_eq!(closed["capture_entry_id"], entry["entry_id"]);
    let replayed = merchant.post(&capture_path, capture).await.ok(200);
    assert_eq!(replayed["entry"], captured["entry"]);
    merchant
        .post(&capture_path, json!({"idempotency_key": idem()}))
        .await
        .error(422, 42203);
    merchant
        .post(
            &format!("/api/v1/points/holds/{hold_id}/void"),
            json!({"idempotency_key": idem()}),
        )
        .await
        .error(422, 42203);

    let other = create_hold(merchant, "user/42", 50).await;
    let other_id = text(&other["hold_id"]).to_owned();
    merchant
        .post(
            "/api/v1/points/spend",
            json!({"uid": "user/42", "points": 26, "idempotency_key": idem()}),
        )
        .await
        .error(422, 42201);
    merchant
        .post(
            &format!("/api/v1/points/holds/{other_id}/capture"),
            json!({"idempotency_key": idem(), "points": 51}),
        )
        .await
        .error(400, 40001);
    let voided = merchant
        .post(
            &format!("/api/v1/points/holds/{other_id}/void"),
            json!({"idempotency_key": idem()}),
        )
        .await
        .ok(200);
    assert_eq!(hold_result(&voided, false, (75, 0, 75))["status"], "voided");
    assert!(voided.get("entry").is_none_or(Value::is_null));

    let list_path = format!(
        "/api/v1/points/accounts/{}/holds",
        encode_segment("user/42")
    );
    let first = merchant
        .get(&format!("{list_path}?page_size=1"))
        .await
        .ok(200);
    let items = page_items(&first);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["hold_id"], other_id);
    let token = text(&first["next_page_token"]);
    let second = merchant
        .get(&format!("{list_path}?page_size=1&page_token={token}"))
        .await
        .ok(200);
    assert_eq!(page_items(&second)[0]["hold_id"], hold_id);
    assert!(second["next_page_token"].is_null());
}

#[tokio::test]
async fn bad_hold_requests_are_envelope_errors() {
    let fixture = rest_fixture("rest-bad-hold-shop").await;
    let merchant = &fixture.merchant;
    earn(merchant, "u", 10).await;
    merchant
        .post(
            "/api/v1/points/holds",
            json!({"uid": "u", "points": 11, "idempotency_key": idem()}),
        )
        .await
        .error(422, 42201);
    let bad_bodies = [
        json!({"uid": "u", "points": 0, "idempotency_key": idem()}),
        json!({"uid": "u", "points": 1}),
        json!({"uid": "u", "points": 1, "idempotency_key": idem(), "extra": true}),
        json!({"uid": "u", "points": 1, "idempotency_key": idem(), "expires_at": "2001-01-01T00:00:00Z"}),
    ];
    for body in bad_bodies {
        merchant
            .post("/api/v1/points/holds", body)
            .await
            .error(400, 40001);
    }
    merchant
        .get("/api/v1/points/holds/abc")
        .await
        .error(400, 40001);
    merchant
        .get("/api/v1/points/holds/999999")
        .await
        .error(404, 40401);
    merchant
        .post(
            "/api/v1/points/holds/999999/void",
            json!({"idempotency_key": idem()}),
        )
        .await
        .error(404, 40401);
    merchant
        .get("/api/v1/points/accounts/u/holds?page_token=forged")
        .await
        .error(400, 40001);
}

#[tokio::test]
async fn a_batch_takes_hold_capture_and_void_operations_over_rest() {
    let fixture = rest_fixture("rest-batch-hold-shop").await;
    let merchant = &fixture.merchant;
    earn(merchant, "u", 100).await;
    let to_capture = text(&create_hold(merchant, "u", 10).await["hold_id"]).to_owned();
    let to_void = text(&create_hold(merchant, "u", 10).await["hold_id"]).to_owned();
    let batch = json!({"operations": [
        {"op": "hold", "uid": "u", "points": 30, "idempotency_key": idem()},
        {"op": "capture", "hold_id": to_capture, "points": 4, "idempotency_key": idem()},
        {"op": "void", "hold_id": to_void, "idempotency_key": idem()},
        {"op": "void", "hold_id": to_void, "idempotency_key": idem()},
        {"op": "spend", "uid": "u", "points": 6, "idempotency_key": idem()},
    ]});
    let data = merchant.post("/api/v1/points/batch", batch).await.ok(200);
    let results = data["results"].as_array().expect("results").clone();
    let codes: Vec<i64> = results
        .iter()
        .map(|r| r["code"].as_i64().expect("code"))
        .collect();
    assert_eq!(codes, vec![0, 0, 0, 42203, 0]);
    assert_eq!(
        hold_result(&results[0]["data"], false, (100, 50, 50))["status"],
        "active"
    );
    let captured = &results[1]["data"];
    assert_eq!(
        hold_result(captured, false, (96, 40, 56))["captured_points"],
        4
    );
    assert_eq!(captured["entry"]["hold_id"], to_capture);
    assert_eq!(
        hold_result(&results[2]["data"], false, (96, 30, 66))["status"],
        "voided"
    );
    assert!(results[3]["data"].is_null());
    mutation_entry(&results[4]["data"], 90, false);
}
