//! The ledger's fast path (src/service/ledger/lanes.rs): operations that queue while a batch of their tenant is in
//! flight are applied together in the next one, each with its own result.
//!
//! To make a batch of known content, a test holds the lock of one account from its own connection: the batch with
//! that account's operation waits in PostgreSQL, the operations sent meanwhile queue behind it in order, and the
//! lock's release lets them run as the next batch. (One lane per tenant in these tests, so they all share it, with
//! one batch in flight at a time.)

use std::time::Duration;

use points::pb;
use tonic::Code;

use crate::helpers::{
    PointsClient, TestApp, assert_ledger_invariants, assert_status, earn_request, idem, schema_of,
    spawn_app_with, spend_request,
};

async fn one_lane_app() -> TestApp {
    // One batch at a time: what is sent while the blocked batch waits queues into the next one.
    lane_app(1).await
}

async fn lane_app(pipeline_depth: usize) -> TestApp {
    spawn_app_with(|settings| {
        settings.insert("POINTS_LEDGER_LANES".into(), "1".into());
        settings.insert(
            "POINTS_LEDGER_PIPELINE_DEPTH".into(),
            pipeline_depth.to_string(),
        );
    })
    .await
}

/// Holds the account lock of `uid` from a connection of its own, with an operation on `uid` waiting for it in the
/// lane, so whatever is sent until [`Blocker::release`] queues into the next batch.
struct Blocker {
    db: tokio_postgres::Client,
    waiting: tokio::task::JoinHandle<Result<tonic::Response<pb::MutationResponse>, tonic::Status>>,
}

/// The backend of the batch waiting on an account lock, once there is one.
async fn waiting_batch(app: &TestApp) -> i32 {
    let observer = app.db().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = observer
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE '%ledger_apply_%'",
                &[],
            )
            .await
            .expect("pg_stat_activity");
        if let Some(row) = row {
            return row.get(0);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no batch waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Blocker {
    async fn hold(app: &TestApp, points: &PointsClient, schema: &str, uid: &str) -> Blocker {
        points
            .clone()
            .earn(earn_request(uid, 1, &idem()))
            .await
            .expect("create the account");
        let db = app.db().await;
        db.batch_execute(&format!(
            "BEGIN; SELECT 1 FROM {schema}.accounts WHERE uid = '{uid}' FOR UPDATE"
        ))
        .await
        .expect("lock the account");
        let mut client = points.clone();
        let request = earn_request(uid, 1, &idem());
        let waiting = tokio::spawn(async move { client.earn(request).await });
        waiting_batch(app).await;
        Blocker { db, waiting }
    }

    async fn release(self) -> Result<tonic::Response<pb::MutationResponse>, tonic::Status> {
        self.db.batch_execute("COMMIT").await.expect("release");
        self.waiting.await.expect("blocked call")
    }
}

/// Sends `request` on its own task after the previous ones (so they reach the lane in this order).
async fn send<F, T>(calls: &mut Vec<tokio::task::JoinHandle<T>>, call: F)
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    calls.push(tokio::spawn(call));
    tokio::time::sleep(Duration::from_millis(30)).await;
}

/// The transaction that wrote the entry (entries record it), to tell which operations shared a batch.
async fn transaction_of(db: &tokio_postgres::Client, schema: &str, entry_id: &str) -> String {
    let entry_id: i64 = entry_id.parse().expect("entry id");
    db.query_one(
        &format!("SELECT xid::text FROM {schema}.entries WHERE entry_id = $1"),
        &[&entry_id],
    )
    .await
    .expect("entry")
    .get(0)
}

