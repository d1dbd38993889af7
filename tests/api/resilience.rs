//! Resilience (SPEC §14): the real binary killed with SIGKILL under load loses nothing it acknowledged, and a
//! PostgreSQL server stopped for ten seconds under load gives only `UNAVAILABLE`, turns health and readiness
//! around within their bounds both ways, and needs no restart of the service.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use points::pb::{
    self, audit_service_client::AuditServiceClient, merchant_service_client::MerchantServiceClient,
    points_service_client::PointsServiceClient,
};
use tonic::{Code, metadata::MetadataValue, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{
    TEST_KEY_HASH_SECRET, assert_ledger_invariants, earn_request, idem, spawn_on,
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn with_key<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", MetadataValue::try_from(key).expect("ascii"));
    request
}

/// The real binary on `database`, printing the admin key (on the first start) to the returned receiver.
fn start_binary(
    database: &str,
    grpc_port: u16,
    http_port: u16,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_points"))
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{database}"),
        )
        .env("POINTS_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("POINTS_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("POINTS_KEY_HASH_SECRET", TEST_KEY_HASH_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the binary");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    (child, receiver)
}

async fn connect(grpc_port: u16) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let endpoint = Channel::from_shared(format!("http://127.0.0.1:{grpc_port}")).expect("uri");
        if let Ok(channel) = endpoint.connect().await {
            let mut health = HealthClient::new(channel.clone());
            if health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
            {
                return channel;
            }
        }
        assert!(Instant::now() < deadline, "the binary never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Earns acknowledged in each round before the SIGKILL lands.
const ACKNOWLEDGED_PER_ROUND: usize = 200;

/// Each idempotency key the load sent: its request, and the entry id if the server acknowledged it.
type Sent = Arc<Mutex<HashMap<String, (pb::EarnRequest, Option<String>)>>>;

#[tokio::test]
async fn kill_dash_nine_under_sixteen_client_load_three_times_loses_nothing_acknowledged() {
    let _heavy = crate::helpers::heavy_test().await;
    let database = format!("points_test_{}", uuid::Uuid::new_v4().simple());
    let (grpc_port, http_port) = (free_port(), free_port());
    let (mut child, lines) = start_binary(&database, grpc_port, http_port);
    let admin_key = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("admin key printed");
        if let Some(key) = line.split_whitespace().find(|w| w.starts_with("lp_live_")) {
            break key.to_owned();
        }
    };
    let channel = connect(grpc_port).await;
    let registered = MerchantServiceClient::new(channel.clone())
        .register_merchant(with_key(
            &admin_key,
            pb::RegisterMerchantRequest {
                slug: "kill-shop".into(),
                name: "Kill shop".into(),
            },
        ))
        .await
        .expect("register")
        .into_inner();
    let merchant_id = registered.merchant.expect("merchant").merchant_id;
    let key = registered.api_key.and_then(|k| k.key).expect("key");
    let sent: Sent = Arc::default();
    for round in 0..3 {
        let channel = connect(grpc_port).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut workers = Vec::new();
        for worker in 0..16 {
            let (channel, key, sent, stop) =
                (channel.clone(), key.clone(), sent.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                let mut client = PointsServiceClient::new(channel);
                let mut call = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let request = earn_request(
                        &format!("u{round}-{worker}-{}", call % 5),
                        1 + call % 7,
                        &idem(),
                    );
                    call += 1;
                    let idempotency_key = request.idempotency_key.clone();
                    sent.lock()
                        .unwrap()
                        .insert(idempotency_key.clone(), (request.clone(), None));
                    match client.earn(with_key(&key, request)).await {
                        Ok(response) => {
                            let entry_id = response.into_inner().entry.expect("entry").entry_id;
                            sent.lock()
                                .unwrap()
                                .get_mut(&idempotency_key)
                                .expect("sent")
                                .1 = Some(entry_id);
                        }
                        // Killed under it: unanswered.
                        Err(_) => break,
                    }
                }
            }));
        }
        // Killed mid-load: once this round has had a good number of earns acknowledged (not after a set time, so
        // a slow machine still kills under load and a fast one does not wait).
        let acknowledged = |sent: &Sent| {
            sent.lock()
                .unwrap()
                .values()
                .filter(|(_, id)| id.is_some())
                .count()
        };
        let target = acknowledged(&sent) + ACKNOWLEDGED_PER_ROUND;
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged(&sent) < target {
            assert!(Instant::now() < deadline, "the load is not acknowledged");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for worker in workers {
            let _ = worker.await;
        }
        let (acknowledged, unanswered) = {
            let sent = sent.lock().unwrap();
            let acknowledged = sent.values().filter(|(_, id)| id.is_some()).count();
            (acknowledged, sent.len() - acknowledged)
        };
        println!(
            "round {}: {acknowledged} acknowledged, {unanswered} unanswered so far",
            round + 1
        );
        (child, _) = start_binary(&database, grpc_port, http_port);
    }
    let channel = connect(grpc_port).await;
    let mut client = PointsServiceClient::new(channel.clone());
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let (mut replayed, mut retried) = (0, 0);
    for (request, acknowledged) in sent.values() {
        let response = client
            .earn(with_key(&key, request.clone()))
            .await
            .expect("a retry with the same key succeeds")
            .into_inner();
        let entry_id = response.entry.expect("entry").entry_id;
        match acknowledged {
            Some(acknowledged) => {
                assert!(response.replayed, "an acknowledged key replays");
                assert_eq!(&entry_id, acknowledged, "with the same entry");
                replayed += 1;
            }
            None => retried += 1,
        }
    }
    let db = {
        let (client, connection) = tokio_postgres::connect(
            &format!("postgres://postgres@127.0.0.1:5432/{database}"),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connect");
        tokio::spawn(connection);
        client
    };
    let schema = crate::helpers::schema_of(&merchant_id);
    let entries: i64 = db
        .query_one(&format!("SELECT count(*) FROM {schema}.entries"), &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        entries as usize,
        sent.len(),
        "one entry per key that succeeded"
    );
    assert_ledger_invariants(&db, &merchant_id).await;
    // Every audit record buffered before a kill may be lost, but what committed is a valid chain.
    let verified = AuditServiceClient::new(channel)
        .verify_audit_log(with_key(
            &key,
            pb::VerifyAuditLogRequest {
                full: true,
                ..Default::default()
            },
        ))
        .await
        .expect("verify")
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    println!(
        "after 3 kills: {replayed} acknowledged keys replayed with their entry, {retried} unanswered retried, {entries} entries; verify ok over {} records",
        verified.checked
    );
    child.kill().expect("stop");
    let _ = child.wait();
}

/// A private PostgreSQL server (initdb on a free port) that a test may stop and start.
struct PrivateCluster {
    directory: std::path::PathBuf,
    port: u16,
    as_postgres: bool,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PrivateCluster {
    fn command(&self, program: &str) -> Command {
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", &format!("{PG_BIN}/{program}")]);
            command
        } else {
            Command::new(format!("{PG_BIN}/{program}"))
        }
    }

    fn create() -> PrivateCluster {
        let directory =
            std::env::temp_dir().join(format!("points-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&directory).expect("cluster directory");
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&directory)
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let cluster = PrivateCluster {
            directory,
            port: free_port(),
            as_postgres,
        };
        let status = cluster
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(cluster.directory.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb");
        assert!(status.success(), "initdb failed");
        cluster.start();
        cluster
    }

    fn start(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.directory.display()
        );
        let status = self
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-l"])
            .arg(self.directory.join("log"))
            .arg("-D")
            .arg(self.directory.join("data"))
            .args(["-o", &options, "start"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl start");
        assert!(status.success(), "pg_ctl start failed");
    }

    fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .args(["-w", "-m", "fast", "-D"])
            .arg(self.directory.join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .status();
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_for_ten_seconds_under_load_gives_only_unavailable_and_recovers_at_once() {
    let _heavy = crate::helpers::heavy_test().await;
    let cluster = tokio::task::spawn_blocking(PrivateCluster::create)
        .await
        .expect("cluster");
    let mut settings = crate::helpers::base_settings("points_test_outage");
    settings.insert(
        "DATABASE_URL".into(),
        format!(
            "postgres://postgres@127.0.0.1:{}/points_test_outage",
            cluster.port
        ),
    );
    let app = spawn_on(settings, None).await;
    let (merchant, key) = app.register_merchant("stop-shop").await;
    let http = reqwest::Client::new();
    let http_addr = app.http_addr.expect("the gateway runs in process");

    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let errors: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let successes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let mut points = app.points(app.caller(&key));
        let (stopping, errors, successes) = (stopping.clone(), errors.clone(), successes.clone());
        workers.push(tokio::spawn(async move {
            let mut call = 0;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                call += 1;
                match points
                    .earn(earn_request(&format!("w{worker}-{}", call % 3), 1, &idem()))
                    .await
                {
                    Ok(_) => {
                        successes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(status) => {
                        *errors
                            .lock()
                            .unwrap()
                            .entry(format!("{:?}", status.code()))
                            .or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    // The load runs (some earns acknowledged) before the database stops.
    let deadline = Instant::now() + Duration::from_secs(30);
    while successes.load(std::sync::atomic::Ordering::Relaxed) < 20 {
        assert!(Instant::now() < deadline, "no load before the stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut health = HealthClient::new(app.channel.clone());
    tokio::task::block_in_place(|| cluster.stop());
    let stopped_at = Instant::now();
    // Health "" and /readyz turn as soon as the database is gone.
    let (mut not_serving, mut not_ready) = (None, None);
    while not_serving.is_none() || not_ready.is_none() {
        if not_serving.is_none()
            && health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok_and(|r| r.into_inner().status == ServingStatus::NotServing as i32)
        {
            not_serving = Some(stopped_at.elapsed());
        }
        if not_ready.is_none()
            && http
                .get(format!("http://{http_addr}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() != reqwest::StatusCode::OK)
        {
            not_ready = Some(stopped_at.elapsed());
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(5),
            "health or readiness never turned"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A REST call during the outage: 503 with envelope code 50301.
    let response = http
        .post(format!("http://{http_addr}/api/v1/points/earn"))
        .header("x-api-key", &key)
        .json(&serde_json::json!({"uid": "rest", "points": 1, "idempotency_key": idem()}))
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("an envelope");
    assert_eq!(body["code"], serde_json::json!(50301), "{status} {body}");
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(stopped_at.elapsed())).await;
    let outage = stopped_at.elapsed();
    tokio::task::block_in_place(|| cluster.start());
    let started_at = Instant::now();
    // Recovery: an earn succeeds, health serves again and /readyz is 200, each within a second of the return.
    let mut points = app.points(app.caller(&key));
    let (mut earned, mut serving, mut ready) = (None, None, None);
    while earned.is_none() || serving.is_none() || ready.is_none() {
        if earned.is_none() && points.earn(earn_request("after", 1, &idem())).await.is_ok() {
            earned = Some(started_at.elapsed());
        }
        if serving.is_none()
            && health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
        {
            serving = Some(started_at.elapsed());
        }
        if ready.is_none()
            && http
                .get(format!("http://{http_addr}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
        {
            ready = Some(started_at.elapsed());
        }
        assert!(
            started_at.elapsed() < Duration::from_secs(10),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let errors = errors.lock().unwrap().clone();
    println!(
        "PostgreSQL stopped for {outage:?}: health \"\" NOT_SERVING after {:?}, /readyz non-200 after {:?}; \
         after the start an earn succeeded after {:?}, SERVING after {:?}, /readyz 200 after {:?}; errors under load {errors:?}",
        not_serving.unwrap(),
        not_ready.unwrap(),
        earned.unwrap(),
        serving.unwrap(),
        ready.unwrap()
    );
    assert!(
        not_serving.unwrap() <= Duration::from_secs(1),
        "NOT_SERVING after {not_serving:?}"
    );
    assert!(
        not_ready.unwrap() <= Duration::from_millis(500),
        "/readyz turned after {not_ready:?}"
    );
    assert!(
        earned.unwrap() <= Duration::from_secs(1),
        "first earn after {earned:?}"
    );
    assert!(
        serving.unwrap() <= Duration::from_secs(1),
        "SERVING after {serving:?}"
    );
    assert!(
        errors
            .keys()
            .all(|code| code == &format!("{:?}", Code::Unavailable)),
        "only UNAVAILABLE during the outage: {errors:?}"
    );
    assert!(!app.handle.is_finished(), "the same process throughout");
    assert_ledger_invariants(&app.db().await, &merchant.merchant_id).await;
    app.stop().await.expect("stop");
    drop(cluster);
}
