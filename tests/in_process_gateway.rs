//! The REST gateway inside the `points` binary reaches the gRPC services without a network hop (issue 12): REST
//! calls of every kind are served while the gRPC listener accepts no connection at all. A binary of its own, with a
//! single test, because it reads the process-wide metrics (`connections_accepted_total{listener}`), which any other
//! test's gRPC client would move.

#[path = "api/helpers.rs"]
mod helpers;

use serde_json::{Value, json};

fn accepted(metrics: &str, listener: &str) -> u64 {
    let prefix = format!("connections_accepted_total{{listener=\"{listener}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |count| count.trim().parse().expect("a count"))
}

#[tokio::test]
async fn rest_calls_are_served_in_process_without_a_connection_to_the_grpc_listener() {
    let app = helpers::spawn_app().await;
    let base = format!("http://{}", app.http_addr.expect("the REST gateway runs"));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .expect("client");
    let call = |method: reqwest::Method, path: &str, key: &str, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{base}{path}"))
            .header("x-api-key", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("the gateway answers");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };

    let (status, registered) = call(
        reqwest::Method::POST,
        "/api/v1/merchants",
        &app.admin_key,
        Some(json!({"slug": "in-process-shop", "name": "In-process shop"})),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    let key = registered["data"]["api_key"]["key"]
        .as_str()
        .expect("the first key")
        .to_owned();
    for points in [5, 7] {
        let (status, earned) = call(
            reqwest::Method::POST,
            "/api/v1/points/earn",
            &key,
            Some(json!({"uid": "u-1", "points": points, "idempotency_key": uuid::Uuid::new_v4().to_string()})),
        )
        .await;
        assert_eq!(status, 201, "{earned}");
    }
    let (status, account) = call(
        reqwest::Method::GET,
        "/api/v1/points/accounts/u-1",
        &key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["data"]["balance"], 12);
    let (status, _) = call(
        reqwest::Method::GET,
        "/api/v1/audit-logs?page_size=5",
        &key,
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Health too (the gateway's readiness asks the server's gRPC health).
    let ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(accepted(&metrics, "rest") >= 1, "{metrics}");
    assert_eq!(
        accepted(&metrics, "grpc"),
        0,
        "the gateway connected to the gRPC listener"
    );
    app.stop().await.expect("a graceful stop");
}
