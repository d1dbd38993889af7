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

/// A flood of unauthenticated calls from one address adds a bounded number of platform audit rows — at most
/// `RECORDED_PER_MINUTE` (10) individual records plus one summary per summary interval — while every refusal is
/// still accounted for, and an authenticated client keeps being served meanwhile.
async fn platform_rows(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM public.platform_audit_records", &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn an_unauthenticated_flood_adds_a_bounded_number_of_audit_rows_and_others_keep_working() {
    let _heavy = crate::helpers::heavy_test().await;
    const FLOOD: usize = 20_000;
    const WORKERS: usize = 32;
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_REFUSAL_SUMMARY_INTERVAL_MS".into(), "1000".into());
    })
    .await;
    let (_, key) = app.register_merchant("flooded-shop").await;
    // The legitimate client is known (cached) before the flood starts.
    app.points(app.caller(&key))
        .earn(earn_request("steady", 1, &idem()))
        .await
        .expect("earn before the flood");
    let db = app.db().await;
    // The registration's platform records were written with it (admin operations are audited in their
    // transaction), so the count is settled already.
    let before = platform_rows(&db).await;
    let started = std::time::Instant::now();

    let attackers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let mut client = app.merchants(app.caller(&if worker % 2 == 0 {
                "not-a-key".to_owned()
            } else {
                points::domain::api_key::ApiKeyPlaintext::generate(
                    points::config::KeyEnvironment::Live,
                )
                .expose()
                .to_owned()
            }));
            tokio::spawn(async move {
                let mut refused = 0;
                for _ in 0..FLOOD / WORKERS {
                    let status = client
                        .get_me(points::pb::GetMeRequest {})
                        .await
                        .expect_err("never authenticated");
                    assert!(
                        matches!(
                            status.code(),
                            Code::Unauthenticated | Code::ResourceExhausted
                        ),
                        "{status:?}"
                    );
                    refused += 1;
                }
                refused
            })
        })
        .collect();
    let mut served = 0;
    while attackers.iter().any(|attacker| !attacker.is_finished()) {
        app.points(app.caller(&key))
            .earn(earn_request("steady", 1, &idem()))
            .await
            .expect("an authenticated client is served during the flood");
        served += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut refused = 0;
    for attacker in attackers {
        refused += attacker.await.expect("attacker");
    }
    assert_eq!(refused, FLOOD);
    assert!(served > 0);
    let flood_seconds = started.elapsed().as_secs() + 2;

    // Wait for the last summary, then account for every refusal.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM public.platform_audit_records WHERE method <> $1 AND outcome_code <> 0 \
                         AND occurred_at >= now() - interval '10 minutes'), \
                        (SELECT coalesce(sum(points), 0)::bigint FROM public.platform_audit_records WHERE method = $1)",
                &[&points::app::REFUSAL_SUMMARY_METHOD],
            )
            .await
            .expect("accounting");
        let (individual, summarised): (i64, i64) = (row.get(0), row.get(1));
        if individual + summarised == FLOOD as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refusals unaccounted for: {individual} recorded + {summarised} summarised != {FLOOD}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let added = platform_rows(&db).await - before;
    // One address: at most 10 records and 1 summary per interval (1 s here, a minute by default).
    let bound = (flood_seconds as i64 + 3) * 11;
    assert!(
        added <= bound,
        "{FLOOD} refused calls added {added} platform audit rows (bound {bound})"
    );
    println!(
        "flood of {FLOOD} refused calls in {flood_seconds} s added {added} platform audit rows; {served} earns served meanwhile"
    );
    app.stop().await.expect("stop");
}

/// 2,000 connections that never speak are closed by the gRPC listener within its idle timeout, while a real client
/// is served meanwhile.
#[tokio::test]
async fn two_thousand_idle_grpc_connections_are_closed_and_clients_are_served_meanwhile() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_REQUEST_TIMEOUT_MS".into(), "1000".into());
        settings.insert("POINTS_GRPC_IDLE_TIMEOUT_MS".into(), "2000".into());
    })
    .await;
    let (_, key) = app.register_merchant("idle-shop").await;
    let started = std::time::Instant::now();
    let mut idle = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        idle.push(
            tokio::net::TcpStream::connect(app.grpc_addr)
                .await
                .expect("connect"),
        );
    }
    app.points(app.caller(&key))
        .earn(earn_request("served", 1, &idem()))
        .await
        .expect("a client is served while 2,000 connections idle");
    let mut closed = 0;
    for stream in &mut idle {
        // The server's HTTP/2 preface may arrive first; then the close.
        let mut buffer = [0u8; 256];
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buffer))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
    }
    assert_eq!(closed, 2_000, "idle connections left open");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "closing took {:?}",
        started.elapsed()
    );
    app.points(app.caller(&key))
        .earn(earn_request("served", 1, &idem()))
        .await
        .expect("served after the idle connections are gone");
    app.stop().await.expect("stop");
}

