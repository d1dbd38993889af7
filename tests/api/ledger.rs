//! The points ledger over gRPC: every operation and error case of SPEC §5/§8, concurrency, idempotency,
//! lots and expiry, batches.

use points::pb;
use tonic::Code;

use crate::helpers::{
    assert_ledger_invariants, assert_status, earn_request, idem, schema_of, spawn_app,
    spawn_app_with, spend_request,
};

/// A metadata object as the proto `Struct`.
fn metadata(object: serde_json::Value) -> prost_types::Struct {
    points_api::metadata::to_struct(object.as_object().expect("an object")).expect("exact")
}

#[tokio::test]
async fn earn_spend_adjust_and_reads_move_the_balance_and_write_entries() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("ledger-shop").await;
    let mut points = app.points(app.caller(&key));
    let earned = points
        .earn(pb::EarnRequest {
            reference: Some("order-1".into()),
            description: Some("purchase".into()),
            metadata: Some(metadata(serde_json::json!({"store": "north"}))),
            ..earn_request("alice", 100, "e1")
        })
        .await
        .expect("earn")
        .into_inner();
    assert_eq!((earned.balance, earned.replayed), (100, false));
    let entry = earned.entry.expect("entry");
    assert_eq!(
        (entry.kind.as_str(), entry.delta, entry.balance_after),
        ("earn", 100, 100)
    );
    assert_eq!(entry.reference.as_deref(), Some("order-1"));
    assert_eq!(
        serde_json::Value::Object(
            points_api::metadata::from_struct(entry.metadata.as_ref().expect("metadata"))
                .expect("json")
        ),
        serde_json::json!({"store":"north"})
    );

    let spent = points
        .spend(spend_request("alice", 30, "s1"))
        .await
        .expect("spend")
        .into_inner();
    assert_eq!(spent.balance, 70);
    assert_eq!(spent.entry.expect("entry").delta, -30);
    let adjusted = points
        .adjust(pb::AdjustRequest {
            uid: "alice".into(),
            delta: -20,
            reason: "correction".into(),
            idempotency_key: "a1".into(),
        })
        .await
        .expect("adjust")
        .into_inner();
    assert_eq!(adjusted.balance, 50);
    let adjusted = points
        .adjust(pb::AdjustRequest {
            uid: "alice".into(),
            delta: 5,
            reason: "goodwill".into(),
            idempotency_key: "a2".into(),
        })
        .await
        .expect("adjust")
        .into_inner();
    assert_eq!(adjusted.balance, 55);

    let account = points
        .get_account(pb::GetAccountRequest {
            uid: "alice".into(),
        })
        .await
        .expect("account")
        .into_inner();
    assert_eq!(account.balance, 55);
    let unknown = points
        .get_account(pb::GetAccountRequest {
            uid: "nobody".into(),
        })
        .await
        .expect("account")
        .into_inner();
    assert_eq!(unknown.balance, 0);

    let fetched = points
        .get_entry(pb::GetEntryRequest {
            entry_id: entry.entry_id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(fetched, entry);
    let listed = points
        .list_entries(pb::ListEntriesRequest {
            uid: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let kinds: Vec<_> = listed
        .items
        .iter()
        .map(|e| (e.kind.as_str(), e.delta))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("adjust", 5),
            ("adjust", -20),
            ("spend", -30),
            ("earn", 100)
        ],
        "newest first"
    );
    let earns = points
        .list_entries(pb::ListEntriesRequest {
            uid: "alice".into(),
            kind: Some("earn".into()),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(earns.items.len(), 1);
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = points
            .list_entries(pb::ListEntriesRequest {
                uid: "alice".into(),
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
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
            from: Some(points::grpc::timestamp(
                chrono::Utc::now() + chrono::Duration::hours(1),
            )),
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
    points
        .earn(earn_request("bob", 10, "seed"))
        .await
        .expect("seed");
    let invalid = [
        earn_request("", 10, &idem()),
        earn_request(&"u".repeat(129), 10, &idem()),
        earn_request("tab\tuid", 10, &idem()),
        earn_request("bob", 0, &idem()),
        earn_request("bob", -5, &idem()),
        earn_request("bob", 10, ""),
        pb::EarnRequest {
            metadata: Some(metadata(serde_json::json!({"blob": "x".repeat(4100)}))),
            ..earn_request("bob", 1, &idem())
        },
        pb::EarnRequest {
            metadata: Some(prost_types::Struct {
                fields: [(
                    "n".to_owned(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::NumberValue(f64::NAN)),
                    },
                )]
                .into(),
            }),
            ..earn_request("bob", 1, &idem())
        },
        pb::EarnRequest {
            metadata: Some(metadata(serde_json::json!({"nul": "a\u{0}b"}))),
            ..earn_request("bob", 1, &idem())
        },
        pb::EarnRequest {
            amount: Some("10".into()),
            ..earn_request("bob", 1, &idem())
        },
        pb::EarnRequest {
            points: None,
            ..earn_request("bob", 1, &idem())
        },
        pb::EarnRequest {
            expires_at: Some(points::grpc::timestamp(
                chrono::Utc::now() - chrono::Duration::seconds(5),
            )),
            ..earn_request("bob", 1, &idem())
        },
        pb::EarnRequest {
            expires_at: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: -1,
            }),
            ..earn_request("bob", 1, &idem())
        },
    ];
    for request in invalid {
        let result = points.earn(request.clone()).await;
        assert_status(result, Code::InvalidArgument, "INVALID_ARGUMENT");
    }
    assert_status(
        points.spend(spend_request("bob", 0, &idem())).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let zero_adjust = pb::AdjustRequest {
        uid: "bob".into(),
        delta: 0,
        reason: "x".into(),
        idempotency_key: idem(),
    };
    assert_status(
        points.adjust(zero_adjust).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let no_reason = pb::AdjustRequest {
        uid: "bob".into(),
        delta: 3,
        reason: " ".into(),
        idempotency_key: idem(),
    };
    assert_status(
        points.adjust(no_reason).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );

    let short = assert_status(
        points.spend(spend_request("bob", 11, "short")).await,
        Code::FailedPrecondition,
        "INSUFFICIENT_POINTS",
    );
    assert!(short.message().contains("10"));
    let overdraw = pb::AdjustRequest {
        uid: "bob".into(),
        delta: -11,
        reason: "x".into(),
        idempotency_key: idem(),
    };
    assert_status(
        points.adjust(overdraw).await,
        Code::FailedPrecondition,
        "INSUFFICIENT_POINTS",
    );
    // A failed request is not recorded: the same key works once the request is corrected.
    points
        .spend(spend_request("bob", 10, "short"))
        .await
        .expect("corrected retry with the same key");

    for entry_id in ["999999", "abc", "-1", ""] {
        let result = points
            .get_entry(pb::GetEntryRequest {
                entry_id: entry_id.into(),
            })
            .await;
        let expected = if entry_id == "999999" {
            (Code::NotFound, "NOT_FOUND")
        } else {
            (Code::InvalidArgument, "INVALID_ARGUMENT")
        };
        assert_status(result, expected.0, expected.1);
    }
    let missing = points
        .reverse(pb::ReverseRequest {
            entry_id: "999999".into(),
            idempotency_key: idem(),
            reason: None,
        })
        .await;
    assert_status(missing, Code::NotFound, "NOT_FOUND");
    let bad_kind = points
        .list_entries(pb::ListEntriesRequest {
            uid: "bob".into(),
            kind: Some("gift".into()),
            ..Default::default()
        })
        .await;
    assert_status(bad_kind, Code::InvalidArgument, "INVALID_ARGUMENT");
    let entries: i64 = app
        .db()
        .await
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.entries",
                schema_of(&merchant.merchant_id)
            ),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        entries, 2,
        "only the seed earn and the corrected spend were written"
    );
}

#[tokio::test]
async fn reversals_give_back_exactly_once_and_refuse_spent_earns() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("reverse-shop").await;
    let mut points = app.points(app.caller(&key));
    let earn = points
        .earn(earn_request("carol", 50, &idem()))
        .await
        .expect("earn")
        .into_inner()
        .entry
        .expect("entry");
    let spend = points
        .spend(spend_request("carol", 20, &idem()))
        .await
        .expect("spend")
        .into_inner()
        .entry
        .expect("entry");
    // The earn's points are partly spent: it cannot be reversed.
    let result = points
        .reverse(pb::ReverseRequest {
            entry_id: earn.entry_id.clone(),
            idempotency_key: idem(),
            reason: None,
        })
        .await;
    assert_status(result, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    let reversed = points
        .reverse(pb::ReverseRequest {
            entry_id: spend.entry_id.clone(),
            idempotency_key: idem(),
            reason: Some("refund".into()),
        })
        .await
        .expect("reverse spend")
        .into_inner();
    assert_eq!(reversed.balance, 50);
    let reversal = reversed.entry.expect("entry");
    assert_eq!((reversal.kind.as_str(), reversal.delta), ("reverse", 20));
    assert_eq!(
        reversal.reverses_entry_id.as_deref(),
        Some(spend.entry_id.as_str())
    );
    let again = points
        .reverse(pb::ReverseRequest {
            entry_id: spend.entry_id.clone(),
            idempotency_key: idem(),
            reason: None,
        })
        .await;
    assert_status(again, Code::AlreadyExists, "ALREADY_EXISTS");
    let of_reversal = points
        .reverse(pb::ReverseRequest {
            entry_id: reversal.entry_id.clone(),
            idempotency_key: idem(),
            reason: None,
        })
        .await;
    assert_status(of_reversal, Code::InvalidArgument, "INVALID_ARGUMENT");
    // With the spend reversed the earn is whole again and can be reversed.
    let reversed_earn = points
        .reverse(pb::ReverseRequest {
            entry_id: earn.entry_id.clone(),
            idempotency_key: idem(),
            reason: None,
        })
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
        tasks.push(tokio::spawn(async move {
            points.earn(earn_request("dave", 7, "same-key")).await
        }));
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
        tasks.push(tokio::spawn(async move {
            points.earn(earn_request(uid, 1, "cross-uid")).await
        }));
    }
    let outcomes: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("join"))
        .collect();
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1);
    let conflict = outcomes
        .into_iter()
        .find(|r| r.is_err())
        .expect("one conflict");
    assert_status(conflict, Code::AlreadyExists, "IDEMPOTENCY_CONFLICT");
    let db = app.db().await;
    let count: i64 = db
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.entries WHERE uid = 'dave'",
                schema_of(&merchant.merchant_id)
            ),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 1);
    assert_ledger_invariants(&db, &merchant.merchant_id).await;
}

