//! The liability report (SPEC §13) against a real ledger, the account list, and the roll-up's exactness when
//! entries commit out of id order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{idem, schema_of};
use crate::rest::{RestFixture, earn, int, page_items, rest_fixture, text};

/// Movement figures of one bucket, in the report's field order.
const MOVEMENTS: [&str; 7] = [
    "issued",
    "redeemed",
    "expired",
    "adjusted_in",
    "adjusted_out",
    "reversed_in",
    "reversed_out",
];

/// Writes `count` entries spread over the last 30 days straight into the tenant's ledger (the API can only write
/// "now"), of every kind and sign, then sets each account's balance to the sum of its entries.
async fn backdated_entries(db: &tokio_postgres::Client, merchant_id: &str, count: i64) {
    let schema = schema_of(merchant_id);
    db.batch_execute(&format!(
        "INSERT INTO {schema}.entries (uid, kind, delta, balance_after, idempotency_key, created_at) \
         SELECT 'hist-' || (g % 97), \
                (ARRAY['earn','earn','earn','earn','earn','spend','spend','adjust','reverse','expire'])[g % 10 + 1], \
                CASE g % 10 \
                    WHEN 5 THEN -(g % 7 + 1) WHEN 6 THEN -(g % 5 + 1) \
                    WHEN 7 THEN CASE WHEN g % 3 = 0 THEN -(g % 4 + 1) ELSE g % 9 + 1 END \
                    WHEN 8 THEN CASE WHEN g % 2 = 0 THEN -(g % 6 + 1) ELSE g % 8 + 1 END \
                    WHEN 9 THEN -(g % 3 + 1) \
                    ELSE g % 50 + 10 END, \
                0, 'hist-' || g, \
                now() - (g % 31) * interval '1 day' - ((g * 7919) % 86400) * interval '1 second' \
         FROM generate_series(1, {count}) AS g; \
         INSERT INTO {schema}.accounts (uid, balance) \
         SELECT uid, sum(delta) FROM {schema}.entries GROUP BY uid \
         ON CONFLICT (uid) DO UPDATE SET balance = excluded.balance;"
    ))
    .await
    .expect("backdated entries");
}

/// The expected report figures, computed from the raw entries in Rust: UTC days → (movements, net).
async fn expected_utc_days(
    db: &tokio_postgres::Client,
    merchant_id: &str,
) -> BTreeMap<DateTime<Utc>, [i64; 7]> {
    let rows = db
        .query(
            &format!(
                "SELECT kind, delta, created_at FROM {}.entries",
                schema_of(merchant_id)
            ),
            &[],
        )
        .await
        .expect("entries");
    let mut days = BTreeMap::new();
    for row in rows {
        let kind: String = row.get(0);
        let delta: i64 = row.get(1);
        let at: DateTime<Utc> = row.get(2);
        let day = Utc
            .timestamp_opt(at.timestamp().div_euclid(86_400) * 86_400, 0)
            .single()
            .expect("day");
        let slot = match (kind.as_str(), delta > 0) {
            ("earn", _) => 0,
            ("spend", _) => 1,
            ("expire", _) => 2,
            ("adjust", true) => 3,
            ("adjust", false) => 4,
            ("reverse", true) => 5,
            ("reverse", false) => 6,
            other => panic!("unexpected entry {other:?}"),
        };
        days.entry(day).or_insert([0; 7])[slot] += delta.abs();
    }
    days
}

