//! Benchmark of the admin app's heavy reads, against a real PostgreSQL, through the REST gateway:
//! - the liability report on a merchant with 1,000,000 entries over a year (rolled up, plus a live tail of entries
//!   the roller has not seen), default range (30 days) and a whole year;
//! - audit chain verification on a chain of 100,000 records: the first full pass, then the incremental default.
//!
//! ```text
//! cargo bench --bench reports                      # 1,000,000 entries, 100,000 audit records
//! cargo bench --bench reports -- --entries 100000 --audit-records 10000 --requests 50
//! ```
//! It creates its own database (`points_bench_<uuid>`) on 127.0.0.1:5432 and drops it at the end.

use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use points::{app::Application, config::Config, service::bootstrap::Bootstrap};
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(about = "Latency of the liability report and of audit verification")]
struct Args {
    /// Entries of the benchmarked merchant.
    #[arg(long, default_value_t = 1_000_000)]
    entries: i64,
    /// Entries written after the roll-up, so reports also read a live tail.
    #[arg(long, default_value_t = 1_000)]
    tail_entries: i64,
    /// Records of the benchmarked audit chain.
    #[arg(long, default_value_t = 100_000)]
    audit_records: i64,
    /// Timed requests per measurement.
    #[arg(long, default_value_t = 200)]
    requests: u64,
    /// Keep the database afterwards (its name is printed), to look at query plans.
    #[arg(long)]
    keep_database: bool,
    /// `cargo bench` passes `--bench`; accepted and ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const MAINTENANCE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// Calls `path` `requests` times one after the other and prints the latency percentiles.
async fn measure(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    merchant_id: Option<&str>,
    requests: u64,
    label: &str,
) -> Value {
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let mut last = Value::Null;
    for _ in 0..requests {
        let mut request = http.get(url).header("x-api-key", key);
        if let Some(merchant_id) = merchant_id {
            request = request.header("x-merchant-id", merchant_id);
        }
        let started = Instant::now();
        let response = request.send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        histogram
            .record(started.elapsed().as_micros() as u64)
            .expect("record");
        assert!(status.is_success(), "{label}: {status} {body}");
        last = body;
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    println!(
        "{label:<48} n={requests:<5} p50={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
        ms(histogram.value_at_quantile(0.50)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.max()),
    );
    last
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let database = format!("points_bench_{}", uuid::Uuid::new_v4().simple());
    let database_url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let settings = [
        ("DATABASE_URL", database_url.as_str()),
        ("POINTS_GRPC_ADDR", "127.0.0.1:0"),
        ("POINTS_HTTP_ADDR", "127.0.0.1:0"),
        (
            "POINTS_KEY_HASH_SECRET",
            "bench-secret-bench-secret-bench-secret-0123",
        ),
        ("POINTS_DB_STATEMENT_TIMEOUT_MS", "600000"),
        ("POINTS_LOG_FORMAT", "json"),
    ];
    let config = Config::from_lookup(|name| {
        settings
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    })?;
    let app = Application::build(config).await?;
    let Bootstrap::Created(admin_key) = &app.bootstrap else {
        anyhow::bail!("a fresh database should create an admin key");
    };
    let admin_key = admin_key.expose().to_owned();
    let http_addr = app.http_addr().expect("the gateway runs");
    let services = app.services();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let base = format!("http://{http_addr}");
    let http = reqwest::Client::new();

    let registered: Value = http
        .post(format!("{base}/api/v1/merchants"))
        .header("x-api-key", &admin_key)
        .json(&serde_json::json!({"slug": "bench-shop", "name": "Bench shop"}))
        .send()
        .await?
        .json()
        .await?;
    let merchant_id = registered["data"]["merchant"]["merchant_id"]
        .as_str()
        .expect("merchant id")
        .to_owned();
    let schema = format!("merchant_{}", merchant_id.replace('-', ""));
    let db = connect(&database_url).await;

    println!(
        "seeding {} entries over 365 days and {} audit records ...",
        args.entries, args.audit_records
    );
    let seeded = Instant::now();
    let insert_entries = |first: i64, last: i64, days: i64| {
        format!(
            "INSERT INTO {schema}.entries (uid, kind, delta, balance_after, idempotency_key, created_at) \
             SELECT 'u-' || (g % 9973), \
                    (ARRAY['earn','earn','earn','earn','earn','spend','spend','adjust','reverse','expire'])[g % 10 + 1], \
                    CASE g % 10 WHEN 5 THEN -(g % 7 + 1) WHEN 6 THEN -(g % 5 + 1) \
                         WHEN 7 THEN g % 9 + 1 WHEN 8 THEN -(g % 6 + 1) WHEN 9 THEN -(g % 3 + 1) \
                         ELSE g % 50 + 10 END, \
                    0, 'seed-' || g, now() - ((g::bigint * 7919) % ({days} * 86400)) * interval '1 second' \
             FROM generate_series({first}, {last}) AS g"
        )
    };
    db.batch_execute(&insert_entries(1, args.entries, 365))
        .await?;
    let merchant_uuid = uuid::Uuid::parse_str(&merchant_id)?;
    let rolled = points::service::reports::roll_up(&services, merchant_uuid)
        .await
        .map_err(|error| anyhow::anyhow!("{error:?}"))?;
    // A tail the roller has not seen (written behind its back, so nothing marks the tenant), as a busy merchant
    // always has.
    db.batch_execute(&insert_entries(
        args.entries + 1,
        args.entries + args.tail_entries,
        1,
    ))
    .await?;
    db.batch_execute(&format!(
        "INSERT INTO {schema}.accounts (uid, balance) SELECT uid, sum(delta) FROM {schema}.entries GROUP BY uid \
         ON CONFLICT (uid) DO UPDATE SET balance = excluded.balance; ANALYZE {schema}.entries; \
         ANALYZE {schema}.liability_periods; ANALYZE {schema}.accounts"
    ))
    .await?;
    db.batch_execute(&format!(
        "INSERT INTO {schema}.audit_records (occurred_at, merchant_id, transport, method, request_id, \
             request_digest, outcome_code, outcome, latency_us) \
         SELECT now(), '{merchant_id}', 'grpc', '/points.v1.PointsService/GetAccount', 'seed-' || g, '', 0, 'OK', g \
         FROM generate_series(1, {}) AS g",
        args.audit_records
    ))
    .await?;
    let chain = points::call::Chain::of_merchant(Some(merchant_uuid));
    loop {
        let sealed = points::audit::chain::seal(&services.pool, &chain, true)
            .await
            .map_err(|error| anyhow::anyhow!("{error:?}"))?;
        if sealed.unwrap_or(0) == 0 {
            break;
        }
    }
    println!(
        "seeded in {:.1} s ({rolled} entries rolled up, {} in the live tail)",
        seeded.elapsed().as_secs_f64(),
        args.tail_entries
    );

    let merchant = Some(merchant_id.as_str());
    let report = measure(
        &http,
        &format!("{base}/api/v1/reports/liability"),
        &admin_key,
        merchant,
        args.requests,
        "liability, last 30 days by day",
    )
    .await;
    let reconciliation = &report["data"]["reconciliation"];
    println!(
        "  closing {} = sum of balances {}: {}",
        reconciliation["closing_outstanding"],
        reconciliation["sum_of_balances"],
        reconciliation["ok"]
    );
    assert_eq!(reconciliation["ok"], Value::Bool(true));
    let year_ago = (chrono::Utc::now() - chrono::Duration::days(366)).format("%Y-%m-%dT%H:%M:%SZ");
    measure(
        &http,
        &format!("{base}/api/v1/reports/liability?from={year_ago}"),
        &admin_key,
        merchant,
        args.requests,
        "liability, last year by day (366 buckets)",
    )
    .await;
    measure(
        &http,
        &format!("{base}/api/v1/reports/liability?from={year_ago}&bucket=month&tz=Europe/Paris"),
        &admin_key,
        merchant,
        args.requests,
        "liability, last year by month, Europe/Paris",
    )
    .await;

    let verify_url = format!("{base}/api/v1/audit-logs/verify");
    let full = measure(
        &http,
        &format!("{verify_url}?full=true"),
        &admin_key,
        merchant,
        1,
        "verify, first full pass",
    )
    .await;
    println!(
        "  ok={} checked={} chain_length={}",
        full["data"]["ok"], full["data"]["checked"], full["data"]["chain_length"]
    );
    let incremental = measure(
        &http,
        &verify_url,
        &admin_key,
        merchant,
        args.requests.min(100),
        "verify, incremental (default)",
    )
    .await;
    println!(
        "  ok={} checked={} chain_length={}",
        incremental["data"]["ok"],
        incremental["data"]["checked"],
        incremental["data"]["chain_length"]
    );

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    drop(db);
    if args.keep_database {
        println!("kept database {database} (merchant schema {schema})");
        return Ok(());
    }
    let maintenance = connect(MAINTENANCE_URL).await;
    maintenance
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .await?;
    Ok(())
}
