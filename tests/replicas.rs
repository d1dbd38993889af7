//! Several replicas, as deployed: two `points` server processes on one database (started together, so their
//! migrations and bootstrap race), and the REST gateway over both (`POINTS_GATEWAY_GRPC_URL` as a list; the same
//! `points_gateway::serve` the `points-gateway` binary runs). One server is killed with SIGKILL under load: the
//! gateway keeps serving, no earn is lost or applied twice, and the killed server, restarted, takes calls again.
//! Also: `points admin make-key`, `points healthcheck`, the server's own `/metrics` (`POINTS_METRICS_ADDR`) and the
//! bounded retry of the first database connect.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

const POINTS: &str = env!("CARGO_BIN_EXE_points");
const SECRET: &str = "replica-test-key-hash-secret-0123456789abcdef";
const GATEWAY_TOKEN: &str = "replica-test-gateway-token-0123456789abcdef0123";
const WORKERS: usize = 12;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

async fn admin_postgres() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        "host=127.0.0.1 user=postgres dbname=postgres",
        tokio_postgres::NoTls,
    )
    .await
    .expect("PostgreSQL on 127.0.0.1:5432");
    tokio::spawn(connection);
    client
}

/// One server process: its ports and the environment it was started with (to start it again).
struct Server {
    grpc: SocketAddr,
    metrics: SocketAddr,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Server {
    fn new(database_url: &str, admin_key: &str) -> Server {
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let env = [
            ("DATABASE_URL", database_url),
            ("POINTS_GRPC_ADDR", &grpc.to_string()),
            ("POINTS_HTTP_ADDR", "off"),
            ("POINTS_METRICS_ADDR", &metrics.to_string()),
            ("POINTS_KEY_HASH_SECRET", SECRET),
            ("POINTS_BOOTSTRAP_ADMIN_KEY", admin_key),
            ("POINTS_GATEWAY_TOKEN", GATEWAY_TOKEN),
            ("POINTS_LOG_FORMAT", "json"),
            ("RUST_LOG", "warn"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
        Server {
            grpc,
            metrics,
            env,
            child: None,
        }
    }

    fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.env.retain(|(existing, _)| existing != name);
        if let Some(value) = value {
            self.env.push((name.to_owned(), value.to_owned()));
        }
    }

    fn start(&mut self) {
        let child = Command::new(POINTS)
            .arg("serve")
            .env_clear()
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start points");
        self.child = Some(child);
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("SIGKILL");
        }
    }

    /// `points healthcheck` against this server: true when it exits 0.
    async fn healthcheck(&self) -> bool {
        Command::new(POINTS)
            .args(["healthcheck", "--timeout-ms", "1000"])
            .env_clear()
            .env("POINTS_GRPC_ADDR", self.grpc.to_string())
            .env("RUST_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("run points healthcheck")
            .success()
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.healthcheck().await {
            assert!(
                Instant::now() < deadline,
                "{} never became healthy",
                self.grpc
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `grpc_requests_total` of the earn method, from the server's own `/metrics`.
    async fn earns_served(&self, http: &reqwest::Client) -> f64 {
        let text = http
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
            .expect("server /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|line| line.starts_with("grpc_requests_total") && line.contains("Earn"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: HashMap<String, u64>,
    latencies_us: Vec<u64>,
    /// uid -> points the gateway said were applied.
    applied: HashMap<String, i64>,
}

/// Earns through the gateway from `WORKERS` workers until `stop` (a call in flight then finishes, so every applied
/// earn is counted); every call has its own idempotency key.
async fn load(
    http: reqwest::Client,
    base: String,
    key: String,
    phase: &'static str,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (http, base, key, stop) = (http.clone(), base.clone(), key.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for call in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let uid = format!("{phase}-{worker}-{}", call % 10);
                let body = json!({"uid": uid, "points": 1 + (call % 7) as i64,
                    "idempotency_key": format!("{phase}-{worker}-{call}")});
                let began = Instant::now();
                let response = http
                    .post(format!("{base}/api/v1/points/earn"))
                    .header("x-api-key", &key)
                    .json(&body)
                    .send()
                    .await;
                tally.latencies_us.push(began.elapsed().as_micros() as u64);
                let outcome = match response {
                    Ok(response) if response.status().is_success() => {
                        let value: Value = response.json().await.expect("earn envelope");
                        Ok(value["data"]["entry"]["delta"].as_i64().expect("delta"))
                    }
                    Ok(response) => Err(format!("http {}", response.status().as_u16())),
                    Err(error) => Err(format!("transport: {error}")),
                };
                match outcome {
                    Ok(delta) => {
                        tally.ok += 1;
                        *tally.applied.entry(uid).or_default() += delta;
                    }
                    Err(error) => *tally.failed.entry(error).or_default() += 1,
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.await.expect("worker");
        total.ok += tally.ok;
        total.latencies_us.extend(tally.latencies_us);
        for (error, count) in tally.failed {
            *total.failed.entry(error).or_default() += count;
        }
        for (uid, delta) in tally.applied {
            *total.applied.entry(uid).or_default() += delta;
        }
    }
    total
}

fn percentile_ms(latencies_us: &mut [u64], quantile: f64) -> f64 {
    latencies_us.sort_unstable();
    let index = ((latencies_us.len() as f64 - 1.0) * quantile).round() as usize;
    latencies_us.get(index).copied().unwrap_or(0) as f64 / 1000.0
}

/// Runs the load for `duration`, doing `during` after `after`.
async fn load_for(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    phase: &'static str,
    duration: Duration,
    during: impl std::future::Future<Output = ()>,
) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(
        http.clone(),
        base.to_owned(),
        key.to_owned(),
        phase,
        stop.clone(),
    ));
    let started = Instant::now();
    during.await;
    tokio::time::sleep(duration.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = running.await.expect("load");
    let seconds = duration.as_secs_f64();
    println!(
        "{phase}: calls={} ok={} failed={:?} throughput_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        tally.ok + tally.failed.values().sum::<u64>(),
        tally.ok,
        tally.failed,
        tally.ok as f64 / seconds,
        percentile_ms(&mut tally.latencies_us, 0.50),
        percentile_ms(&mut tally.latencies_us, 0.99),
        percentile_ms(&mut tally.latencies_us, 1.0),
    );
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_keeps_serving_when_a_replica_is_killed_under_load() {
    let database = format!("points_test_{}", uuid::Uuid::new_v4().simple());
    let database_url = format!("postgres://postgres@127.0.0.1:5432/{database}");

    // The bootstrap admin key, made offline.
    let made = std::process::Command::new(POINTS)
        .args(["admin", "make-key"])
        .env_clear()
        .env("POINTS_KEY_ENVIRONMENT", "test")
        .env("RUST_LOG", "off")
        .output()
        .expect("points admin make-key");
    assert!(made.status.success());
    let admin_key = String::from_utf8(made.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    points::domain::api_key::ApiKeyPlaintext::parse(&admin_key).expect("a well-formed key");
    assert!(admin_key.starts_with("lp_test_"), "{admin_key}");

    let mut a = Server::new(&database_url, &admin_key);
    let mut b = Server::new(&database_url, &admin_key);
    a.start();
    b.start();
    a.wait_healthy().await;
    b.wait_healthy().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let mut config =
        points_gateway::GatewayConfig::new(format!("http://{},http://{}", a.grpc, b.grpc));
    config.gateway_token = Some(GATEWAY_TOKEN.to_owned());
    let stop_gateway = Arc::new(tokio::sync::Notify::new());
    let gateway = {
        let stop = stop_gateway.clone();
        tokio::spawn(points_gateway::serve(listener, config, async move {
            stop.notified().await;
        }))
    };
    let http = reqwest::Client::new();

    let registered: Value = http
        .post(format!("{base}/api/v1/merchants"))
        .header("x-api-key", &admin_key)
        .json(&json!({"slug": "replicas", "name": "Replicas"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("envelope");
    let key = registered["data"]["api_key"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key in {registered}"))
        .to_owned();

    let both = load_for(
        &http,
        &base,
        &key,
        "both-up",
        Duration::from_secs(2),
        async {},
    )
    .await;
    let (a_before, b_before) = (a.earns_served(&http).await, b.earns_served(&http).await);
    println!("earns served while both were up: a={a_before} b={b_before}");
    assert!(
        a_before > 0.0 && b_before > 0.0,
        "the gateway balances over both"
    );

    let killed = load_for(
        &http,
        &base,
        &key,
        "a-killed",
        Duration::from_secs(4),
        async {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            a.kill().await;
            println!("a killed (SIGKILL) under load");
        },
    )
    .await;
    assert!(
        !a.healthcheck().await,
        "points healthcheck fails for a killed server"
    );
    assert!(b.healthcheck().await);
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200, "the gateway is ready with one backend");

    a.start();
    a.wait_healthy().await;
    // The gateway's probe notices within PROBE_INTERVAL.
    tokio::time::sleep(points_gateway::backend::PROBE_INTERVAL * 3).await;
    let a_restarted = a.earns_served(&http).await;
    let back = load_for(
        &http,
        &base,
        &key,
        "a-restarted",
        Duration::from_secs(2),
        async {},
    )
    .await;
    let a_after = a.earns_served(&http).await;
    println!("earns served by the restarted a: {}", a_after - a_restarted);
    assert!(
        a_after > a_restarted,
        "the restarted server takes calls again"
    );

    let gateway_metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("gateway metrics")
        .text()
        .await
        .expect("text");
    for line in gateway_metrics
        .lines()
        .filter(|line| line.starts_with("gateway_backend_"))
    {
        println!("gateway: {line}");
    }

    // Nothing failed, and every balance is exactly what the gateway said was applied: no earn lost, none twice.
    for tally in [&both, &killed, &back] {
        assert!(tally.ok > 0);
        assert!(tally.failed.is_empty(), "failed calls: {:?}", tally.failed);
    }
    let mut checked = 0;
    for tally in [&both, &killed, &back] {
        for (uid, applied) in &tally.applied {
            let account: Value = http
                .get(format!("{base}/api/v1/points/accounts/{uid}"))
                .header("x-api-key", &key)
                .send()
                .await
                .expect("account")
                .json()
                .await
                .expect("envelope");
            assert_eq!(account["data"]["balance"].as_i64(), Some(*applied), "{uid}");
            checked += 1;
        }
    }
    println!("balances checked: {checked} uids, all equal to the points applied");

    // The gateway's graceful shutdown waits for open connections: close the client's idle keep-alive ones first.
    drop(http);
    stop_gateway.notify_waiters();
    gateway.await.expect("gateway task").expect("gateway");
    a.kill().await;
    b.kill().await;
    drop_database(&database).await;
}

async fn drop_database(database: &str) {
    admin_postgres()
        .await
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .await
        .expect("drop the test database");
}

/// `POINTS_KEY_HASH_SECRET` rotated with `POINTS_KEY_HASH_SECRET_PREVIOUS`: during the transition every key works and
/// is re-hashed at its first use; afterwards the keys used during the transition still work, the others do not.
#[tokio::test]
async fn the_key_hash_secret_rotates_without_locking_used_keys_out() {
    const NEW_SECRET: &str = "rotated-key-hash-secret-fedcba9876543210fedcba";
    let database = format!("points_test_{}", uuid::Uuid::new_v4().simple());
    let admin_key =
        points::domain::api_key::ApiKeyPlaintext::generate(points::config::KeyEnvironment::Live)
            .expose()
            .to_owned();
    let mut server = Server::new(
        &format!("postgres://postgres@127.0.0.1:5432/{database}"),
        &admin_key,
    );
    let http_addr = format!("127.0.0.1:{}", free_port());
    server.set_env("POINTS_HTTP_ADDR", Some(&http_addr));
    let base = format!("http://{http_addr}");
    let http = reqwest::Client::new();
    let me = |key: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}/api/v1/me"))
                .header("x-api-key", key)
                .send()
                .await
                .expect("GET /me")
                .status()
                .as_u16()
        }
    };
    server.start();
    server.wait_healthy().await;
    let mut keys = Vec::new();
    for slug in ["used-in-transition", "idle-in-transition"] {
        let registered: Value = http
            .post(format!("{base}/api/v1/merchants"))
            .header("x-api-key", &admin_key)
            .json(&json!({"slug": slug, "name": slug}))
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("envelope");
        keys.push(
            registered["data"]["api_key"]["key"]
                .as_str()
                .expect("key")
                .to_owned(),
        );
    }
    server.kill().await;

    // Step 1: the new secret, the old one as previous.
    server.set_env("POINTS_KEY_HASH_SECRET", Some(NEW_SECRET));
    server.set_env("POINTS_KEY_HASH_SECRET_PREVIOUS", Some(SECRET));
    server.start();
    server.wait_healthy().await;
    assert_eq!(
        me(keys[0].clone()).await,
        200,
        "a key works during the transition"
    );
    assert_eq!(me(admin_key.clone()).await, 200);
    server.kill().await;

    // Step 2: the previous secret removed.
    server.set_env("POINTS_KEY_HASH_SECRET_PREVIOUS", None);
    server.start();
    server.wait_healthy().await;
    assert_eq!(
        me(keys[0].clone()).await,
        200,
        "used during the transition: re-hashed"
    );
    assert_eq!(
        me(admin_key.clone()).await,
        200,
        "the bootstrap key is installed again"
    );
    assert_eq!(
        me(keys[1].clone()).await,
        401,
        "never used during the transition"
    );
    server.kill().await;
    drop_database(&database).await;
}

#[tokio::test]
async fn the_first_database_connect_is_retried_then_given_up() {
    // Nothing listens on this port: the server retries with backoff for POINTS_DB_STARTUP_RETRY_MS, then exits
    // with an error that says so.
    let port = free_port();
    let started = Instant::now();
    let output = Command::new(POINTS)
        .arg("migrate")
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/points"),
        )
        .env("POINTS_DB_STARTUP_RETRY_MS", "1500")
        .env("POINTS_DB_CONNECT_TIMEOUT_MS", "500")
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("run points migrate");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot reach the database after") && !stderr.contains("after 1 attempt"),
        "{stderr}"
    );
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
}