/// 64 tasks × 200 mixed earn/spend calls; returns the expected final balance per uid.
async fn run_mixed_load(
    app: &crate::helpers::TestApp,
    key: &str,
    round: &'static str,
    uids: usize,
) -> std::collections::HashMap<String, i64> {
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
                            assert_eq!(
                                status.code(),
                                Code::FailedPrecondition,
                                "unexpected error: {status:?}"
                            );
                        }
                    }
                } else {
                    let response = points
                        .earn(earn_request(&uid, 3, &key))
                        .await
                        .expect("earn never fails")
                        .into_inner();
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
    let _heavy = crate::helpers::heavy_test().await;
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
            let account = points
                .get_account(pb::GetAccountRequest { uid: uid.clone() })
                .await
                .expect("account")
                .into_inner();
            assert_eq!(account.balance, *balance, "{uid}");
        }
        assert_ledger_invariants(&app.db().await, &merchant.merchant_id).await;
    }
}

#[tokio::test]
async fn lots_are_spent_earliest_expiry_first_and_expired_points_are_never_spendable() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("expiry-shop").await;
    let schema = schema_of(&merchant.merchant_id);
    let mut points = app.points(app.caller(&key));
    let in_hours = |hours: i64| {
        Some(points::grpc::timestamp(
            chrono::Utc::now() + chrono::Duration::hours(hours),
        ))
    };
    let never = points
        .earn(earn_request("gina", 10, "never"))
        .await
        .expect("earn")
        .into_inner()
        .entry
        .expect("entry");
    let late = points
        .earn(pb::EarnRequest {
            expires_at: in_hours(72),
            ..earn_request("gina", 10, "late")
        })
        .await
        .expect("earn")
        .into_inner()
        .entry
        .expect("entry");
    let soon = points
        .earn(pb::EarnRequest {
            expires_at: in_hours(1),
            ..earn_request("gina", 10, "soon")
        })
        .await
        .expect("earn")
        .into_inner()
        .entry
        .expect("entry");
    let account = points
        .get_account(pb::GetAccountRequest { uid: "gina".into() })
        .await
        .expect("account")
        .into_inner();
    assert_eq!(account.balance, 30);
    assert_eq!(
        account
            .expiring
            .iter()
            .map(|e| e.points)
            .collect::<Vec<_>>(),
        vec![10, 10],
        "both dated lots, soonest first"
    );
    let seconds: Vec<i64> = account
        .expiring
        .iter()
        .map(|e| e.expires_at.expect("expiry").seconds)
        .collect();
    assert!(seconds[0] < seconds[1]);

    points
        .spend(spend_request("gina", 15, &idem()))
        .await
        .expect("spend");
    let db = app.db().await;
    let remaining = |entry_id: String| {
        let db = &db;
        let schema = schema.clone();
        async move {
            db.query_one(
                &format!("SELECT remaining FROM {schema}.lots WHERE entry_id = $1"),
                &[&entry_id.parse::<i64>().expect("id")],
            )
            .await
            .expect("lot")
            .get::<_, i64>(0)
        }
    };
    assert_eq!(
        remaining(soon.entry_id.clone()).await,
        0,
        "the lot expiring first is used first"
    );
    assert_eq!(remaining(late.entry_id.clone()).await, 5);
    assert_eq!(
        remaining(never.entry_id.clone()).await,
        10,
        "never-expiring points are used last"
    );

    // Let the 72h lot expire (time travel on the lot, not on the entries) and look before any sweep.
    db.execute(
        &format!(
            "UPDATE {schema}.lots SET expires_at = now() - interval '1 second' WHERE entry_id = $1"
        ),
        &[&late.entry_id.parse::<i64>().expect("id")],
    )
    .await
    .expect("expire lot");
    let account = points
        .get_account(pb::GetAccountRequest { uid: "gina".into() })
        .await
        .expect("account")
        .into_inner();
    assert_eq!(
        account.balance, 10,
        "expired points are not counted even before the sweep"
    );
    let refused = points.spend(spend_request("gina", 11, &idem())).await;
    assert_status(refused, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    let expire_entries = format!("SELECT count(*) FROM {schema}.entries WHERE kind = 'expire'");
    assert_eq!(
        db.query_one(&expire_entries, &[])
            .await
            .expect("count")
            .get::<_, i64>(0),
        0,
        "a refused call writes nothing"
    );

    let tenant: uuid::Uuid = merchant.merchant_id.parse().expect("uuid");
    let written = points::service::ledger::sweep_expired(&app.services, tenant, 100)
        .await
        .expect("sweep");
    assert_eq!(written, 1);
    let sweep_records: Vec<Vec<i64>> = db
        .query(
            &format!(
                "SELECT entry_ids FROM {schema}.audit_records WHERE method = 'system/ExpirySweep'"
            ),
            &[],
        )
        .await
        .expect("sweep audit")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        sweep_records.len(),
        1,
        "the sweep's entries are listed by one audit record"
    );
    assert_eq!(sweep_records[0].len(), 1);
    let expired = points
        .list_entries(pb::ListEntriesRequest {
            uid: "gina".into(),
            kind: Some("expire".into()),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        expired
            .items
            .iter()
            .map(|e| (e.delta, e.balance_after))
            .collect::<Vec<_>>(),
        vec![(-5, 10)]
    );
    assert_eq!(
        points::service::ledger::sweep_expired(&app.services, tenant, 100)
            .await
            .expect("sweep"),
        0,
        "idempotent"
    );
    assert_ledger_invariants(&db, &merchant.merchant_id).await;

    // Reversing the spend gives its points back to the lots it used, with their original expiry: the part that
    // came from the now-expired lot is written off at once, the part from the 1h lot is spendable again.
    let spend_entry = points
        .list_entries(pb::ListEntriesRequest {
            uid: "gina".into(),
            kind: Some("spend".into()),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .items
        .remove(0);
    let reversed = points
        .reverse(pb::ReverseRequest {
            entry_id: spend_entry.entry_id,
            idempotency_key: idem(),
            reason: None,
        })
        .await
        .expect("reverse")
        .into_inner();
    assert_eq!(
        reversed.balance, 20,
        "10 never + 10 from the 1h lot; the 5 from the expired lot expire again"
    );
    assert_eq!(remaining(soon.entry_id).await, 10);
    assert_ledger_invariants(&db, &merchant.merchant_id).await;
}

#[tokio::test]
async fn batches_take_up_to_a_thousand_operations_atomically_or_item_by_item() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("batch-shop").await;
    let mut points = app.points(app.caller(&key));
    let earn = |uid: String, n: i64, key: String| pb::BatchOperation {
        op: Some(pb::batch_operation::Op::Earn(earn_request(&uid, n, &key))),
    };
    let spend = |uid: &str, n: i64, key: &str| pb::BatchOperation {
        op: Some(pb::batch_operation::Op::Spend(spend_request(uid, n, key))),
    };

    let thousand: Vec<_> = (0..1000)
        .map(|i| earn(format!("u{}", i % 37), 1, format!("b{i}")))
        .collect();
    let response = points
        .batch(pb::BatchRequest {
            atomic: true,
            operations: thousand.clone(),
        })
        .await
        .expect("1000 operations")
        .into_inner();
    assert_eq!(response.results.len(), 1000);
    assert!(response.results.iter().all(|r| r.code == 0));
    let mut too_many = thousand;
    too_many.push(earn("u0".into(), 1, "b1000".into()));
    assert_status(
        points
            .batch(pb::BatchRequest {
                atomic: true,
                operations: too_many,
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_status(
        points
            .batch(pb::BatchRequest {
                atomic: false,
                operations: vec![],
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );

    let db = app.db().await;
    let count_entries = format!(
        "SELECT count(*) FROM {}.entries",
        schema_of(&merchant.merchant_id)
    );
    let before: i64 = db
        .query_one(&count_entries, &[])
        .await
        .expect("count")
        .get(0);
    let atomic_with_bad_item = vec![
        earn("harry".into(), 5, "h1".into()),
        spend("harry", 50, "h2"),
        earn("harry".into(), 5, "h3".into()),
    ];
    let status = assert_status(
        points
            .batch(pb::BatchRequest {
                atomic: true,
                operations: atomic_with_bad_item.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "INSUFFICIENT_POINTS",
    );
    assert!(status.message().contains("operations[1]"), "{status:?}");
    let invalid_item = vec![
        earn("harry".into(), 5, "h1".into()),
        earn("".into(), 5, "h4".into()),
    ];
    assert_status(
        points
            .batch(pb::BatchRequest {
                atomic: true,
                operations: invalid_item,
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        db.query_one(&count_entries, &[])
            .await
            .expect("count")
            .get::<_, i64>(0),
        before,
        "atomic failures write nothing"
    );

    let mut mixed = atomic_with_bad_item;
    mixed.push(pb::BatchOperation { op: None });
    let response = points
        .batch(pb::BatchRequest {
            atomic: false,
            operations: mixed,
        })
        .await
        .expect("batch")
        .into_inner();
    let codes: Vec<_> = response.results.iter().map(|r| (r.index, r.code)).collect();
    assert_eq!(codes, vec![(0, 0), (1, 42201), (2, 0), (3, 40001)]);
    assert_eq!(response.results[1].reason, "INSUFFICIENT_POINTS");
    assert_eq!(response.results[2].data.as_ref().expect("data").balance, 10);
    assert_eq!(
        db.query_one(&count_entries, &[])
            .await
            .expect("count")
            .get::<_, i64>(0),
        before + 2
    );
    // Replaying the same non-atomic batch replays the applied items and retries the failed one.
    let again = points
        .batch(pb::BatchRequest {
            atomic: false,
            operations: vec![
                earn("harry".into(), 5, "h1".into()),
                spend("harry", 50, "h2"),
            ],
        })
        .await
        .expect("batch")
        .into_inner();
    assert!(again.results[0].data.as_ref().expect("data").replayed);
    assert_eq!(again.results[1].code, 42201);
    assert_ledger_invariants(&db, &merchant.merchant_id).await;
}

#[tokio::test]
async fn with_one_pooled_connection_interleaved_tenants_never_see_each_other() {
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_DB_POOL_SIZE".into(), "1".into());
    })
    .await;
    let (first, first_key) = app.register_merchant("tenant-one").await;
    let (second, second_key) = app.register_merchant("tenant-two").await;
    let tenants = [(first_key, "one"), (second_key, "two")];
    let mut failures = 0;
    for call in 0..1000 {
        let (key, tag) = &tenants[call % 2];
        let mut points = app.points(app.caller(key));
        let uid = format!("{tag}-user");
        match call % 5 {
            // Fails inside the transaction, after the account row was locked and written.
            0 => {
                let result = points.spend(spend_request(&uid, 1_000_000, &idem())).await;
                assert_eq!(
                    result.expect_err("insufficient").code(),
                    Code::FailedPrecondition
                );
                failures += 1;
            }
            1 | 2 => {
                points
                    .earn(earn_request(&uid, 2, &idem()))
                    .await
                    .expect("earn");
            }
            _ => {
                let listed = points
                    .list_entries(pb::ListEntriesRequest {
                        uid: uid.clone(),
                        page_size: 500,
                        ..Default::default()
                    })
                    .await
                    .expect("list")
                    .into_inner();
                assert!(
                    listed.items.iter().all(|e| e.uid == uid),
                    "a foreign row leaked"
                );
                for other in ["one-user", "two-user"]
                    .into_iter()
                    .filter(|other| *other != uid)
                {
                    let leaked = points
                        .list_entries(pb::ListEntriesRequest {
                            uid: other.into(),
                            ..Default::default()
                        })
                        .await
                        .expect("list")
                        .into_inner();
                    assert!(leaked.items.is_empty(), "{tag} sees entries of {other}");
                    let balance = points
                        .get_account(pb::GetAccountRequest { uid: other.into() })
                        .await
                        .expect("account");
                    assert_eq!(
                        balance.into_inner().balance,
                        0,
                        "{tag} sees the balance of {other}"
                    );
                }
            }
        }
    }
    assert_eq!(failures, 200);
    // The single pooled connection is back with the default search path.
    let client = app.services.pool.get().await.expect("the one connection");
    let search_path: String = client
        .query_one("SHOW search_path", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(search_path, points::store::DEFAULT_SEARCH_PATH);
    drop(client);
    let db = app.db().await;
    for (merchant, tag) in [(&first, "one"), (&second, "two")] {
        let foreign: i64 = db
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.entries WHERE uid NOT LIKE $1",
                    schema_of(&merchant.merchant_id)
                ),
                &[&format!("{tag}-%")],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(foreign, 0);
        assert_ledger_invariants(&db, &merchant.merchant_id).await;
    }
}

#[tokio::test]
async fn earning_by_amount_records_the_rule_version_on_the_entry_and_the_expiry_on_the_lot() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("amount-shop").await;
    let mut rules = app.rules(app.caller(&key));
    let rule = |points_per_unit: i64| pb::PutRuleRequest {
        code: "default".into(),
        currency: "EUR".into(),
        unit_amount: "1.00".into(),
        points_per_unit,
        rounding: "floor".into(),
        points_ttl_days: Some(30),
        ..Default::default()
    };
    rules.put_rule(rule(2)).await.expect("rule v1");
    let mut points = app.points(app.caller(&key));
    let earn = |amount: &str, key: &str| pb::EarnRequest {
        uid: "ivan".into(),
        amount: Some(amount.into()),
        currency: Some("EUR".into()),
        idempotency_key: key.into(),
        ..Default::default()
    };
    let first = points
        .earn(earn("12.99", "buy-1"))
        .await
        .expect("earn by amount")
        .into_inner();
    let entry = first.entry.expect("entry");
    assert_eq!(entry.delta, 25, "floor(12.99 / 1.00 × 2)");
    assert_eq!(
        (entry.rule_code.as_deref(), entry.rule_version),
        (Some("default"), Some(1))
    );
    assert_eq!(
        (entry.amount.as_deref(), entry.currency.as_deref()),
        (Some("12.99"), Some("EUR"))
    );
    let expires_at = entry
        .expires_at
        .expect("expiry from points_ttl_days")
        .seconds;
    let expected = (chrono::Utc::now() + chrono::Duration::days(30)).timestamp();
    assert!(
        (expires_at - expected).abs() < 60,
        "{expires_at} vs {expected}"
    );
    let lot_expiry: chrono::DateTime<chrono::Utc> = app
        .db()
        .await
        .query_one(
            &format!(
                "SELECT expires_at FROM {}.lots WHERE entry_id = $1",
                schema_of(&merchant.merchant_id)
            ),
            &[&entry.entry_id.parse::<i64>().expect("id")],
        )
        .await
        .expect("lot")
        .get(0);
    assert_eq!(lot_expiry.timestamp(), expires_at);

    // A new version applies to new earns only; the entry written before keeps version 1.
    rules.put_rule(rule(3)).await.expect("rule v2");
    let second = points
        .earn(earn("10", "buy-2"))
        .await
        .expect("earn")
        .into_inner()
        .entry
        .expect("entry");
    assert_eq!((second.delta, second.rule_version), (30, Some(2)));
    let again = points
        .get_entry(pb::GetEntryRequest {
            entry_id: entry.entry_id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!((again.delta, again.rule_version), (25, Some(1)));

    let wrong_currency = pb::EarnRequest {
        currency: Some("USD".into()),
        ..earn("10", "buy-3")
    };
    assert_status(
        points.earn(wrong_currency).await,
        Code::FailedPrecondition,
        "NO_APPLICABLE_RULE",
    );
    let no_rule = pb::EarnRequest {
        rule_code: Some("vip".into()),
        ..earn("10", "buy-4")
    };
    assert_status(
        points.earn(no_rule).await,
        Code::FailedPrecondition,
        "NO_APPLICABLE_RULE",
    );
    assert_status(
        points.earn(earn("0.10", "buy-5")).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_status(
        points.earn(earn("1.001", "buy-6")).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_ledger_invariants(&app.db().await, &merchant.merchant_id).await;
}

#[tokio::test]
async fn two_instances_sweeping_the_same_tenant_write_each_expiry_exactly_once() {
    let first = spawn_app().await;
    let second = crate::helpers::spawn_second_instance(&first).await;
    let (merchant, key) = first.register_merchant("sweep-race").await;
    let merchant_id: uuid::Uuid = merchant.merchant_id.parse().expect("uuid");
    let mut points = first.points(first.caller(&key));
    let soon = Some(points::grpc::timestamp(
        chrono::Utc::now() + chrono::Duration::hours(1),
    ));
    for uid in 0..60 {
        for lot in 0..2 {
            points
                .earn(pb::EarnRequest {
                    expires_at: soon,
                    ..earn_request(&format!("racer-{uid}"), 5 + lot, &idem())
                })
                .await
                .expect("earn");
        }
    }
    let db = first.db().await;
    let schema = schema_of(&merchant.merchant_id);
    db.execute(
        &format!("UPDATE {schema}.lots SET expires_at = now() - interval '1 second'"),
        &[],
    )
    .await
    .expect("expire every lot");
    // Both instances sweep at once, repeatedly, in small batches, while requests touch some of the same uids.
    let mut sweeps = Vec::new();
    for services in [
        first.services.clone(),
        second.services.clone(),
        first.services.clone(),
        second.services.clone(),
    ] {
        sweeps.push(tokio::spawn(async move {
            let mut written = 0;
            for _ in 0..20 {
                written += points::service::ledger::sweep_expired(&services, merchant_id, 7)
                    .await
                    .expect("sweep");
            }
            written
        }));
    }
    for uid in (0..60).step_by(6) {
        let account = points
            .get_account(pb::GetAccountRequest {
                uid: format!("racer-{uid}"),
            })
            .await
            .expect("account");
        assert_eq!(account.into_inner().balance, 0);
        points
            .earn(earn_request(&format!("racer-{uid}"), 1, &idem()))
            .await
            .expect("earn during the sweep");
    }
    for sweep in sweeps {
        sweep.await.expect("join");
    }
    // Whatever is left (uids skipped while busy) goes in one last pass.
    while points::service::ledger::sweep_expired(&first.services, merchant_id, 1000)
        .await
        .expect("sweep")
        > 0
    {}
    let per_lot: Vec<(i64, i64)> = db
        .query(
            &format!(
                "SELECT l.lot_id, count(e.entry_id) FROM {schema}.lots l \
                 LEFT JOIN {schema}.entries e ON e.lot_id = l.lot_id AND e.kind = 'expire' \
                 WHERE l.expires_at IS NOT NULL GROUP BY l.lot_id"
            ),
            &[],
        )
        .await
        .expect("expire entries per lot")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(per_lot.len(), 120);
    assert!(
        per_lot.iter().all(|(_, count)| *count == 1),
        "each expired lot has exactly one expire entry: {per_lot:?}"
    );
    assert_ledger_invariants(&db, &merchant.merchant_id).await;
}

/// The sweeper as the server runs it (the other tests keep it off and sweep by hand): on, it writes off an
/// expired lot by itself, wholly, and leaves the lots that have not expired.
#[tokio::test]
async fn the_running_expiry_sweeper_writes_off_expired_lots_by_itself() {
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_EXPIRY_SWEEP_INTERVAL_MS".into(), "50".into());
    })
    .await;
    let (merchant, key) = app.register_merchant("swept-shop").await;
    let mut points = app.points(app.caller(&key));
    let in_a_day = Some(points::grpc::timestamp(
        chrono::Utc::now() + chrono::Duration::days(1),
    ));
    for (uid, points_earned) in [("expiring", 7), ("keeping", 9)] {
        points
            .earn(pb::EarnRequest {
                expires_at: in_a_day,
                ..earn_request(uid, points_earned, &idem())
            })
            .await
            .expect("earn");
    }
    let db = app.db().await;
    let schema = schema_of(&merchant.merchant_id);
    db.execute(
        &format!("UPDATE {schema}.lots SET expires_at = now() - interval '1 second' WHERE uid = 'expiring'"),
        &[],
    )
    .await
    .expect("expire one lot");
    let expire_entries =
        format!("SELECT uid, delta FROM {schema}.entries WHERE kind = 'expire' ORDER BY entry_id");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let written: Vec<(String, i64)> = loop {
        let rows = db
            .query(&expire_entries, &[])
            .await
            .expect("expire entries");
        if !rows.is_empty() {
            break rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweeper wrote nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(written, [("expiring".to_owned(), -7)]);
    let merchant_id: uuid::Uuid = merchant.merchant_id.parse().expect("uuid");
    let left = points::service::ledger::sweep_expired(&app.services, merchant_id, 100)
        .await
        .expect("sweep");
    assert_eq!(left, 0, "the running sweeper left nothing to write off");
    let balance = |uid: &str| {
        let mut points = points.clone();
        let uid = uid.to_owned();
        async move {
            points
                .get_account(pb::GetAccountRequest { uid })
                .await
                .expect("account")
                .into_inner()
                .balance
        }
    };
    assert_eq!(
        (balance("expiring").await, balance("keeping").await),
        (0, 9)
    );
    assert_ledger_invariants(&db, &merchant.merchant_id).await;
    app.stop().await.expect("stop");
}