/// Connections that trickle the HTTP/2 preface a byte at a time stay out of the idle timeout, so the gRPC listener
/// closes them at its header-read timeout, while a real client is served meanwhile.
#[tokio::test]
async fn grpc_connections_trickling_their_preface_are_closed_within_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_GRPC_IDLE_TIMEOUT_MS".into(), "60000".into());
        settings.insert("POINTS_GRPC_HEADER_READ_TIMEOUT_MS".into(), "1000".into());
    })
    .await;
    let (_, key) = app.register_merchant("slow-shop").await;
    let started = std::time::Instant::now();
    let mut slow = Vec::new();
    for _ in 0..50 {
        let address = app.grpc_addr;
        slow.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            // 24 bytes at 200 ms each would take 4.8 s.
            for byte in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
                if stream.write_all(&[*byte]).await.is_err() {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            None
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.points(app.caller(&key))
        .earn(earn_request("served", 1, &idem()))
        .await
        .expect("a client is served while others trickle");
    for client in slow {
        let closed_after = client
            .await
            .expect("client task")
            .expect("a trickling connection was allowed to finish its preface");
        assert!(
            closed_after < std::time::Duration::from_secs(3),
            "closed only after {closed_after:?}"
        );
    }
    app.points(app.caller(&key))
        .earn(earn_request("served", 1, &idem()))
        .await
        .expect("served afterwards");
    app.stop().await.expect("stop");
}

/// The REST gateway's own refusals (malformed JSON, unknown routes, 405) are audited through the same budget: the
/// first of an address's refusals get records of their own (`REST <method> <route template>`, the envelope's
/// reason), the rest are counted into its summary, and every one is accounted for.
#[tokio::test]
async fn the_gateways_own_refusals_are_audited_within_the_address_budget() {
    let _heavy = crate::helpers::heavy_test().await;
    const FLOOD: usize = 3_200;
    const WORKERS: usize = 16;
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_REFUSAL_SUMMARY_INTERVAL_MS".into(), "1000".into());
    })
    .await;
    let base = format!("http://{}", app.http_addr.expect("REST gateway"));
    let db = app.db().await;
    let before = platform_rows(&db).await;
    let started = std::time::Instant::now();
    let http = reqwest::Client::new();
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                for call in 0..FLOOD / WORKERS {
                    // Malformed JSON, an unknown route, a wrong method: each has its one answer.
                    let (response, expected) = match (worker + call) % 3 {
                        0 => (
                            http.post(format!("{base}/api/v1/points/earn"))
                                .header("content-type", "application/json")
                                .header("x-api-key", "not-a-key")
                                .body("{\"uid\": ")
                                .send()
                                .await,
                            400,
                        ),
                        1 => (
                            http.get(format!("{base}/api/v1/no-such-route/{call}"))
                                .send()
                                .await,
                            404,
                        ),
                        _ => (
                            http.delete(format!("{base}/api/v1/points/earn"))
                                .send()
                                .await,
                            405,
                        ),
                    };
                    let status = response.expect("response").status();
                    assert_eq!(status.as_u16(), expected, "{status}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let flood_seconds = started.elapsed().as_secs() + 2;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM public.platform_audit_records WHERE method LIKE 'REST %'), \
                        (SELECT coalesce(sum(points), 0)::bigint FROM public.platform_audit_records WHERE method = $1)",
                &[&points::app::REFUSAL_SUMMARY_METHOD],
            )
            .await
            .expect("accounting");
        let (individual, summarised): (i64, i64) = (row.get(0), row.get(1));
        if individual + summarised == FLOOD as i64 {
            assert!(
                individual >= 10,
                "the first refusals have records of their own"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gateway refusals unaccounted for: {individual} recorded + {summarised} summarised != {FLOOD}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let recorded = db
        .query(
            "SELECT DISTINCT method, outcome, transport FROM public.platform_audit_records WHERE method LIKE 'REST %' \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("records");
    let recorded: Vec<(String, String, String)> = recorded
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    for (method, outcome, transport) in &recorded {
        assert_eq!(transport, "rest");
        assert!(
            [
                "REST POST /api/v1/points/earn",
                "REST GET unmatched",
                "REST DELETE /api/v1/points/earn",
            ]
            .contains(&method.as_str()),
            "{method}"
        );
        let expected = if method == "REST GET unmatched" {
            "NOT_FOUND"
        } else {
            "INVALID_ARGUMENT"
        };
        assert_eq!(outcome, expected, "{method}");
    }
    let added = platform_rows(&db).await - before;
    let bound = (flood_seconds as i64 + 3) * 11;
    assert!(
        added <= bound,
        "{FLOOD} gateway refusals added {added} platform audit rows (bound {bound})"
    );
    println!("{FLOOD} gateway refusals in {flood_seconds} s added {added} platform audit rows");
    app.stop().await.expect("stop");
}
