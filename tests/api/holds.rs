//! Holds over gRPC (SPEC §12): every transition and error, expiry and the sweeper, idempotency, batches, audit,
//! and 64 tasks racing holds, captures, voids and spends on one uid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use points::pb;
use tonic::Code;

use crate::helpers::{
    PointsClient, TestApp, assert_ledger_invariants, assert_status, earn_request, idem, schema_of,
    spawn_app, spawn_app_with, spend_request,
};

fn hold_request(uid: &str, points: i64, key: &str) -> pb::CreateHoldRequest {
    pb::CreateHoldRequest {
        uid: uid.into(),
        points,
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn capture_request(hold_id: &str, points: Option<i64>, key: &str) -> pb::CaptureHoldRequest {
    pb::CaptureHoldRequest {
        hold_id: hold_id.into(),
        idempotency_key: key.into(),
        points,
    }
}

fn void_request(hold_id: &str, key: &str) -> pb::VoidHoldRequest {
    pb::VoidHoldRequest {
        hold_id: hold_id.into(),
        idempotency_key: key.into(),
    }
}

/// A merchant with `points` earned by `uid`, and its points client.
async fn shop_with(app: &TestApp, slug: &str, uid: &str, points: i64) -> (String, PointsClient) {
    let (merchant, key) = app.register_merchant(slug).await;
    let mut client = app.points(app.caller(&key));
    client
        .earn(earn_request(uid, points, &idem()))
        .await
        .expect("earn");
    (merchant.merchant_id, client)
}

async fn hold(points: &mut PointsClient, uid: &str, amount: i64) -> pb::HoldResponse {
    points
        .create_hold(hold_request(uid, amount, &idem()))
        .await
        .expect("create hold")
        .into_inner()
}

async fn account(points: &mut PointsClient, uid: &str) -> pb::Account {
    points
        .get_account(pb::GetAccountRequest { uid: uid.into() })
        .await
        .expect("account")
        .into_inner()
}

fn hold_of(response: &pb::HoldResponse) -> &pb::Hold {
    response.hold.as_ref().expect("hold")
}

/// (balance, held, available) of an account.
fn figures(account: &pb::Account) -> (i64, i64, i64) {
    (account.balance, account.held, account.available)
}

#[tokio::test]
async fn a_hold_reserves_points_and_its_capture_spends_them_with_one_entry_naming_the_hold() {
    let app = spawn_app().await;
    let (merchant_id, mut points) = shop_with(&app, "hold-shop", "alice", 100).await;
    let created = points
        .create_hold(pb::CreateHoldRequest {
            reference: Some("order-7".into()),
            description: Some("checkout".into()),
            ..hold_request("alice", 30, "h1")
        })
        .await
        .expect("create hold")
        .into_inner();
    assert!(!created.replayed);
    let held = hold_of(&created).clone();
    assert_eq!(
        (held.status.as_str(), held.points, held.captured_points),
        ("active", 30, 0)
    );
    assert_eq!(held.idempotency_key, "h1");
    assert!(held.closed_at.is_none() && held.capture_entry_id.is_none());
    let ttl = held.expires_at.expect("expiry").seconds - held.created_at.expect("created").seconds;
    assert!(
        (899..=901).contains(&ttl),
        "default expiry 15 minutes, got {ttl}s"
    );
    assert_eq!(
        figures(created.account.as_ref().expect("account")),
        (100, 30, 70)
    );
    assert_eq!(figures(&account(&mut points, "alice").await), (100, 30, 70));
    let fetched = points
        .get_hold(pb::GetHoldRequest {
            hold_id: held.hold_id.clone(),
        })
        .await
        .expect("get hold")
        .into_inner();
    assert_eq!(fetched, held);

    let captured = points
        .capture_hold(capture_request(&held.hold_id, None, "c1"))
        .await
        .expect("capture")
        .into_inner();
    let entry = captured.entry.clone().expect("the spend entry");
    assert_eq!(
        (entry.kind.as_str(), entry.delta, entry.balance_after),
        ("spend", -30, 70)
    );
    assert_eq!(entry.hold_id.as_deref(), Some(held.hold_id.as_str()));
    assert_eq!(entry.reference.as_deref(), Some("order-7"));
    let closed = hold_of(&captured);
    assert_eq!(
        (closed.status.as_str(), closed.captured_points),
        ("captured", 30)
    );
    assert_eq!(
        closed.capture_entry_id.as_deref(),
        Some(entry.entry_id.as_str())
    );
    assert!(closed.closed_at.is_some());
    assert_eq!(
        figures(captured.account.as_ref().expect("account")),
        (70, 0, 70)
    );
    let listed = points
        .list_entries(pb::ListEntriesRequest {
            uid: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("entries")
        .into_inner();
    assert_eq!(listed.items.len(), 2, "the earn and the capture's spend");
    assert_eq!(listed.items[0], entry);
    assert_ledger_invariants(&app.db().await, &merchant_id).await;
}

#[tokio::test]
async fn a_partial_capture_spends_part_and_releases_the_rest() {
    let app = spawn_app().await;
    let (_, mut points) = shop_with(&app, "partial-shop", "bob", 100).await;
    let held = hold(&mut points, "bob", 50).await;
    let hold_id = hold_of(&held).hold_id.clone();
    let captured = points
        .capture_hold(capture_request(&hold_id, Some(20), &idem()))
        .await
        .expect("partial capture")
        .into_inner();
    assert_eq!(captured.entry.as_ref().expect("entry").delta, -20);
    let closed = hold_of(&captured);
    assert_eq!(
        (
            closed.status.as_str(),
            closed.points,
            closed.captured_points
        ),
        ("captured", 50, 20)
    );
    assert_eq!(figures(&account(&mut points, "bob").await), (80, 0, 80));
    // The released 30 are spendable again.
    points
        .spend(spend_request("bob", 80, &idem()))
        .await
        .expect("spend all");
}

#[tokio::test]
async fn a_hold_that_is_not_active_cannot_be_captured_or_voided() {
    let app = spawn_app().await;
    let (_, mut points) = shop_with(&app, "closed-shop", "carol", 100).await;
    let captured_id = hold_of(&hold(&mut points, "carol", 10).await)
        .hold_id
        .clone();
    points
        .capture_hold(capture_request(&captured_id, None, &idem()))
        .await
        .expect("first capture");
    let not_active = |result| assert_status(result, Code::FailedPrecondition, "HOLD_NOT_ACTIVE");
    not_active(
        points
            .capture_hold(capture_request(&captured_id, None, &idem()))
            .await
            .map(drop),
    );
    not_active(
        points
            .void_hold(void_request(&captured_id, &idem()))
            .await
            .map(drop),
    );

    let voided_id = hold_of(&hold(&mut points, "carol", 10).await)
        .hold_id
        .clone();
    let voided = points
        .void_hold(void_request(&voided_id, &idem()))
        .await
        .expect("void")
        .into_inner();
    assert_eq!(hold_of(&voided).status, "voided");
    assert!(voided.entry.is_none());
    assert_eq!(
        figures(voided.account.as_ref().expect("account")),
        (90, 0, 90)
    );
    not_active(
        points
            .void_hold(void_request(&voided_id, &idem()))
            .await
            .map(drop),
    );
    not_active(
        points
            .capture_hold(capture_request(&voided_id, Some(1), &idem()))
            .await
            .map(drop),
    );
    assert_eq!(figures(&account(&mut points, "carol").await), (90, 0, 90));
}

#[tokio::test]
async fn bad_hold_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (merchant_id, mut points) = shop_with(&app, "bad-hold-shop", "dan", 100).await;
    let hold_id = hold_of(&hold(&mut points, "dan", 40).await).hold_id.clone();
    let invalid = |result| assert_status(result, Code::InvalidArgument, "INVALID_ARGUMENT");
    invalid(
        points
            .capture_hold(capture_request(&hold_id, Some(41), &idem()))
            .await
            .map(drop),
    );
    invalid(
        points
            .capture_hold(capture_request(&hold_id, Some(0), &idem()))
            .await
            .map(drop),
    );
    invalid(
        points
            .create_hold(hold_request("dan", 0, &idem()))
            .await
            .map(drop),
    );
    invalid(
        points
            .create_hold(hold_request("", 5, &idem()))
            .await
            .map(drop),
    );
    invalid(
        points
            .create_hold(hold_request("dan", 5, ""))
            .await
            .map(drop),
    );
    let at = |seconds: i64| {
        Some(points::grpc::timestamp(
            chrono::Utc::now() + chrono::Duration::seconds(seconds),
        ))
    };
    for expires_at in [at(-5), at(31 * 86_400)] {
        invalid(
            points
                .create_hold(pb::CreateHoldRequest {
                    expires_at,
                    ..hold_request("dan", 5, &idem())
                })
                .await
                .map(drop),
        );
    }
    for bad_id in ["", "abc", "0", "-3"] {
        invalid(
            points
                .get_hold(pb::GetHoldRequest {
                    hold_id: bad_id.into(),
                })
                .await
                .map(drop),
        );
        invalid(
            points
                .void_hold(void_request(bad_id, &idem()))
                .await
                .map(drop),
        );
    }
    assert_status(
        points
            .capture_hold(capture_request("999999", None, &idem()))
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_status(
        points
            .get_hold(pb::GetHoldRequest {
                hold_id: "999999".into(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let hold = points
        .get_hold(pb::GetHoldRequest { hold_id })
        .await
        .expect("hold")
        .into_inner();
    assert_eq!((hold.status.as_str(), hold.captured_points), ("active", 0));
    assert_eq!(figures(&account(&mut points, "dan").await), (100, 40, 60));
    let holds: i64 = app
        .db()
        .await
        .query_one(
            &format!("SELECT count(*) FROM {}.holds", schema_of(&merchant_id)),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(holds, 1);
}

#[tokio::test]
async fn a_hold_beyond_available_is_insufficient_points() {
    let app = spawn_app().await;
    let (_, mut points) = shop_with(&app, "beyond-shop", "erin", 100).await;
    hold(&mut points, "erin", 60).await;
    assert_status(
        points.create_hold(hold_request("erin", 41, &idem())).await,
        Code::FailedPrecondition,
        "INSUFFICIENT_POINTS",
    );
    assert_status(
        points.create_hold(hold_request("nobody", 1, &idem())).await,
        Code::FailedPrecondition,
        "INSUFFICIENT_POINTS",
    );
    hold(&mut points, "erin", 40).await;
    assert_eq!(figures(&account(&mut points, "erin").await), (100, 100, 0));
}

#[tokio::test]
async fn spends_adjusts_batches_and_reversals_cannot_take_held_points_on_either_path() {
    // Lanes on (spends go through the batch function of migration V7) and off (the one-at-a-time path).
    for lanes in ["2", "0"] {
        let app = spawn_app_with(|settings| {
            settings.insert("POINTS_LEDGER_LANES".into(), lanes.into());
        })
        .await;
        let (merchant, key) = app.register_merchant("blocked-shop").await;
        let mut points = app.points(app.caller(&key));
        let earned = points
            .earn(earn_request("fay", 100, &idem()))
            .await
            .expect("earn")
            .into_inner()
            .entry
            .expect("entry");
        hold(&mut points, "fay", 80).await;
        let insufficient =
            |result| assert_status(result, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
        insufficient(
            points
                .spend(spend_request("fay", 21, &idem()))
                .await
                .map(drop),
        );
        insufficient(
            points
                .adjust(pb::AdjustRequest {
                    uid: "fay".into(),
                    delta: -21,
                    reason: "correction".into(),
                    idempotency_key: idem(),
                })
                .await
                .map(drop),
        );
        insufficient(
            points
                .reverse(pb::ReverseRequest {
                    entry_id: earned.entry_id.clone(),
                    idempotency_key: idem(),
                    reason: None,
                })
                .await
                .map(drop),
        );
        let batch = points
            .batch(pb::BatchRequest {
                atomic: false,
                operations: vec![pb::BatchOperation {
                    op: Some(pb::batch_operation::Op::Spend(spend_request(
                        "fay",
                        21,
                        &idem(),
                    ))),
                }],
            })
            .await
            .expect("batch")
            .into_inner();
        assert_eq!(batch.results[0].code, 42201, "lanes={lanes}");
        let spent = points
            .spend(spend_request("fay", 20, &idem()))
            .await
            .expect("what is available can be spent")
            .into_inner();
        assert_eq!(spent.balance, 80);
        assert_eq!(figures(&account(&mut points, "fay").await), (80, 80, 0));
        assert_ledger_invariants(&app.db().await, &merchant.merchant_id).await;
    }
}

/// Makes a hold expire now, behind the service's back (a hold cannot be created already expired).
async fn expire_hold(app: &TestApp, merchant_id: &str, hold_id: &str) {
    let hold_id: i64 = hold_id.parse().expect("id");
    app.db()
        .await
        .execute(
            &format!(
                "UPDATE {}.holds SET expires_at = now() - interval '1 second' WHERE hold_id = $1",
                schema_of(merchant_id)
            ),
            &[&hold_id],
        )
        .await
        .expect("expire hold");
}

#[tokio::test]
async fn an_expired_hold_stops_counting_at_once_cannot_be_closed_and_the_sweeper_records_it() {
    let app = spawn_app().await;
    let (merchant_id, mut points) = shop_with(&app, "expiring-hold-shop", "gus", 100).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(hold_of(&hold(&mut points, "gus", 10).await).hold_id.clone());
    }
    for id in &ids[..5] {
        expire_hold(&app, &merchant_id, id).await;
    }
    assert_eq!(figures(&account(&mut points, "gus").await), (100, 10, 90));
    let read = points
        .get_hold(pb::GetHoldRequest {
            hold_id: ids[0].clone(),
        })
        .await
        .expect("hold")
        .into_inner();
    assert_eq!(read.status, "expired");
    assert_eq!(read.closed_at, read.expires_at);
    let not_active = |result| assert_status(result, Code::FailedPrecondition, "HOLD_NOT_ACTIVE");
    not_active(
        points
            .capture_hold(capture_request(&ids[0], None, &idem()))
            .await
            .map(drop),
    );
    not_active(
        points
            .void_hold(void_request(&ids[0], &idem()))
            .await
            .map(drop),
    );
    // A spend may use what the expired holds reserved.
    points
        .spend(spend_request("gus", 90, &idem()))
        .await
        .expect("spend");

    // Two sweepers at once (as two instances would): each expired hold is closed once.
    let tenant: uuid::Uuid = merchant_id.parse().expect("uuid");
    let (first, second) = tokio::join!(
        points::service::ledger::sweep_expired_holds(&app.services, tenant, 3),
        points::service::ledger::sweep_expired_holds(&app.services, tenant, 3),
    );
    let swept = first.expect("sweep") + second.expect("sweep");
    let rest = points::service::ledger::sweep_expired_holds(&app.services, tenant, 100)
        .await
        .expect("sweep");
    assert_eq!(swept + rest, 5);
    assert_eq!(
        points::service::ledger::sweep_expired_holds(&app.services, tenant, 100)
            .await
            .expect("sweep"),
        0
    );
    let db = app.db().await;
    let schema = schema_of(&merchant_id);
    let statuses: Vec<(String, i64)> = db
        .query(
            &format!(
                "SELECT status, count(*) FROM {schema}.holds WHERE closed_at IS NULL \
                 OR closed_at = expires_at GROUP BY status ORDER BY status"
            ),
            &[],
        )
        .await
        .expect("statuses")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(statuses, vec![("active".into(), 1), ("expired".into(), 5)]);
    let released: i64 = db
        .query_one(
            &format!(
                "SELECT coalesce(sum(points), 0)::bigint FROM {schema}.audit_records WHERE method = $1"
            ),
            &[&points::service::ledger::HOLD_SWEEP_AUDIT_METHOD],
        )
        .await
        .expect("audit")
        .get(0);
    assert_eq!(
        released, 50,
        "the sweeps' audit records name the points released"
    );
}

#[tokio::test]
async fn a_capture_takes_only_unexpired_points() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("lapse-shop").await;
    let mut points = app.points(app.caller(&key));
    let dated = points
        .earn(pb::EarnRequest {
            expires_at: Some(points::grpc::timestamp(
                chrono::Utc::now() + chrono::Duration::days(2),
            )),
            ..earn_request("hal", 50, &idem())
        })
        .await
        .expect("earn")
        .into_inner()
        .entry
        .expect("entry");
    points
        .earn(earn_request("hal", 10, &idem()))
        .await
        .expect("earn");
    let hold_id = hold_of(&hold(&mut points, "hal", 40).await).hold_id.clone();
    // The dated lot expires under the hold: a hold does not stop its points expiring.
    let credit_id: i64 = dated.entry_id.parse().expect("id");
    app.db()
        .await
        .execute(
            &format!(
                "UPDATE {}.lots SET expires_at = now() - interval '1 second' WHERE entry_id = $1",
                schema_of(&merchant.merchant_id)
            ),
            &[&credit_id],
        )
        .await
        .expect("expire lot");
    assert_eq!(figures(&account(&mut points, "hal").await), (10, 40, 0));
    assert_status(
        points
            .capture_hold(capture_request(&hold_id, None, &idem()))
            .await,
        Code::FailedPrecondition,
        "INSUFFICIENT_POINTS",
    );
    let captured = points
        .capture_hold(capture_request(&hold_id, Some(10), &idem()))
        .await
        .expect("capture what is unexpired")
        .into_inner();
    assert_eq!(captured.entry.expect("entry").balance_after, 0);
    assert_eq!(figures(&account(&mut points, "hal").await), (0, 0, 0));
    let kinds: Vec<(String, i64)> = points
        .list_entries(pb::ListEntriesRequest {
            uid: "hal".into(),
            ..Default::default()
        })
        .await
        .expect("entries")
        .into_inner()
        .items
        .iter()
        .map(|entry| (entry.kind.clone(), entry.delta))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("spend".into(), -10),
            ("expire".into(), -50),
            ("earn".into(), 10),
            ("earn".into(), 50)
        ]
    );
    assert_ledger_invariants(&app.db().await, &merchant.merchant_id).await;
}

#[tokio::test]
async fn holds_captures_and_voids_are_idempotent_and_share_the_key_space_of_the_ledger() {
    let app = spawn_app().await;
    let (merchant_id, mut points) = shop_with(&app, "idem-hold-shop", "ivy", 100).await;
    let first = hold(&mut points, "ivy", 10).await;
    let key = hold_of(&first).idempotency_key.clone();
    let again = points
        .create_hold(hold_request("ivy", 10, &key))
        .await
        .expect("replay")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(hold_of(&again).hold_id, hold_of(&first).hold_id);
    let conflict = |result| assert_status(result, Code::AlreadyExists, "IDEMPOTENCY_CONFLICT");
    conflict(
        points
            .create_hold(hold_request("ivy", 11, &key))
            .await
            .map(drop),
    );
    conflict(points.earn(earn_request("ivy", 10, &key)).await.map(drop));
    let earn_key = idem();
    points
        .earn(earn_request("ivy", 1, &earn_key))
        .await
        .expect("earn");
    conflict(
        points
            .create_hold(hold_request("ivy", 1, &earn_key))
            .await
            .map(drop),
    );

    let hold_id = hold_of(&first).hold_id.clone();
    let capture = capture_request(&hold_id, Some(4), "cap-1");
    let captured = points
        .capture_hold(capture.clone())
        .await
        .expect("capture")
        .into_inner();
    let replayed = points
        .capture_hold(capture)
        .await
        .expect("capture replay")
        .into_inner();
    assert!(replayed.replayed && !captured.replayed);
    assert_eq!(replayed.entry, captured.entry);
    assert_eq!(replayed.hold, captured.hold);
    conflict(
        points
            .capture_hold(capture_request(&hold_id, Some(5), "cap-1"))
            .await
            .map(drop),
    );
    conflict(
        points
            .void_hold(void_request(&hold_id, "cap-1"))
            .await
            .map(drop),
    );

    let other = hold_of(&hold(&mut points, "ivy", 5).await).hold_id.clone();
    let voided = points
        .void_hold(void_request(&other, "void-1"))
        .await
        .expect("void")
        .into_inner();
    let replayed = points
        .void_hold(void_request(&other, "void-1"))
        .await
        .expect("void replay")
        .into_inner();
    assert!(replayed.replayed && !voided.replayed);
    assert_eq!(replayed.hold, voided.hold);

    let db = app.db().await;
    let schema = schema_of(&merchant_id);
    let (holds, spends): (i64, i64) = {
        let row = db
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM {schema}.holds), \
                     (SELECT count(*) FROM {schema}.entries WHERE hold_id IS NOT NULL)"
                ),
                &[],
            )
            .await
            .expect("counts");
        (row.get(0), row.get(1))
    };
    assert_eq!((holds, spends), (2, 1));
    assert_eq!(figures(&account(&mut points, "ivy").await), (97, 0, 97));
}

#[tokio::test]
async fn batches_take_hold_capture_and_void_operations() {
    let app = spawn_app().await;
    let (merchant_id, mut points) = shop_with(&app, "batch-hold-shop", "jay", 100).await;
    let to_capture = hold_of(&hold(&mut points, "jay", 10).await).hold_id.clone();
    let to_void = hold_of(&hold(&mut points, "jay", 10).await).hold_id.clone();
    let op = |op| pb::BatchOperation { op: Some(op) };
    use pb::batch_operation::Op;
    let response = points
        .batch(pb::BatchRequest {
            atomic: false,
            operations: vec![
                op(Op::Hold(hold_request("jay", 30, &idem()))),
                op(Op::Capture(capture_request(&to_capture, Some(6), &idem()))),
                op(Op::Void(void_request(&to_void, &idem()))),
                op(Op::Capture(capture_request(&to_void, None, &idem()))),
                op(Op::Hold(hold_request("jay", 1000, &idem()))),
                op(Op::Spend(spend_request("jay", 5, &idem()))),
            ],
        })
        .await
        .expect("batch")
        .into_inner();
    let codes: Vec<i32> = response.results.iter().map(|r| r.code).collect();
    assert_eq!(codes, vec![0, 0, 0, 42203, 42201, 0]);
    let created = response.results[0].hold_data.as_ref().expect("hold data");
    assert_eq!(hold_of(created).status, "active");
    let capture = response.results[1].hold_data.as_ref().expect("hold data");
    assert_eq!(capture.entry.as_ref().expect("entry").delta, -6);
    assert_eq!(hold_of(capture).captured_points, 6);
    assert_eq!(
        hold_of(response.results[2].hold_data.as_ref().expect("hold data")).status,
        "voided"
    );
    assert!(response.results[5].data.is_some() && response.results[5].hold_data.is_none());
    assert_eq!(figures(&account(&mut points, "jay").await), (89, 30, 59));

    // Atomic: one refused item refuses the whole batch, naming it, and nothing is written.
    let new_hold = hold_of(created).hold_id.clone();
    let refused = points
        .batch(pb::BatchRequest {
            atomic: true,
            operations: vec![
                op(Op::Void(void_request(&new_hold, &idem()))),
                op(Op::Capture(capture_request(&to_capture, None, &idem()))),
            ],
        })
        .await;
    let status = assert_status(refused, Code::FailedPrecondition, "HOLD_NOT_ACTIVE");
    assert!(status.message().contains("operations[1]"), "{status:?}");
    assert_eq!(figures(&account(&mut points, "jay").await), (89, 30, 59));
    assert_ledger_invariants(&app.db().await, &merchant_id).await;
}

#[tokio::test]
async fn a_uids_holds_are_listed_newest_first_with_sealed_page_tokens() {
    let app = spawn_app().await;
    let (_, mut points) = shop_with(&app, "list-hold-shop", "kim", 100).await;
    let mut created = Vec::new();
    for amount in 1..=5 {
        created.push(
            hold_of(&hold(&mut points, "kim", amount).await)
                .hold_id
                .clone(),
        );
    }
    points
        .earn(earn_request("lee", 5, &idem()))
        .await
        .expect("earn");
    hold(&mut points, "lee", 5).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut first_token = None;
    loop {
        let page = points
            .list_holds(pb::ListHoldsRequest {
                uid: "kim".into(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|hold| hold.hold_id));
        if page.next_page_token.is_empty() {
            break;
        }
        first_token.get_or_insert_with(|| page.next_page_token.clone());
        token = page.next_page_token;
    }
    created.reverse();
    assert_eq!(seen, created);
    let mut forged = first_token.expect("more than one page");
    let flipped = if forged.starts_with('0') { "1" } else { "0" };
    forged.replace_range(0..1, flipped);
    assert_status(
        points
            .list_holds(pb::ListHoldsRequest {
                uid: "kim".into(),
                page_size: 2,
                page_token: forged,
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

/// A small deterministic generator (xorshift), one per task: enough to mix operations.
struct Dice(u64);

impl Dice {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// What the tasks of the race saw succeed: per hold, its points and how many captures and voids succeeded.
#[derive(Default)]
struct Race {
    /// Holds not yet closed: (hold id, points).
    open: Vec<(String, i64)>,
    held: HashMap<String, i64>,
    closings: HashMap<String, Vec<(&'static str, i64)>>,
    unexpected: Vec<String>,
}

/// One task of the race: earns, spends, holds, and captures or voids holds any task created.
async fn racer(
    mut points: PointsClient,
    race: Arc<Mutex<Race>>,
    seed: u64,
    until: tokio::time::Instant,
) {
    let mut dice = Dice(seed);
    while tokio::time::Instant::now() < until {
        let roll = dice.below(10);
        let amount = 1 + dice.below(30) as i64;
        let picked = {
            let race = race.lock().expect("race");
            (!race.open.is_empty())
                .then(|| race.open[dice.below(race.open.len() as u64) as usize].clone())
        };
        let outcome = match (roll, picked) {
            (0..=1, _) => points
                .earn(earn_request("hot", amount, &idem()))
                .await
                .map(drop),
            (2..=3, _) => points
                .spend(spend_request("hot", amount, &idem()))
                .await
                .map(drop),
            (4..=6, _) | (_, None) => match points
                .create_hold(hold_request("hot", amount, &idem()))
                .await
            {
                Ok(response) => {
                    let hold = response.into_inner().hold.expect("hold");
                    let mut race = race.lock().expect("race");
                    race.held.insert(hold.hold_id.clone(), hold.points);
                    race.open.push((hold.hold_id, hold.points));
                    Ok(())
                }
                Err(status) => Err(status),
            },
            (7..=8, Some((hold_id, held))) => {
                let part = (dice.below(2) == 0).then_some(held.min(1 + dice.below(5) as i64));
                match points
                    .capture_hold(capture_request(&hold_id, part, &idem()))
                    .await
                {
                    Ok(response) => {
                        let hold = response.into_inner().hold.expect("hold");
                        let mut race = race.lock().expect("race");
                        race.open.retain(|(id, _)| *id != hold_id);
                        race.closings
                            .entry(hold_id)
                            .or_default()
                            .push(("captured", hold.captured_points));
                        Ok(())
                    }
                    Err(status) => Err(status),
                }
            }
            (_, Some((hold_id, _))) => {
                match points.void_hold(void_request(&hold_id, &idem())).await {
                    Ok(_) => {
                        let mut race = race.lock().expect("race");
                        race.open.retain(|(id, _)| *id != hold_id);
                        race.closings
                            .entry(hold_id)
                            .or_default()
                            .push(("voided", 0));
                        Ok(())
                    }
                    Err(status) => Err(status),
                }
            }
        };
        if let Err(status) = outcome {
            let reason = points_api::ErrorCode::of_status(&status).reason();
            // The only refusals a race may produce: not enough available points, or a hold another task closed.
            if !matches!(reason, "INSUFFICIENT_POINTS" | "HOLD_NOT_ACTIVE") {
                race.lock()
                    .expect("race")
                    .unexpected
                    .push(format!("{status:?}"));
            }
        }
    }
}

#[tokio::test]
async fn sixty_four_tasks_racing_holds_captures_voids_and_spends_on_one_uid_keep_every_invariant() {
    let _heavy = crate::helpers::heavy_test().await;
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_DB_POOL_SIZE".into(), "32".into());
        // This test is about correctness under contention, not latency: on a loaded 2-core machine 32 transactions
        // queued on one account row can wait past the default 5 s lock timeout, and the other 32 tasks past the 2 s
        // pool wait, which would end a call with UNAVAILABLE (nothing committed) and fail the test for the
        // machine's sake. (Both below the 15 s request timeout.)
        settings.insert("POINTS_DB_STATEMENT_TIMEOUT_MS".into(), "12000".into());
        settings.insert("POINTS_DB_POOL_WAIT_MS".into(), "12000".into());
    })
    .await;
    let (merchant, key) = app.register_merchant("race-shop").await;
    let mut points = app.points(app.caller(&key));
    points
        .earn(earn_request("hot", 2_000, &idem()))
        .await
        .expect("earn");
    let schema = schema_of(&merchant.merchant_id);
    let race = Arc::new(Mutex::new(Race::default()));
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let tasks: Vec<_> = (0..64u64)
        .map(|task| {
            let points = app.points(app.caller(&key));
            tokio::spawn(racer(
                points,
                race.clone(),
                0x9E37_79B9_7F4A_7C15 ^ (task + 1),
                until,
            ))
        })
        .collect();

    // Meanwhile, from the database: available (unexpired balance less active holds) never below zero.
    let db = app.db().await;
    let available_sql = format!(
        "SELECT a.balance - coalesce((SELECT sum(h.points) FROM {schema}.holds h WHERE h.uid = a.uid \
         AND h.status = 'active' AND h.expires_at > now()), 0)::bigint FROM {schema}.accounts a WHERE a.uid = 'hot'"
    );
    let mut samples = 0;
    while tokio::time::Instant::now() < until {
        let available: i64 = db
            .query_one(&available_sql, &[])
            .await
            .expect("available")
            .get(0);
        assert!(available >= 0, "available {available} below zero");
        samples += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for task in tasks {
        task.await.expect("racer");
    }
    let race = Arc::try_unwrap(race)
        .ok()
        .expect("tasks done")
        .into_inner()
        .expect("race");
    assert!(
        race.unexpected.is_empty(),
        "unexpected errors: {:?}",
        race.unexpected
    );
    assert!(samples > 10);

    // Every hold still open is voided now, so each ends in exactly one final state.
    for (hold_id, _) in &race.open {
        points
            .void_hold(void_request(hold_id, &idem()))
            .await
            .expect("void the rest");
    }
    let rows = db
        .query(
            &format!("SELECT hold_id::text, status, points, captured_points, capture_entry_id FROM {schema}.holds"),
            &[],
        )
        .await
        .expect("holds");
    assert_eq!(
        rows.len(),
        race.held.len(),
        "every hold created was seen by its task"
    );
    let (mut held_total, mut captured_total) = (0i64, 0i64);
    for row in &rows {
        let (hold_id, status, held, captured): (String, String, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        held_total += held;
        captured_total += captured;
        let expected = match race.closings.get(&hold_id).map(Vec::as_slice) {
            Some([closing]) => *closing,
            None => ("voided", 0),
            Some(more) => panic!("hold {hold_id} closed more than once: {more:?}"),
        };
        assert_eq!((status.as_str(), captured), expected, "hold {hold_id}");
    }
    assert!(captured_total <= held_total);
    let captured_by_entries: i64 = db
        .query_one(
            &format!("SELECT coalesce(-sum(delta), 0)::bigint FROM {schema}.entries WHERE hold_id IS NOT NULL"),
            &[],
        )
        .await
        .expect("captures")
        .get(0);
    assert_eq!(captured_by_entries, captured_total);
    let account = account(&mut points, "hot").await;
    assert_eq!((account.held, account.available), (0, account.balance));
    assert_ledger_invariants(&db, &merchant.merchant_id).await;
    let closings: Vec<&str> = race
        .closings
        .values()
        .flatten()
        .map(|(how, _)| *how)
        .collect();
    let captures = closings.iter().filter(|how| **how == "captured").count();
    println!(
        "race: {} holds created, {captures} captured and {} voided by the racers, {samples} samples of available",
        race.held.len(),
        closings.len() - captures
    );
    // Not vacuous: holds were captured and voided while others raced them (a floor low enough for a loaded machine).
    assert!(
        captures >= 5 && closings.len() - captures >= 5,
        "the race captured {captures} and voided {} holds",
        closings.len() - captures
    );
}

#[tokio::test]
async fn hold_operations_are_audited_need_their_scopes_and_show_in_the_account_list() {
    let app = spawn_app().await;
    let (merchant, owner_key) = app.register_merchant("audit-hold-shop").await;
    let merchant_id = merchant.merchant_id;
    let mut points = app.points(app.caller(&owner_key));
    points
        .earn(earn_request("lou", 100, &idem()))
        .await
        .expect("earn");
    let captured_id = hold_of(&hold(&mut points, "lou", 30).await).hold_id.clone();
    let entry = points
        .capture_hold(capture_request(&captured_id, Some(10), &idem()))
        .await
        .expect("capture")
        .into_inner()
        .entry
        .expect("entry");
    let voided_id = hold_of(&hold(&mut points, "lou", 5).await).hold_id.clone();
    points
        .void_hold(void_request(&voided_id, &idem()))
        .await
        .expect("void");
    let active_id = hold_of(&hold(&mut points, "lou", 20).await).hold_id.clone();

    let rows = app
        .db()
        .await
        .query(
            &format!(
                "SELECT method, uid, entry_ids, points FROM {}.audit_records \
                 WHERE method LIKE '%Hold' AND outcome_code = 0 ORDER BY audit_id",
                schema_of(&merchant_id)
            ),
            &[],
        )
        .await
        .expect("audit");
    let records: Vec<(String, String, Vec<i64>, Option<i64>)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let method = |name: &str| format!("/points.v1.PointsService/{name}");
    let entry_id: i64 = entry.entry_id.parse().expect("id");
    assert_eq!(
        records,
        vec![
            (method("CreateHold"), "lou".into(), vec![], None),
            (
                method("CaptureHold"),
                "lou".into(),
                vec![entry_id],
                Some(-10)
            ),
            (method("CreateHold"), "lou".into(), vec![], None),
            (method("VoidHold"), "lou".into(), vec![], None),
            (method("CreateHold"), "lou".into(), vec![], None),
        ]
    );

    // A read-only key reads holds but cannot create, capture or void them.
    let reader_key = app
        .keys(app.caller(&owner_key))
        .create_api_key(pb::CreateApiKeyRequest {
            name: "reader".into(),
            scopes: vec!["points:read".into()],
            expires_at: None,
        })
        .await
        .expect("create key")
        .into_inner()
        .key
        .expect("plaintext");
    let mut reader = app.points(app.caller(&reader_key));
    let denied = |result| assert_status(result, Code::PermissionDenied, "PERMISSION_DENIED");
    denied(
        reader
            .create_hold(hold_request("lou", 1, &idem()))
            .await
            .map(drop),
    );
    denied(
        reader
            .capture_hold(capture_request(&active_id, None, &idem()))
            .await
            .map(drop),
    );
    denied(
        reader
            .void_hold(void_request(&active_id, &idem()))
            .await
            .map(drop),
    );
    let read = reader
        .get_hold(pb::GetHoldRequest {
            hold_id: active_id.clone(),
        })
        .await
        .expect("read hold")
        .into_inner();
    assert_eq!(read.status, "active");
    let listed = reader
        .list_holds(pb::ListHoldsRequest {
            uid: "lou".into(),
            ..Default::default()
        })
        .await
        .expect("list holds")
        .into_inner();
    assert_eq!(listed.items.len(), 3);

    let accounts = reader
        .list_accounts(pb::ListAccountsRequest::default())
        .await
        .expect("accounts")
        .into_inner();
    let lou = accounts
        .items
        .iter()
        .find(|account| account.uid == "lou")
        .expect("lou listed");
    assert_eq!((lou.balance, lou.held, lou.available), (90, 20, 70));
}
