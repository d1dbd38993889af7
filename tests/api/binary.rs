//! The README run command, as a newcomer runs it: the real binary over a database that does not exist yet.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
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