fn net(movements: &[i64; 7]) -> i64 {
    movements[0] - movements[1] - movements[2] + movements[3] - movements[4] + movements[5]
        - movements[6]
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text(value))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// Checks a UTC day report against the expected days: every bucket, the opening, the closing and the running
/// outstanding.
fn assert_report_matches(report: &Value, expected: &BTreeMap<DateTime<Utc>, [i64; 7]>) {
    let from = time(&report["from"]);
    let to = time(&report["to"]);
    let opening: i64 = expected
        .range(..from)
        .map(|(_, movements)| net(movements))
        .sum();
    assert_eq!(int(&report["opening_outstanding"]), opening, "opening");
    let mut outstanding = opening;
    let buckets = report["buckets"].as_array().expect("buckets");
    assert_eq!(
        buckets.len() as i64,
        (to - from).num_days(),
        "one bucket per day"
    );
    for bucket in buckets {
        let start = time(&bucket["start"]);
        let want = expected.get(&start).copied().unwrap_or([0; 7]);
        let got: Vec<i64> = MOVEMENTS.iter().map(|field| int(&bucket[*field])).collect();
        assert_eq!(got, want.to_vec(), "bucket {start}");
        outstanding += net(&want);
        assert_eq!(
            int(&bucket["outstanding"]),
            outstanding,
            "outstanding at the end of {start}"
        );
    }
    assert_eq!(int(&report["closing_outstanding"]), outstanding, "closing");
}

async fn liability(client: &crate::rest::Rest, query: &str) -> Value {
    client
        .get(&format!("/api/v1/reports/liability{query}"))
        .await
        .ok(200)
}

async fn rolled_entries(db: &tokio_postgres::Client, merchant_id: &str) -> i64 {
    db.query_one(
        &format!(
            "SELECT rolled_entries FROM {}.liability_rollup_state",
            schema_of(merchant_id)
        ),
        &[],
    )
    .await
    .expect("roll-up state")
    .get(0)
}