#[tokio::test]
async fn a_batch_with_refused_operations_in_the_middle_applies_the_others_each_with_its_own_result()
{
    let app = one_lane_app().await;
    let (merchant, key) = app.register_merchant("lane-shop").await;
    let schema = schema_of(&merchant.merchant_id);
    let points = app.points(app.caller(&key));
    let blocker = Blocker::hold(&app, &points, &schema, "blocker").await;

    let first_key = idem();
    let refused_key = idem();
    let mut calls = Vec::new();
    let mut client = points.clone();
    let request = earn_request("alice", 10, &first_key);
    send(&mut calls, async move { client.earn(request).await }).await;
    // More than alice has: refused, in the middle of the batch.
    let mut client = points.clone();
    let request = spend_request("alice", 50, &refused_key);
    send(&mut calls, async move { client.spend(request).await }).await;
    // The first key again for a different request: a conflict.
    let mut client = points.clone();
    let request = earn_request("alice", 11, &first_key);
    send(&mut calls, async move { client.earn(request).await }).await;
    let mut client = points.clone();
    let request = earn_request("carol", 5, &idem());
    send(&mut calls, async move { client.earn(request).await }).await;
    // After alice's earn in the same batch: applied against it.
    let mut client = points.clone();
    let request = spend_request("alice", 4, &idem());
    send(&mut calls, async move { client.spend(request).await }).await;

    blocker.release().await.expect("the blocked earn");
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.expect("call task"));
    }
    let mut results = results.into_iter();
    let earned = results.next().unwrap().expect("alice's earn").into_inner();
    assert_eq!(earned.balance, 10);
    assert_status(
        results.next().unwrap(),
        Code::FailedPrecondition,
        "INSUFFICIENT_POINTS",
    );
    assert_status(
        results.next().unwrap(),
        Code::AlreadyExists,
        "IDEMPOTENCY_CONFLICT",
    );
    let carol = results.next().unwrap().expect("carol's earn").into_inner();
    assert_eq!(carol.balance, 5);
    let spent = results.next().unwrap().expect("alice's spend").into_inner();
    assert_eq!(spent.balance, 6);

    // The three applied operations shared one transaction: one batch, with the refusals in its middle.
    let db = app.db().await;
    let entry_id =
        |response: &pb::MutationResponse| response.entry.as_ref().expect("entry").entry_id.clone();
    let batch = transaction_of(&db, &schema, &entry_id(&earned)).await;
    assert_eq!(transaction_of(&db, &schema, &entry_id(&carol)).await, batch);
    assert_eq!(transaction_of(&db, &schema, &entry_id(&spent)).await, batch);
    // The refused spend left nothing behind; every applied operation has its own audit record, committed with it.
    let recorded: i64 = db
        .query_one(
            &format!(
                "SELECT count(*) FROM {schema}.idempotency_records WHERE idempotency_key = $1"
            ),
            &[&refused_key],
        )
        .await
        .expect("idempotency")
        .get(0);
    assert_eq!(recorded, 0);
    for response in [&earned, &carol, &spent] {
        let id: i64 = entry_id(response).parse().expect("id");
        let audits: i64 = db
            .query_one(
                &format!(
                    "SELECT count(*) FROM {schema}.audit_records WHERE $1 = ANY (entry_ids) AND outcome_code = 0"
                ),
                &[&id],
            )
            .await
            .expect("audit")
            .get(0);
        assert_eq!(audits, 1, "entry {id} is listed by one audit record");
    }
    assert_ledger_invariants(&db, &merchant.merchant_id).await;
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn two_hundred_concurrent_duplicates_of_one_key_write_one_entry() {
    let app = one_lane_app().await;
    let (merchant, key) = app.register_merchant("duplicate-shop").await;
    let schema = schema_of(&merchant.merchant_id);
    let points = app.points(app.caller(&key));
    // Once while a batch is in flight (all 200 land in the next batch together), once freely.
    for together in [true, false] {
        let blocker = if together {
            Some(Blocker::hold(&app, &points, &schema, "blocker").await)
        } else {
            None
        };
        let shared_key = idem();
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let mut client = points.clone();
                let request = earn_request("dana", 7, &shared_key);
                tokio::spawn(async move { client.earn(request).await })
            })
            .collect();
        if let Some(blocker) = blocker {
            tokio::time::sleep(Duration::from_millis(300)).await;
            blocker.release().await.expect("the blocked earn");
        }
        let mut entry_ids = std::collections::BTreeSet::new();
        let mut fresh = 0;
        for call in calls {
            let response = call
                .await
                .expect("call task")
                .expect("every duplicate succeeds")
                .into_inner();
            entry_ids.insert(response.entry.expect("entry").entry_id);
            if !response.replayed {
                fresh += 1;
            }
        }
        assert_eq!(entry_ids.len(), 1, "one entry for one key");
        assert_eq!(fresh, 1, "one applied, 199 replays");
        let db = app.db().await;
        let written: i64 = db
            .query_one(
                &format!("SELECT count(*) FROM {schema}.entries WHERE idempotency_key = $1"),
                &[&shared_key],
            )
            .await
            .expect("entries")
            .get(0);
        assert_eq!(written, 1);
    }
    let account = app
        .points(app.caller(&key))
        .get_account(pb::GetAccountRequest { uid: "dana".into() })
        .await
        .expect("account")
        .into_inner();
    assert_eq!(account.balance, 14);
    assert_ledger_invariants(&app.db().await, &merchant.merchant_id).await;
    app.stop().await.expect("stop");
}

