//! The points ledger over gRPC: every operation and error case of SPEC §5/§8, concurrency, idempotency,
//! lots and expiry, batches.

use points::pb;
use tonic::Code;

use crate::helpers::{
    assert_ledger_invariants, assert_status, earn_request, idem, schema_of, spawn_app, spawn_app_with, spend_request,
};

#[tokio::test]
async fn earn_spend_adjust_and_reads_move_the_balance_and_write_entries() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("ledger-shop").await;
    let mut points = app.points(app.caller(&key));
    let earned = points
        .earn(pb::EarnRequest {
            reference: Some("order-1".into()),
            description: Some("purchase".into()),
            metadata_json: Some(r#"{"store":"north"}"#.into()),
            ..earn_request("alice", 100, "e1")
        })
        .await
        .expect("earn")
        .into_inner();
    assert_eq!((earned.balance, earned.replayed), (100, false));
    let entry = earned.entry.expect("entry");
    assert_eq!((entry.kind.as_str(), entry.delta, entry.balance_after), ("earn", 100, 100));
    assert_eq!(entry.reference.as_deref(), Some("order-1"));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&entry.metadata_json).expect("json"), serde_json::json!({"store":"north"}));

    let spent = points.spend(spend_request("alice", 30, "s1")).await.expect("spend").into_inner();
    assert_eq!(spent.balance, 70);
    assert_eq!(spent.entry.expect("entry").delta, -30);
    let adjusted = points
        .adjust(pb::AdjustRequest { uid: "alice".into(), delta: -20, reason: "correction".into(), idempotency_key: "a1".into() })
        .await
        .expect("adjust")
        .into_inner();
    assert_eq!(adjusted.balance, 50);
    let adjusted = points
        .adjust(pb::AdjustRequest { uid: "alice".into(), delta: 5, reason: "goodwill".into(), idempotency_key: "a2".into() })
        .await
        .expect("adjust")
        .into_inner();
    assert_eq!(adjusted.balance, 55);

    let account = points.get_account(pb::GetAccountRequest { uid: "alice".into() }).await.expect("account").into_inner();
    assert_eq!(account.balance, 55);
    let unknown = points.get_account(pb::GetAccountRequest { uid: "nobody".into() }).await.expect("account").into_inner();
    assert_eq!(unknown.balance, 0);

    let fetched = points.get_entry(pb::GetEntryRequest { entry_id: entry.entry_id.clone() }).await.expect("get").into_inner();
    assert_eq!(fetched, entry);
    let listed = points
        .list_entries(pb::ListEntriesRequest { uid: "alice".into(), ..Default::default() })
        .await
        .expect("list")
        .into_inner();
    let kinds: Vec<_> = listed.items.iter().map(|e| (e.kind.as_str(), e.delta)).collect();
    assert_eq!(kinds, vec![("adjust", 5), ("adjust", -20), ("spend", -30), ("earn", 100)], "newest first");
    let earns = points
        .list_entries(pb::ListEntriesRequest { uid: "alice".into(), kind: Some("earn".into()), ..Default::default() })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(earns.items.len(), 1);
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = points
            .list_entries(pb::ListEntriesRequest { uid: "alice".into(), page_size: 3, page_token: token.clone(), ..Default::default() })
            .await
            .expect("page")
            .into_inner();
        paged.extend(page.items);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, listed.items);
    let future = points
        .list_entries(pb::ListEntriesRequest {
            uid: "alice".into(),
            from: Some(points::grpc::timestamp(chrono::Utc::now() + chrono::Duration::hours(1))),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert!(future.items.is_empty());
    assert_ledger_invariants(&app.db().await, &merchant.merchant_id).await;
}

#[tokio::test]
async fn bad_ledger_input_is_refused_with_the_spec_codes_and_writes_nothing() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("strict-shop").await;
    let mut points = app.points(app.caller(&key));
    points.earn(earn_request("bob", 10, "seed")).await.expect("seed");
    let invalid = [
        earn_request("", 10, &idem()),
        earn_request(&"u".repeat(129), 10, &idem()),
        earn_request("tab\tuid", 10, &idem()),
        earn_request("bob", 0, &idem()),
        earn_request("bob", -5, &idem()),
        earn_request("bob", 10, ""),
        pb::EarnRequest { metadata_json: Some(format!(r#"{{"blob":"{}"}}"#, "x".repeat(4100))), ..earn_request("bob", 1, &idem()) },
        pb::EarnRequest { metadata_json: Some("[1,2]".into()), ..earn_request("bob", 1, &idem()) },
        pb::EarnRequest { metadata_json: Some("{not json".into()), ..earn_request("bob", 1, &idem()) },
        pb::EarnRequest { amount: Some("10".into()), ..earn_request("bob", 1, &idem()) },
        pb::EarnRequest { points: None, ..earn_request("bob", 1, &idem()) },
        pb::EarnRequest {
            expires_at: Some(points::grpc::timestamp(chrono::Utc::now() - chrono::Duration::seconds(5))),
            ..earn_request("bob", 1, &idem())
        },
        pb::EarnRequest { expires_at: Some(prost_types::Timestamp { seconds: 1, nanos: -1 }), ..earn_request("bob", 1, &idem()) },
    ];
    for request in invalid {
        let result = points.earn(request.clone()).await;
        assert_status(result, Code::InvalidArgument, "INVALID_ARGUMENT");
    }
    assert_status(points.spend(spend_request("bob", 0, &idem())).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    let zero_adjust = pb::AdjustRequest { uid: "bob".into(), delta: 0, reason: "x".into(), idempotency_key: idem() };
    assert_status(points.adjust(zero_adjust).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    let no_reason = pb::AdjustRequest { uid: "bob".into(), delta: 3, reason: " ".into(), idempotency_key: idem() };
    assert_status(points.adjust(no_reason).await, Code::InvalidArgument, "INVALID_ARGUMENT");

    let short = assert_status(points.spend(spend_request("bob", 11, "short")).await, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    assert!(short.message().contains("10"));
    let overdraw = pb::AdjustRequest { uid: "bob".into(), delta: -11, reason: "x".into(), idempotency_key: idem() };
    assert_status(points.adjust(overdraw).await, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    // A failed request is not recorded: the same key works once the request is corrected.
    points.spend(spend_request("bob", 10, "short")).await.expect("corrected retry with the same key");

    for entry_id in ["999999", "abc", "-1", ""] {
        let result = points.get_entry(pb::GetEntryRequest { entry_id: entry_id.into() }).await;
        let expected = if entry_id == "999999" { (Code::NotFound, "NOT_FOUND") } else { (Code::InvalidArgument, "INVALID_ARGUMENT") };
        assert_status(result, expected.0, expected.1);
    }
    let missing = points.reverse(pb::ReverseRequest { entry_id: "999999".into(), idempotency_key: idem(), reason: None }).await;
    assert_status(missing, Code::NotFound, "NOT_FOUND");
    let bad_kind = points
        .list_entries(pb::ListEntriesRequest { uid: "bob".into(), kind: Some("gift".into()), ..Default::default() })
        .await;
    assert_status(bad_kind, Code::InvalidArgument, "INVALID_ARGUMENT");
    let entries: i64 = app
        .db()
        .await
        .query_one(&format!("SELECT count(*) FROM {}.entries", schema_of(&merchant.merchant_id)), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(entries, 2, "only the seed earn and the corrected spend were written");
}

#[tokio::test]
async fn reversals_give_back_exactly_once_and_refuse_spent_earns() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("reverse-shop").await;
    let mut points = app.points(app.caller(&key));
    let earn = points.earn(earn_request("carol", 50, &idem())).await.expect("earn").into_inner().entry.expect("entry");
    let spend = points.spend(spend_request("carol", 20, &idem())).await.expect("spend").into_inner().entry.expect("entry");
    // The earn's points are partly spent: it cannot be reversed.
    let result = points.reverse(pb::ReverseRequest { entry_id: earn.entry_id.clone(), idempotency_key: idem(), reason: None }).await;
    assert_status(result, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    let reversed = points
        .reverse(pb::ReverseRequest { entry_id: spend.entry_id.clone(), idempotency_key: idem(), reason: Some("refund".into()) })
        .await
        .expect("reverse spend")
        .into_inner();
    assert_eq!(reversed.balance, 50);
    let reversal = reversed.entry.expect("entry");
    assert_eq!((reversal.kind.as_str(), reversal.delta), ("reverse", 20));
    assert_eq!(reversal.reverses_entry_id.as_deref(), Some(spend.entry_id.as_str()));
    let again = points.reverse(pb::ReverseRequest { entry_id: spend.entry_id.clone(), idempotency_key: idem(), reason: None }).await;
    assert_status(again, Code::AlreadyExists, "ALREADY_EXISTS");
    let of_reversal =
        points.reverse(pb::ReverseRequest { entry_id: reversal.entry_id.clone(), idempotency_key: idem(), reason: None }).await;
    assert_status(of_reversal, Code::InvalidArgument, "INVALID_ARGUMENT");
    // With the spend reversed the earn is whole again and can be reversed.
    let reversed_earn = points
        .reverse(pb::ReverseRequest { entry_id: earn.entry_id.clone(), idempotency_key: idem(), reason: None })
        .await
        .expect("reverse earn")
        .into_inner();
    assert_eq!(reversed_earn.balance, 0);
    assert_ledger_invariants(&app.db().await, &merchant.merchant_id).await;
}

#[tokio::test]
async fn twenty_concurrent_identical_requests_write_one_entry_and_nineteen_replays() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("idem-shop").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut points = app.points(app.caller(&key));
        tasks.push(tokio::spawn(async move { points.earn(earn_request("dave", 7, "same-key")).await }));
    }
    let mut replays = 0;
    let mut entry_ids = std::collections::HashSet::new();
    for task in tasks {
        let response = task.await.expect("join").expect("earn").into_inner();
        replays += usize::from(response.replayed);
        entry_ids.insert(response.entry.expect("entry").entry_id);
        assert_eq!(response.balance, 7);
    }
    assert_eq!((replays, entry_ids.len()), (19, 1));
    let mut points = app.points(app.caller(&key));
    let changed = points.earn(earn_request("dave", 8, "same-key")).await;
    assert_status(changed, Code::AlreadyExists, "IDEMPOTENCY_CONFLICT");
    let other_operation = points.spend(spend_request("dave", 7, "same-key")).await;
    assert_status(other_operation, Code::AlreadyExists, "IDEMPOTENCY_CONFLICT");
    // The same key on another uid (different request) conflicts too, even concurrently.
    let mut tasks = Vec::new();
    for uid in ["erin", "frank"] {
        let mut points = app.points(app.caller(&key));
        tasks.push(tokio::spawn(async move { points.earn(earn_request(uid, 1, "cross-uid")).await }));
    }
    let outcomes: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(|r| r.expect("join")).collect();
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1);
    let conflict = outcomes.into_iter().find(|r| r.is_err()).expect("one conflict");
    assert_status(conflict, Code::AlreadyExists, "IDEMPOTENCY_CONFLICT");
    let db = app.db().await;
    let count: i64 = db
        .query_one(&format!("SELECT count(*) FROM {}.entries WHERE uid = 'dave'", schema_of(&merchant.merchant_id)), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 1);
    assert_ledger_invariants(&db, &merchant.merchant_id).await;
}

/// 64 tasks × 200 mixed earn/spend calls; returns the expected final balance per uid.
async fn run_mixed_load(app: &crate::helpers::TestApp, key: &str, round: &'static str, uids: usize) -> std::collections::HashMap<String, i64> {
    let mut tasks = Vec::new();
    for task in 0..64 {
        let mut points = app.points(app.caller(key));
        tasks.push(tokio::spawn(async move {
            let mut applied: Vec<(String, i64)> = Vec::new();
            for call in 0..200 {
                let uid = format!("{round}-user-{}", (task * 7 + call) % uids);
                let key = format!("{round}-t{task}-c{call}");
                if call % 3 == 2 {
                    match points.spend(spend_request(&uid, 4, &key)).await {
                        Ok(response) => {
                            let response = response.into_inner();
                            assert!(response.balance >= 0);
                            applied.push((uid, -4));
                        }
                        Err(status) => {
                            // The only acceptable refusal: not enough points. Never a serialization error.
                            assert_eq!(status.code(), Code::FailedPrecondition, "unexpected error: {status:?}");
                        }
                    }
                } else {
                    let response = points.earn(earn_request(&uid, 3, &key)).await.expect("earn never fails").into_inner();
                    assert!(response.balance >= 3);
                    applied.push((uid, 3));
                }
            }
            applied
        }));
    }
    let mut expected = std::collections::HashMap::new();
    for task in tasks {
        for (uid, delta) in task.await.expect("join") {
            *expected.entry(uid).or_insert(0) += delta;
        }
    }
    expected
}

#[tokio::test]
async fn concurrent_mixed_calls_on_one_uid_and_on_many_uids_keep_exact_balances() {
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_DB_POOL_SIZE".into(), "32".into());
    })
    .await;
    let (merchant, key) = app.register_merchant("busy-shop").await;
    for (round, uids) in [("hot", 1), ("spread", 100)] {
        let expected = run_mixed_load(&app, &key, round, uids).await;
        assert_eq!(expected.len(), uids);
        let mut points = app.points(app.caller(&key));
        for (uid, balance) in &expected {
            let account = points.get_account(pb::GetAccountRequest { uid: uid.clone() }).await.expect("account").into_inner();
            assert_eq!(account.balance, *balance, "{uid}");
        }
        assert_ledger_invariants(&app.db().await, &merchant.merchant_id).await;
    }
}
