//! The README run command, as a newcomer runs it: the real binary over a database that does not exist yet; and the
//! standalone gateway binary (`points-gateway`) in front of a running server, as the compose deployment runs it.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use points::pb;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn the_binary_creates_the_database_prints_the_admin_key_once_serves_and_stops_cleanly_on_sigterm()
 {
    let database = format!("points_test_bin_{}", uuid::Uuid::new_v4().simple());
    let (grpc_port, http_port) = (free_port(), free_port());
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_points"))
            .env(
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5432/{database}"),
            )
            .env("POINTS_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
            .env("POINTS_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the binary")
    };
    let mut child = start();
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let admin_key = loop {
        let line = receiver
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("admin key printed");
        if let Some(key) = line
            .split_whitespace()
            .find(|word| word.starts_with("lp_live_"))
        {
            break key.to_owned();
        }
    };
    let channel = loop {
        match tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc_port}"))
            .expect("uri")
            .connect()
            .await
        {
            Ok(channel) => break channel,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(error) => panic!("gRPC never came up: {error}"),
        }
    };
    let services = crate::helpers::list_services_by_reflection(channel.clone()).await;
    assert!(
        services.iter().any(|s| s == "points.v1.PointsService"),
        "{services:?}"
    );
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "points.v1.PointsService".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        health.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let mut request = tonic::Request::new(pb::GetMeRequest {});
    request
        .metadata_mut()
        .insert("x-api-key", admin_key.parse().expect("ascii"));
    pb::merchant_service_client::MerchantServiceClient::new(channel)
        .get_me(request)
        .await
        .expect("the printed key works");
    let healthz = reqwest::get(format!("http://127.0.0.1:{http_port}/healthz"))
        .await
        .expect("REST up");
    assert_eq!(healthz.status(), 200);

    let kill = |pid: u32| {
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill")
    };
    assert!(kill(child.id()).success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "graceful SIGTERM exits 0");

    // A second start over the same database prints no new key.
    let mut again = start();
    let stdout = again.stdout.take().expect("stdout");
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let up_deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://127.0.0.1:{http_port}/healthz"))
        .await
        .is_err()
    {
        assert!(Instant::now() < up_deadline, "second start never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(kill(again.id()).success());
    assert_eq!(again.wait().expect("wait").code(), Some(0));
    let printed = lines.join().expect("lines");
    assert!(
        !printed.iter().any(|line| line.contains("lp_live_")),
        "the admin key is printed only on first start"
    );
}

/// The `points-gateway` binary of this build's profile. It belongs to another package of the workspace, so cargo
/// builds it for these tests only when asked: this asks (a no-op when it is up to date).
fn gateway_binary() -> PathBuf {
    let points_binary = Path::new(env!("CARGO_BIN_EXE_points"));
    let profile_dir = points_binary.parent().expect("the profile folder");
    let target_dir = profile_dir.parent().expect("the target folder");
    let mut build = Command::new(env!("CARGO"));
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "points-gateway",
            "--bin",
            "points-gateway",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p points-gateway: {status}");
    profile_dir.join("points-gateway")
}

/// A child process that is killed if the test ends before it is stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_standalone_gateway_binary_forwards_an_earn_to_a_running_server_and_stops_on_sigterm() {
    let app = crate::helpers::spawn_app().await;
    let (merchant, key) = app.register_merchant("standalone-gateway").await;
    let http_port = free_port();
    let mut gateway = Running(
        Command::new(gateway_binary())
            .env(
                "POINTS_GATEWAY_GRPC_URL",
                format!("http://{}", app.grpc_addr),
            )
            .env("POINTS_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("POINTS_GATEWAY_TOKEN", crate::helpers::TEST_GATEWAY_TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start points-gateway"),
    );
    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::new();
    // Ready once it answers and reaches the server.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.as_ref().is_ok_and(|reply| reply.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never became ready: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = http
        .post(format!("{base}/api/v1/points/earn"))
        .header("x-api-key", &key)
        .header("x-request-id", "standalone-earn-1")
        .json(
            &serde_json::json!({"uid": "walk-in", "points": 5, "idempotency_key": "standalone-1"}),
        )
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(reply.status(), 201);
    let body: serde_json::Value = reply.json().await.expect("an envelope");
    assert_eq!(
        (body["code"].clone(), body["data"]["balance"].clone()),
        (serde_json::json!(0), serde_json::json!(5)),
        "{body}"
    );
    // The server holds it, and recorded it as a REST call: the gateway proved itself with the shared token.
    let account = app
        .points(app.caller(&key))
        .get_account(pb::GetAccountRequest {
            uid: "walk-in".into(),
        })
        .await
        .expect("account")
        .into_inner();
    assert_eq!(account.balance, 5);
    let transport: String = app
        .db()
        .await
        .query_one(
            &format!(
                "SELECT transport FROM {}.audit_records WHERE request_id = 'standalone-earn-1'",
                crate::helpers::schema_of(&merchant.merchant_id)
            ),
            &[],
        )
        .await
        .expect("the earn's audit record")
        .get(0);
    assert_eq!(transport, "rest");

    let terminated = Command::new("kill")
        .args(["-TERM", &gateway.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(terminated.success());
    let status = gateway.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "graceful SIGTERM exits 0");
    app.stop().await.expect("stop");
}
