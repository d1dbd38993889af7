//! Load generator for the points API: drives earn (or a mixed earn/spend workload, or earns alternating with a
//! hold and its capture) over gRPC or REST against a running server and prints throughput, latency percentiles and
//! errors.
//!
//! ```text
//! cargo bench --bench loadgen -- --admin-key lp_live_... --concurrency 16 --duration-secs 10 --uids distinct
//! cargo bench --bench loadgen -- --api-key lp_live_... --workload mixed --uids hot --transport rest
//! ```
//! With `--admin-key` it registers a fresh merchant first (or `--merchants N` of them, the workers spread over them)
//! and uses that merchant's key. With `--verify`, after the run it reads back every uid it wrote and checks each
//! balance equals the sum of the points the server said it applied (and exits non-zero if one does not).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use points::pb::{
    self, merchant_service_client::MerchantServiceClient,
    points_service_client::PointsServiceClient,
};
use tonic::{metadata::MetadataValue, transport::Channel};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Workload {
    /// Only earn.
    Earn,
    /// Two earns for every spend.
    Mixed,
    /// An earn of 2, then a hold of 1 captured at once (one call: both requests), alternately.
    Holds,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Uids {
    /// Every worker writes its own uids (no contention).
    Distinct,
    /// Every call writes one hot uid (full serialization on its account row).
    Hot,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Transport {
    Grpc,
    Rest,
}

#[derive(Debug, Parser)]
#[command(about = "Load generator for the points platform")]
struct Args {
    /// gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    /// REST base URL (for --transport rest).
    #[arg(long, default_value = "http://127.0.0.1:8030")]
    rest: String,
    /// A merchant key with points:write.
    #[arg(long, env = "POINTS_API_KEY")]
    api_key: Option<String>,
    /// A platform admin key: registers a fresh merchant and uses its key.
    #[arg(long, env = "POINTS_ADMIN_KEY")]
    admin_key: Option<String>,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, value_enum, default_value_t = Workload::Earn)]
    workload: Workload,
    #[arg(long, value_enum, default_value_t = Uids::Distinct)]
    uids: Uids,
    #[arg(long, value_enum, default_value_t = Transport::Grpc)]
    transport: Transport,
    /// Stop after this many calls in total even if the duration has not passed.
    #[arg(long, default_value_t = 1_000_000)]
    calls_max: u64,
    /// Merchants sharing the load (with --admin-key): worker w writes for merchant w mod N.
    #[arg(long, default_value_t = 1)]
    merchants: usize,
    /// Seconds of the same load before the measured run, unmeasured, on other uids (warms connections, caches and
    /// the database's plans for every merchant).
    #[arg(long, default_value_t = 0)]
    warmup_secs: u64,
    /// After the run, read back every uid written and check its balance against the points applied.
    #[arg(long)]
    verify: bool,
    /// `cargo bench` passes `--bench`; accepted and ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

struct Report {
    histogram: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    calls: u64,
    /// (merchant, uid) -> the points the server said it applied.
    applied: HashMap<(usize, String), i64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (1..=1024).contains(&args.concurrency),
        "--concurrency must be 1..=1024"
    );
    anyhow::ensure!(
        (1..=3600).contains(&args.duration_secs),
        "--duration-secs must be 1..=3600"
    );
    anyhow::ensure!(args.warmup_secs <= 600, "--warmup-secs must be 0..=600");
    anyhow::ensure!(
        (1..=10_000).contains(&args.merchants),
        "--merchants must be 1..=10000"
    );
    let channel = Channel::from_shared(args.grpc.clone())?.connect().await?;
    let api_keys: Vec<String> = match (&args.api_key, &args.admin_key) {
        (Some(key), _) => {
            anyhow::ensure!(
                args.merchants == 1,
                "--merchants needs --admin-key (it registers them)"
            );
            vec![key.clone()]
        }
        (None, Some(admin)) => {
            let mut keys = Vec::with_capacity(args.merchants);
            for _ in 0..args.merchants {
                keys.push(register_merchant(channel.clone(), admin).await?);
            }
            keys
        }
        (None, None) => {
            anyhow::bail!("give --api-key (a merchant key) or --admin-key (to register a merchant)")
        }
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let args = Arc::new(args);
    if args.warmup_secs > 0 {
        // Unmeasured and unverified, on uids of its own: connections, caches and the database's plans warm up.
        let warmup_id = format!("warmup{}", uuid::Uuid::new_v4().simple());
        let deadline = Instant::now() + Duration::from_secs(args.warmup_secs);
        run_workers(&args, &channel, &http, &api_keys, &warmup_id, deadline).await?;
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let total = run_workers(&args, &channel, &http, &api_keys, &run_id, deadline).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let errors: u64 = total.errors.values().sum();
    println!(
        "transport={:?} workload={:?} uids={:?} concurrency={} merchants={} duration_s={:.1}",
        args.transport, args.workload, args.uids, args.concurrency, args.merchants, elapsed
    );
    println!(
        "calls={} throughput_per_s={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} errors={}",
        total.calls,
        total.calls as f64 / elapsed,
        total.histogram.value_at_quantile(0.50) as f64 / 1000.0,
        total.histogram.value_at_quantile(0.90) as f64 / 1000.0,
        total.histogram.value_at_quantile(0.99) as f64 / 1000.0,
        total.histogram.max() as f64 / 1000.0,
        errors
    );
    for (error, count) in &total.errors {
        println!("  error {error}: {count}");
    }
    if args.verify {
        let mismatches = verify(&channel, &api_keys, &total.applied).await?;
        println!(
            "verify: uids={} points_applied={} mismatches={}",
            total.applied.len(),
            total.applied.values().sum::<i64>(),
            mismatches.len()
        );
        for ((merchant, uid), (expected, actual)) in mismatches.iter().take(10) {
            println!(
                "  mismatch merchant#{merchant} uid={uid}: applied {expected}, balance {actual}"
            );
        }
        anyhow::ensure!(
            mismatches.is_empty(),
            "balances do not match what was applied"
        );
    }
    Ok(())
}

/// Runs `args.concurrency` workers until `deadline` (or the call budget) on uids named by `run_id`; their report.
async fn run_workers(
    args: &Arc<Args>,
    channel: &Channel,
    http: &reqwest::Client,
    api_keys: &[String],
    run_id: &str,
    deadline: Instant,
) -> anyhow::Result<Report> {
    let calls_per_worker = args.calls_max.div_ceil(args.concurrency as u64);
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let channel = channel.clone();
        let merchant = worker % api_keys.len();
        let api_key = api_keys[merchant].clone();
        let http = http.clone();
        let args = args.clone();
        let run_id = run_id.to_owned();
        workers.push(tokio::spawn(async move {
            let mut report = Report {
                histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
                errors: BTreeMap::new(),
                calls: 0,
                applied: HashMap::new(),
            };
            let mut client = PointsServiceClient::new(channel);
            let key_value: MetadataValue<_> = api_key.parse().expect("ascii key");
            let mut call = 0u64;
            while Instant::now() < deadline && call < calls_per_worker {
                // The holds workload holds on the uid its previous call earned on.
                let slot = match args.workload {
                    Workload::Holds => call / 2,
                    _ => call,
                };
                let uid = match args.uids {
                    Uids::Distinct => format!("load-{run_id}-{worker}-{}", slot % 100),
                    Uids::Hot => format!("load-{run_id}-hot"),
                };
                let idempotency_key = format!("{run_id}-{worker}-{call}");
                let spend = matches!(args.workload, Workload::Mixed) && call % 3 == 2;
                let hold = matches!(args.workload, Workload::Holds) && call % 2 == 1;
                let began = Instant::now();
                let outcome = match (args.transport, hold) {
                    (Transport::Grpc, true) => {
                        grpc_hold_capture(&mut client, &key_value, &uid, &idempotency_key).await
                    }
                    (Transport::Rest, true) => {
                        rest_hold_capture(&http, &args.rest, &api_key, &uid, &idempotency_key).await
                    }
                    (Transport::Grpc, false) => {
                        grpc_call(&mut client, &key_value, &uid, &idempotency_key, spend).await
                    }
                    (Transport::Rest, false) => {
                        rest_call(&http, &args.rest, &api_key, &uid, &idempotency_key, spend).await
                    }
                };
                let micros = began.elapsed().as_micros() as u64;
                report.histogram.record(micros.max(1)).ok();
                report.calls += 1;
                match outcome {
                    Ok(delta) => {
                        if args.verify {
                            *report.applied.entry((merchant, uid)).or_default() += delta;
                        }
                    }
                    Err(error) => *report.errors.entry(error).or_default() += 1,
                }
                call += 1;
            }
            report
        }));
    }
    let mut total = Report {
        histogram: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        errors: BTreeMap::new(),
        calls: 0,
        applied: HashMap::new(),
    };
    for worker in workers {
        let report = worker.await?;
        total.histogram.add(&report.histogram)?;
        total.calls += report.calls;
        for (error, count) in report.errors {
            *total.errors.entry(error).or_default() += count;
        }
        for (uid, delta) in report.applied {
            *total.applied.entry(uid).or_default() += delta;
        }
    }
    Ok(total)
}

type Mismatches = Vec<((usize, String), (i64, i64))>;

/// Reads every written uid's balance back (16 at a time) and lists those that differ from what was applied.
async fn verify(
    channel: &Channel,
    api_keys: &[String],
    applied: &HashMap<(usize, String), i64>,
) -> anyhow::Result<Mismatches> {
    let uids: Vec<_> = applied
        .iter()
        .map(|(at, delta)| (at.clone(), *delta))
        .collect();
    let mut mismatches = Vec::new();
    for chunk in uids.chunks(16) {
        let mut reads = Vec::new();
        for ((merchant, uid), expected) in chunk.iter().cloned() {
            let mut client = PointsServiceClient::new(channel.clone());
            let key: MetadataValue<_> = api_keys[merchant].parse()?;
            reads.push(tokio::spawn(async move {
                let mut request = tonic::Request::new(pb::GetAccountRequest { uid: uid.clone() });
                request.metadata_mut().insert("x-api-key", key);
                let balance = client
                    .get_account(request)
                    .await
                    .map(|r| r.into_inner().balance);
                ((merchant, uid), expected, balance)
            }));
        }
        for read in reads {
            let (at, expected, balance) = read.await?;
            let balance =
                balance.map_err(|status| anyhow::anyhow!("reading {at:?} back: {status:?}"))?;
            if balance != expected {
                mismatches.push((at, (expected, balance)));
            }
        }
    }
    Ok(mismatches)
}

async fn register_merchant(channel: Channel, admin_key: &str) -> anyhow::Result<String> {
    let mut client = MerchantServiceClient::new(channel);
    let mut request = tonic::Request::new(pb::RegisterMerchantRequest {
        slug: format!("load-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        name: "Load generator".into(),
    });
    request
        .metadata_mut()
        .insert("x-api-key", admin_key.parse()?);
    let response = client.register_merchant(request).await?.into_inner();
    response
        .api_key
        .and_then(|key| key.key)
        .ok_or_else(|| anyhow::anyhow!("registration returned no key"))
}

async fn grpc_call(
    client: &mut PointsServiceClient<Channel>,
    key: &MetadataValue<tonic::metadata::Ascii>,
    uid: &str,
    idempotency_key: &str,
    spend: bool,
) -> Result<i64, String> {
    let result = if spend {
        let mut request = tonic::Request::new(pb::SpendRequest {
            uid: uid.into(),
            points: 1,
            idempotency_key: idempotency_key.into(),
            ..Default::default()
        });
        request.metadata_mut().insert("x-api-key", key.clone());
        client.spend(request).await.map(|_| -1)
    } else {
        let mut request = tonic::Request::new(pb::EarnRequest {
            uid: uid.into(),
            points: Some(2),
            idempotency_key: idempotency_key.into(),
            ..Default::default()
        });
        request.metadata_mut().insert("x-api-key", key.clone());
        client.earn(request).await.map(|_| 2)
    };
    result.map_err(|status| format!("{:?}", status.code()))
}

async fn rest_call(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    uid: &str,
    idempotency_key: &str,
    spend: bool,
) -> Result<i64, String> {
    let (path, body) = if spend {
        (
            "spend",
            serde_json::json!({"uid": uid, "points": 1, "idempotency_key": idempotency_key}),
        )
    } else {
        (
            "earn",
            serde_json::json!({"uid": uid, "points": 2, "idempotency_key": idempotency_key}),
        )
    };
    let response = http
        .post(format!("{base}/api/v1/points/{path}"))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .map_err(|error| format!("transport: {error}"))?;
    if response.status().is_success() {
        Ok(if spend { -1 } else { 2 })
    } else {
        Err(format!("http {}", response.status().as_u16()))
    }
}

/// The `holds` workload's call over gRPC: a hold of 1 point, then its capture (a spend of 1).
async fn grpc_hold_capture(
    client: &mut PointsServiceClient<Channel>,
    key: &MetadataValue<tonic::metadata::Ascii>,
    uid: &str,
    idempotency_key: &str,
) -> Result<i64, String> {
    let failed = |status: tonic::Status| format!("{:?}", status.code());
    let mut request = tonic::Request::new(pb::CreateHoldRequest {
        uid: uid.into(),
        points: 1,
        idempotency_key: format!("{idempotency_key}-hold"),
        ..Default::default()
    });
    request.metadata_mut().insert("x-api-key", key.clone());
    let hold = client
        .create_hold(request)
        .await
        .map_err(failed)?
        .into_inner();
    let hold_id = hold.hold.map(|hold| hold.hold_id).unwrap_or_default();
    let mut request = tonic::Request::new(pb::CaptureHoldRequest {
        hold_id,
        idempotency_key: format!("{idempotency_key}-capture"),
        points: None,
    });
    request.metadata_mut().insert("x-api-key", key.clone());
    client.capture_hold(request).await.map_err(failed)?;
    Ok(-1)
}

/// The `holds` workload's call over REST: `POST /points/holds` of 1 point, then `POST .../capture`.
async fn rest_hold_capture(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    uid: &str,
    idempotency_key: &str,
) -> Result<i64, String> {
    let post = |path: String, body: serde_json::Value| {
        http.post(format!("{base}/api/v1/points/{path}"))
            .header("x-api-key", key)
            .json(&body)
            .send()
    };
    let hold = serde_json::json!({"uid": uid, "points": 1, "idempotency_key": format!("{idempotency_key}-hold")});
    let response = post("holds".into(), hold)
        .await
        .map_err(|error| format!("transport: {error}"))?;
    if !response.status().is_success() {
        return Err(format!("http {} (hold)", response.status().as_u16()));
    }
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|error| format!("body: {error}"))?;
    let hold_id = body["data"]["hold"]["hold_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let capture = serde_json::json!({"idempotency_key": format!("{idempotency_key}-capture")});
    let response = post(format!("holds/{hold_id}/capture"), capture)
        .await
        .map_err(|error| format!("transport: {error}"))?;
    if !response.status().is_success() {
        return Err(format!("http {} (capture)", response.status().as_u16()));
    }
    Ok(-1)
}