/// Rolls up until `target` entries are rolled, and fails if it ever rolls more. The horizon is the oldest
/// transaction running anywhere in the cluster, so another test's open transaction may hold it back for a
/// moment; what it can never do is let the roll-up pass an entry that is not committed.
async fn roll_up_until(fixture: &RestFixture, db: &tokio_postgres::Client, target: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        points::service::reports::roll_up(&fixture.app.services, merchant_uuid(fixture))
            .await
            .expect("roll up");
        let rolled = rolled_entries(db, &fixture.merchant_id).await;
        assert!(
            rolled <= target,
            "rolled {rolled} entries, at most {target} are committed and below the horizon"
        );
        if rolled == target || Instant::now() >= deadline {
            return rolled;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn entry_count(db: &tokio_postgres::Client, merchant_id: &str) -> i64 {
    db.query_one(
        &format!("SELECT count(*) FROM {}.entries", schema_of(merchant_id)),
        &[],
    )
    .await
    .expect("count")
    .get(0)
}

fn merchant_uuid(fixture: &RestFixture) -> Uuid {
    Uuid::parse_str(&fixture.merchant_id).expect("uuid")
}

#[tokio::test]
async fn the_liability_report_over_ten_thousand_entries_agrees_exactly_with_the_entries() {
    let _heavy = crate::helpers::heavy_test().await;
    let fixture = rest_fixture("liability-shop").await;
    let db = fixture.app.db().await;
    backdated_entries(&db, &fixture.merchant_id, 10_000).await;
    // Entries of today through the API as well, including a spend and a reversal.
    earn(&fixture.merchant, "live-1", 500).await;
    let spend = fixture
        .merchant
        .post(
            "/api/v1/points/spend",
            json!({"uid": "live-1", "points": 120, "idempotency_key": idem()}),
        )
        .await
        .ok(201);
    fixture
        .merchant
        .post(
            &format!(
                "/api/v1/points/entries/{}/reverse",
                text(&spend["entry"]["entry_id"])
            ),
            json!({"idempotency_key": idem()}),
        )
        .await
        .ok(201);
    let expected = expected_utc_days(&db, &fixture.merchant_id).await;
    let from = (Utc::now() - chrono::Duration::days(20)).format("%Y-%m-%dT%H:%M:%SZ");
    let query = format!("?from={from}");

    // Before the roll-up has seen the backdated entries (they came in behind its back), the live tail carries
    // them; after it, the quarter-hour totals do. Both answers are the same, and exact.
    let before = liability(&fixture.merchant, &query).await;
    assert_report_matches(&before, &expected);
    let committed = entry_count(&db, &fixture.merchant_id).await;
    assert_eq!(
        roll_up_until(&fixture, &db, committed).await,
        committed,
        "everything committed is rolled up"
    );
    let after = liability(&fixture.merchant, &query).await;
    assert_report_matches(&after, &expected);
    assert_eq!(before["buckets"], after["buckets"]);

    // The closing figure is the sum of balances, and the reconciliation says so.
    let sum_of_balances: i64 = db
        .query_one(
            &format!(
                "SELECT sum(balance)::bigint FROM {}.accounts",
                schema_of(&fixture.merchant_id)
            ),
            &[],
        )
        .await
        .expect("sum")
        .get(0);
    assert_eq!(int(&after["closing_outstanding"]), sum_of_balances);
    let reconciliation = &after["reconciliation"];
    assert_eq!(int(&reconciliation["closing_outstanding"]), sum_of_balances);
    assert_eq!(int(&reconciliation["sum_of_balances"]), sum_of_balances);
    assert_eq!(reconciliation["ok"], json!(true));

    // The whole history in weeks in another zone: the same totals, bucketed by that zone's Monday midnight.
    let weeks = liability(
        &fixture.merchant,
        "?from=2020-01-01T00:00:00Z&bucket=week&tz=America/New_York",
    )
    .await;
    assert_eq!(int(&weeks["opening_outstanding"]), 0);
    assert_eq!(int(&weeks["closing_outstanding"]), sum_of_balances);
    let expected_weeks = db
        .query(
            &format!(
                "SELECT date_trunc('week', created_at AT TIME ZONE 'America/New_York') AT TIME ZONE 'America/New_York', \
                 sum(delta) FILTER (WHERE kind = 'earn')::bigint FROM {}.entries GROUP BY 1",
                schema_of(&fixture.merchant_id)
            ),
            &[],
        )
        .await
        .expect("weeks");
    let issued_by_week: BTreeMap<DateTime<Utc>, i64> = weeks["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|bucket| (time(&bucket["start"]), int(&bucket["issued"])))
        .collect();
    for row in expected_weeks {
        let start: DateTime<Utc> = row.get(0);
        let issued: Option<i64> = row.get(1);
        assert_eq!(
            issued_by_week.get(&start).copied(),
            Some(issued.unwrap_or(0)),
            "week of {start}"
        );
    }
    fixture.app.stop().await.expect("stop");
}

#[tokio::test]
async fn an_entry_that_commits_after_a_later_one_was_rolled_up_is_not_skipped() {
    let fixture = rest_fixture("late-commit-shop").await;
    let schema = schema_of(&fixture.merchant_id);
    earn(&fixture.merchant, "early", 10).await;

    // A transaction takes an entry id and stays open, as a slow request would...
    let (mut slow, connection) =
        tokio_postgres::connect(&fixture.app.database_url, tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    let slow = slow.transaction().await.expect("begin");
    let late_id: i64 = slow
        .query_one(
            &format!(
                "INSERT INTO {schema}.entries (uid, kind, delta, balance_after, idempotency_key) \
                 VALUES ('late', 'earn', 7, 7, 'late-1') RETURNING entry_id"
            ),
            &[],
        )
        .await
        .expect("insert")
        .get(0);
    slow.execute(
        &format!("INSERT INTO {schema}.accounts (uid, balance) VALUES ('late', 7)"),
        &[],
    )
    .await
    .expect("account");
    // ...while a later entry commits and is rolled up.
    let later = earn(&fixture.merchant, "later", 20).await;
    assert!(text(&later["entry_id"]).parse::<i64>().expect("id") > late_id);
    let db = fixture.app.db().await;
    assert_eq!(
        roll_up_until(&fixture, &db, 1).await,
        1,
        "the entry committed before the open transaction began is rolled up; the open one holds the horizon"
    );
    let report = liability(&fixture.merchant, "").await;
    assert_eq!(
        int(&report["closing_outstanding"]),
        30,
        "the open entry is not visible yet"
    );

    slow.commit().await.expect("commit the late entry");
    let report = liability(&fixture.merchant, "").await;
    assert_eq!(
        int(&report["closing_outstanding"]),
        37,
        "the late entry is in the tail"
    );
    assert_eq!(report["reconciliation"]["ok"], json!(true));
    assert_eq!(
        roll_up_until(&fixture, &db, 3).await,
        3,
        "each entry rolled up exactly once"
    );
    let rolled_net: i64 = db
        .query_one(
            &format!("SELECT rolled_net FROM {schema}.liability_rollup_state"),
            &[],
        )
        .await
        .expect("state")
        .get(0);
    assert_eq!(rolled_net, 37);
    assert_eq!(
        int(&liability(&fixture.merchant, "").await["closing_outstanding"]),
        37
    );
    fixture.app.stop().await.expect("stop");
}

#[tokio::test]
async fn the_background_roller_catches_up_with_api_writes() {
    let fixture = rest_fixture("rolling-shop").await;
    for uid in ["a", "b", "c"] {
        earn(&fixture.merchant, uid, 5).await;
    }
    let db = fixture.app.db().await;
    // As in `roll_up_until`: the horizon is the oldest transaction of the whole cluster, so a long transaction of
    // another test (here the ten-thousand-entry insert, or the deliberately open one) holds the roller back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while rolled_entries(&db, &fixture.merchant_id).await < 3 {
        assert!(
            Instant::now() < deadline,
            "the roller did not roll up the marked tenant"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fixture.app.stop().await.expect("stop");
}

#[tokio::test]
async fn an_admin_without_a_merchant_gets_the_platform_total_and_each_merchants_closing() {
    let fixture = rest_fixture("platform-a").await;
    let (other_id, other_key) = fixture.admin.register_merchant("platform-b").await;
    let other = fixture.anonymous.with_key(&other_key);
    earn(&fixture.merchant, "x", 100).await;
    earn(&other, "y", 40).await;
    earn(&other, "z", 2).await;
    let report = liability(&fixture.admin, "").await;
    assert_eq!(int(&report["closing_outstanding"]), 142);
    assert_eq!(report["reconciliation"]["ok"], json!(true));
    let merchants: Vec<(String, String, i64)> = report["merchants"]
        .as_array()
        .expect("merchants")
        .iter()
        .map(|m| {
            (
                text(&m["merchant_id"]).to_owned(),
                text(&m["slug"]).to_owned(),
                int(&m["closing_outstanding"]),
            )
        })
        .collect();
    assert_eq!(
        merchants,
        vec![
            (fixture.merchant_id.clone(), "platform-a".to_owned(), 100),
            (other_id.clone(), "platform-b".to_owned(), 42),
        ]
    );
    let today = report["buckets"]
        .as_array()
        .expect("buckets")
        .last()
        .cloned()
        .expect("today");
    assert_eq!(int(&today["issued"]), 142);
    // Acting for one merchant, the admin sees that merchant only.
    let acting = liability(&fixture.admin.acting_for(&other_id), "").await;
    assert_eq!(int(&acting["closing_outstanding"]), 42);
    assert_eq!(acting["merchants"], json!([]));
    // A merchant key sees its own.
    assert_eq!(int(&liability(&other, "").await["closing_outstanding"]), 42);
    fixture.app.stop().await.expect("stop");
}

#[tokio::test]
async fn liability_report_inputs_are_checked() {
    let fixture = rest_fixture("report-input-shop").await;
    let report = liability(&fixture.merchant, "").await;
    assert_eq!(
        report["buckets"].as_array().expect("buckets").len(),
        30,
        "the last 30 days by default"
    );
    assert_eq!(report["tz"], json!("UTC"));
    assert_eq!(report["bucket"], json!("day"));
    let months = liability(
        &fixture.merchant,
        "?from=2026-01-15T10:00:00Z&to=2026-03-01T00:00:00Z&bucket=month",
    )
    .await;
    assert_eq!(text(&months["from"]), "2026-01-01T00:00:00Z");
    assert_eq!(text(&months["to"]), "2026-03-01T00:00:00Z");
    assert_eq!(months["buckets"].as_array().expect("buckets").len(), 2);
    let kolkata = liability(&fixture.merchant, "?tz=Asia/Kolkata").await;
    assert!(
        text(&kolkata["from"]).ends_with("18:30:00Z"),
        "{}",
        kolkata["from"]
    );
    for (query, needle) in [
        ("?bucket=year", "bucket"),
        ("?tz=Mars/Base", "time zone"),
        ("?tz=Europe%2FParis%27", "tz"),
        (
            "?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "before",
        ),
        ("?from=2000-01-01T00:00:00Z&bucket=day", "buckets"),
        ("?from=yesterday", "from"),
        ("?group=day", "group"),
    ] {
        let message = fixture
            .merchant
            .get(&format!("/api/v1/reports/liability{query}"))
            .await
            .error(400, 40001);
        assert!(message.contains(needle), "{query}: {message}");
    }
    fixture.app.stop().await.expect("stop");
}

#[tokio::test]
async fn accounts_are_listed_by_uid_or_top_balance_with_a_prefix_and_pages() {
    let fixture = rest_fixture("accounts-shop").await;
    for (uid, points) in [
        ("bob", 30),
        ("alice", 50),
        ("al", 50),
        ("alex", 10),
        ("zed", 70),
        ("al\u{00e9}", 5),
    ] {
        earn(&fixture.merchant, uid, points).await;
    }
    let uids = |data: &Value| -> Vec<String> {
        page_items(data)
            .iter()
            .map(|item| text(&item["uid"]).to_owned())
            .collect()
    };
    let all = fixture
        .merchant
        .get("/api/v1/points/accounts")
        .await
        .ok(200);
    assert_eq!(
        uids(&all),
        ["al", "alex", "alice", "al\u{00e9}", "bob", "zed"]
    );
    let first = &page_items(&all)[0];
    assert_eq!(int(&first["balance"]), 50);
    assert_eq!(int(&first["held"]), 0);
    assert_eq!(int(&first["available"]), 50);
    assert!(first["updated_at"].is_string());

    let prefixed = fixture
        .merchant
        .get("/api/v1/points/accounts?uid_prefix=al")
        .await
        .ok(200);
    assert_eq!(uids(&prefixed), ["al", "alex", "alice", "al\u{00e9}"]);
    let prefixed = fixture
        .merchant
        .get("/api/v1/points/accounts?uid_prefix=ali")
        .await
        .ok(200);
    assert_eq!(uids(&prefixed), ["alice"]);

    // Top holders, two per page: ties by uid, and every account exactly once across the pages.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(token) => {
                format!("/api/v1/points/accounts?order=balance_desc&page_size=2&page_token={token}")
            }
            None => "/api/v1/points/accounts?order=balance_desc&page_size=2".to_owned(),
        };
        let page = fixture.merchant.get(&path).await.ok(200);
        seen.extend(uids(&page));
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["zed", "al", "alice", "bob", "alex", "al\u{00e9}"]);

    // A token of one order is refused by the other; bad inputs are 400.
    let by_uid = fixture
        .merchant
        .get("/api/v1/points/accounts?page_size=1")
        .await
        .ok(200);
    let token = text(&by_uid["next_page_token"]).to_owned();
    for query in [
        format!("?order=balance_desc&page_token={token}"),
        "?order=richest".to_owned(),
        "?page_token=zz".to_owned(),
        "?page_size=0".to_owned(),
        format!("?uid_prefix={}", "x".repeat(129)),
        "?uid_prefix=%01".to_owned(),
    ] {
        fixture
            .merchant
            .get(&format!("/api/v1/points/accounts{query}"))
            .await
            .error(400, 40001);
    }
    // The platform has no accounts: the admin must act for a merchant.
    fixture
        .admin
        .get("/api/v1/points/accounts")
        .await
        .error(403, 40301);
    let acting = fixture
        .admin
        .acting_for(&fixture.merchant_id)
        .get("/api/v1/points/accounts?uid_prefix=z")
        .await
        .ok(200);
    assert_eq!(uids(&acting), ["zed"]);
    fixture.app.stop().await.expect("stop");
}