/// The database connection of a batch in flight is killed: every client gets an error, or a success that really
/// committed — replaying each request afterwards shows which: a success replays with its entry, an error does not.
#[tokio::test]
async fn a_connection_killed_mid_batch_reports_success_only_for_what_committed() {
    killed_mid_batch(1).await;
}

/// The same with the default pipeline: the batch of forty is sent behind the blocked one, on the same connection,
/// and the kill takes both.
#[tokio::test]
async fn a_connection_killed_under_a_pipeline_of_batches_reports_success_only_for_what_committed() {
    killed_mid_batch(2).await;
}

async fn killed_mid_batch(pipeline_depth: usize) {
    let app = lane_app(pipeline_depth).await;
    let (merchant, key) = app.register_merchant("killed-shop").await;
    let schema = schema_of(&merchant.merchant_id);
    let points = app.points(app.caller(&key));
    points
        .clone()
        .earn(earn_request("blocker", 1, &idem()))
        .await
        .expect("create the account");
    // A first batch waits at the gate while the batch to kill queues behind it: an operation on a locked account
    // (so that batch will wait too, in flight) and forty others.
    let gate = Blocker::hold(&app, &points, &schema, "gate").await;
    let lock = app.db().await;
    lock.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM {schema}.accounts WHERE uid = 'blocker' FOR UPDATE"
    ))
    .await
    .expect("lock");
    let mut blocked_client = points.clone();
    let blocked = tokio::spawn(async move {
        blocked_client
            .earn(earn_request("blocker", 1, &idem()))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let requests: Vec<pb::EarnRequest> = (0..40)
        .map(|n| earn_request(&format!("uid-{}", n % 7), 1 + n % 5, &idem()))
        .collect();
    let mut calls = Vec::new();
    for request in &requests {
        let mut client = points.clone();
        let request = request.clone();
        calls.push(tokio::spawn(async move { client.earn(request).await }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.release().await.expect("the gate's earn");
    // The next batch (the blocked earn and the forty) now waits on the lock: kill its connection.
    let pid = waiting_batch(&app).await;
    let killer = app.db().await;
    let killed: bool = killer
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate")
        .get(0);
    assert!(killed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    lock.batch_execute("COMMIT").await.expect("release");
    let blocked = blocked.await.expect("blocked task");
    let mut answered = Vec::new();
    for call in calls {
        answered.push(call.await.expect("call task"));
    }
    let (mut succeeded, mut failed) = (0, 0);
    for (request, result) in requests.iter().zip(answered) {
        let replay = points
            .clone()
            .earn(request.clone())
            .await
            .expect("the replay is answered")
            .into_inner();
        match result {
            Ok(response) => {
                succeeded += 1;
                assert!(replay.replayed, "a reported success must have committed");
                assert_eq!(
                    replay.entry.expect("entry").entry_id,
                    response.into_inner().entry.expect("entry").entry_id
                );
            }
            Err(status) => {
                failed += 1;
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(!replay.replayed, "a reported error must not have committed");
            }
        }
    }
    println!(
        "killed mid-batch (pipeline depth {pipeline_depth}): the blocked call {}; of 40 queued, {succeeded} succeeded and \
         {failed} failed, each confirmed by its replay",
        if blocked.is_ok() {
            "succeeded"
        } else {
            "failed"
        }
    );
    assert_ledger_invariants(&app.db().await, &merchant.merchant_id).await;
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn credits_of_one_batch_get_running_balances_in_arrival_order_beside_a_uid_with_expired_points()
 {
    let app = one_lane_app().await;
    let (merchant, key) = app.register_merchant("running-shop").await;
    let schema = schema_of(&merchant.merchant_id);
    let points = app.points(app.caller(&key));
    let db = app.db().await;
    // dave holds 7 points whose lot has expired: his next earn must write them off first (the per-operation way).
    points
        .clone()
        .earn(earn_request("dave", 7, &idem()))
        .await
        .expect("dave's first earn");
    db.execute(
        &format!(
            "UPDATE {schema}.lots SET expires_at = now() - interval '1 minute' WHERE uid = 'dave'"
        ),
        &[],
    )
    .await
    .expect("expire dave's lot");
    let blocker = Blocker::hold(&app, &points, &schema, "blocker").await;

    let mut calls = Vec::new();
    for (uid, earned) in [("bob", 3), ("bob", 4), ("dave", 2), ("bob", 5)] {
        let mut client = points.clone();
        let request = earn_request(uid, earned, &idem());
        send(&mut calls, async move { client.earn(request).await }).await;
    }
    blocker.release().await.expect("the blocked earn");
    let mut balances = Vec::new();
    let mut entries = Vec::new();
    for call in calls {
        let response = call.await.expect("call task").expect("earn").into_inner();
        balances.push(response.balance);
        entries.push(response.entry.expect("entry"));
    }
    // bob's three credits, set-based, each answered with the balance after it, in the order they arrived.
    assert_eq!(balances, vec![3, 7, 2, 12]);
    assert_eq!(
        entries.iter().map(|e| e.balance_after).collect::<Vec<_>>(),
        vec![3, 7, 2, 12]
    );
    let batch = transaction_of(&db, &schema, &entries[0].entry_id).await;
    for entry in &entries {
        assert_eq!(transaction_of(&db, &schema, &entry.entry_id).await, batch);
    }
    // dave's expired 7 points were written off in the same transaction, before his earn.
    let expire = db
        .query_one(
            &format!(
                "SELECT entry_id::text, delta, balance_after FROM {schema}.entries WHERE uid = 'dave' AND kind = 'expire'"
            ),
            &[],
        )
        .await
        .expect("dave's expire entry");
    assert_eq!(expire.get::<_, i64>(1), -7);
    assert_eq!(expire.get::<_, i64>(2), 0);
    assert_eq!(
        transaction_of(&db, &schema, &expire.get::<_, String>(0)).await,
        batch
    );
    // Each applied credit has its idempotency record and its own audit record.
    for entry in &entries {
        let id: i64 = entry.entry_id.parse().expect("id");
        let found: (i64, i64) = db
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM {schema}.idempotency_records WHERE entry_id = $1), \
                     (SELECT count(*) FROM {schema}.audit_records WHERE $1 = ANY (entry_ids) AND outcome_code = 0)"
                ),
                &[&id],
            )
            .await
            .map(|row| (row.get(0), row.get(1)))
            .expect("records");
        assert_eq!(found, (1, 1), "entry {id}");
    }
    assert_ledger_invariants(&db, &merchant.merchant_id).await;
    app.stop().await.expect("stop");
}

/// A lane holds a connection while it has work, and gives it back when it is idle or others wait for one: with a
/// pool of one connection, two tenants under continuous load (32 clients each) and a third tenant's reads are all
/// served, none waiting long.
#[tokio::test]
async fn busy_lanes_share_a_pool_of_one_connection_with_each_other_and_with_reads() {
    let _heavy = crate::helpers::heavy_test().await;
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_DB_POOL_SIZE".into(), "1".into());
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut earners = Vec::new();
    let mut busy = Vec::new();
    for shop in ["busy-a", "busy-b"] {
        let (merchant, key) = app.register_merchant(shop).await;
        busy.push(merchant.merchant_id);
        for worker in 0..32 {
            let mut client = app.points(app.caller(&key));
            earners.push(tokio::spawn(async move {
                let mut applied = 0;
                while std::time::Instant::now() < deadline {
                    client
                        .earn(earn_request(&format!("w{worker}"), 1, &idem()))
                        .await
                        .expect("an earn of a busy tenant");
                    applied += 1;
                }
                applied
            }));
        }
    }
    let (_, reader_key) = app.register_merchant("reader").await;
    let mut reader = app.points(app.caller(&reader_key));
    let mut reads = 0;
    while std::time::Instant::now() < deadline {
        let started = std::time::Instant::now();
        reader
            .get_account(pb::GetAccountRequest { uid: "r".into() })
            .await
            .expect("a read while two lanes are busy");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a read waited {:?} for a connection",
            started.elapsed()
        );
        reads += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut applied = 0;
    for earner in earners {
        applied += earner.await.expect("earner");
    }
    assert!(
        reads > 20 && applied > 100,
        "reads {reads}, earns {applied}"
    );
    let db = app.db().await;
    for merchant_id in &busy {
        assert_ledger_invariants(&db, merchant_id).await;
    }
    app.stop().await.expect("stop");
}
