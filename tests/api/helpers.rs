//! `spawn_app()`: a real server on port 0 over a new database named by a uuid, plus typed clients.

#![allow(dead_code)]

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use points::{
    app::Application,
    config::Config,
    pb::{
        self, api_key_service_client::ApiKeyServiceClient,
        audit_service_client::AuditServiceClient, merchant_service_client::MerchantServiceClient,
        points_service_client::PointsServiceClient, rule_service_client::RuleServiceClient,
    },
    service::{Services, bootstrap::Bootstrap},
};
use tokio_util::sync::CancellationToken;
use tonic::{
    Code, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};
use tonic_types::StatusExt;

pub const TEST_KEY_HASH_SECRET: &str = "integration-test-key-hash-secret-0123456789";

/// A running server and what tests need to talk to it.
pub struct TestApp {
    pub grpc_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub database_url: String,
    pub database_name: String,
    pub admin_key: String,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub channel: Channel,
    pub services: Arc<Services>,
    /// Tenants whose migration failed when this instance started.
    pub tenant_migration_failures: Vec<String>,
}

/// Adds `x-api-key` (and `x-merchant-id`) to every call.
#[derive(Clone)]
pub struct Caller {
    pub key: String,
    pub merchant_id: Option<String>,
    pub request_id: Option<String>,
}

impl Interceptor for Caller {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Ok(value) = MetadataValue::try_from(self.key.as_str()) {
            request.metadata_mut().insert("x-api-key", value);
        }
        if let Some(merchant_id) = &self.merchant_id {
            request.metadata_mut().insert(
                "x-merchant-id",
                MetadataValue::try_from(merchant_id.as_str()).expect("ascii"),
            );
        }
        if let Some(request_id) = &self.request_id {
            request.metadata_mut().insert(
                "x-request-id",
                MetadataValue::try_from(request_id.as_str()).expect("ascii"),
            );
        }
        Ok(request)
    }
}

pub type Client<T> = T;
type Intercepted = InterceptedService<Channel, Caller>;

/// The gateway token of the test servers: what a call must carry to be recorded as `rest`.
pub const TEST_GATEWAY_TOKEN: &str = "test-gateway-token-00112233445566778899aabbccddeeff";

/// Where the test servers' pools connect: PostgreSQL itself, or, with `POINTS_TEST_PGBOUNCER=host:port` (what
/// `tests/pgbouncer/run.sh` sets), a pgbouncer in transaction pooling mode in front of it; then LISTEN/NOTIFY and the
/// session defaults take the direct connection, as in a deployment behind pgbouncer.
pub fn database_settings(database_name: &str) -> Vec<(String, String)> {
    let direct = format!("postgres://postgres@127.0.0.1:5432/{database_name}");
    match std::env::var("POINTS_TEST_PGBOUNCER") {
        Ok(pgbouncer) if !pgbouncer.is_empty() => vec![
            (
                "DATABASE_URL".to_owned(),
                format!("postgres://postgres@{pgbouncer}/{database_name}"),
            ),
            ("POINTS_LISTEN_DATABASE_URL".to_owned(), direct),
            (
                "POINTS_DATABASE_POOL_MODE".to_owned(),
                "transaction".to_owned(),
            ),
        ],
        _ => vec![("DATABASE_URL".to_owned(), direct)],
    }
}

pub fn base_settings(database_name: &str) -> HashMap<String, String> {
    let mut settings = HashMap::from([
        ("POINTS_GRPC_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("POINTS_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "POINTS_KEY_HASH_SECRET".to_owned(),
            TEST_KEY_HASH_SECRET.to_owned(),
        ),
        (
            "POINTS_GATEWAY_TOKEN".to_owned(),
            TEST_GATEWAY_TOKEN.to_owned(),
        ),
        ("POINTS_KEY_CACHE_TTL_MS".to_owned(), "30000".to_owned()),
        ("POINTS_AUDIT_FLUSH_MS".to_owned(), "20".to_owned()),
        // The expiry sweeper is off: a test that expires lots sweeps them itself, when it means to; the tests of the
        // sweeper turn it on.
        ("POINTS_EXPIRY_SWEEP_INTERVAL_MS".to_owned(), "0".to_owned()),
    ]);
    settings.extend(database_settings(database_name));
    settings
}

pub fn config_from(settings: &HashMap<String, String>) -> Config {
    Config::from_lookup(|name| settings.get(name).cloned()).expect("test config")
}

/// A fresh database, migrated, with a server on it.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with settings changed first.
pub async fn spawn_app_with(customize: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    let database_name = format!("points_test_{}", uuid::Uuid::new_v4().simple());
    let mut settings = base_settings(&database_name);
    customize(&mut settings);
    spawn_on(settings, None).await
}

/// Another instance on the same database as `other` (the admin key is shared).
pub async fn spawn_second_instance(other: &TestApp) -> TestApp {
    let settings = base_settings(&other.database_name);
    spawn_on(settings, Some(other.admin_key.clone())).await
}

pub async fn spawn_on(settings: HashMap<String, String>, admin_key: Option<String>) -> TestApp {
    points::telemetry::init_with_default_filter(points::config::LogFormat::Pretty, "warn");
    let config = config_from(&settings);
    // Assertions read the database directly, past any pooler.
    let database_url = config
        .listen_database_url
        .clone()
        .unwrap_or_else(|| config.database_url.clone());
    let database_name = database_url.rsplit('/').next().expect("db name").to_owned();
    let app = Application::build(config).await.expect("build application");
    let admin_key = match (&app.bootstrap, admin_key) {
        (Bootstrap::Created(key), _) => key.expose().to_owned(),
        (_, Some(key)) => key,
        (other, None) => panic!("expected a bootstrap key, got {other:?}"),
    };
    let grpc_addr = app.grpc_addr();
    let http_addr = app.http_addr();
    let shutdown = app.shutdown_token();
    let services = app.services();
    let tenant_migration_failures = app
        .tenant_migrations
        .failed
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    let handle = tokio::spawn(app.run());
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .expect("uri")
        .connect_lazy();
    TestApp {
        grpc_addr,
        http_addr,
        database_url,
        database_name,
        admin_key,
        shutdown,
        handle,
        channel,
        services,
        tenant_migration_failures,
    }
}

impl TestApp {
    pub fn caller(&self, key: &str) -> Caller {
        Caller {
            key: key.to_owned(),
            merchant_id: None,
            request_id: None,
        }
    }

    pub fn admin(&self) -> Caller {
        self.caller(&self.admin_key)
    }

    pub fn merchants(&self, caller: Caller) -> MerchantServiceClient<Intercepted> {
        MerchantServiceClient::with_interceptor(self.channel.clone(), caller)
    }
    pub fn keys(&self, caller: Caller) -> ApiKeyServiceClient<Intercepted> {
        ApiKeyServiceClient::with_interceptor(self.channel.clone(), caller)
    }
    pub fn points(&self, caller: Caller) -> PointsServiceClient<Intercepted> {
        PointsServiceClient::with_interceptor(self.channel.clone(), caller)
    }
    pub fn rules(&self, caller: Caller) -> RuleServiceClient<Intercepted> {
        RuleServiceClient::with_interceptor(self.channel.clone(), caller)
    }
    pub fn audit(&self, caller: Caller) -> AuditServiceClient<Intercepted> {
        AuditServiceClient::with_interceptor(self.channel.clone(), caller)
    }

    /// Registers a merchant with the admin key; returns it and its first key's plaintext.
    pub async fn register_merchant(&self, slug: &str) -> (pb::Merchant, String) {
        let response = self
            .merchants(self.admin())
            .register_merchant(pb::RegisterMerchantRequest {
                slug: slug.to_owned(),
                name: format!("Shop {slug}"),
            })
            .await
            .expect("register merchant")
            .into_inner();
        let key = response
            .api_key
            .and_then(|key| key.key)
            .expect("plaintext key");
        (response.merchant.expect("merchant"), key)
    }

    /// A direct database connection for assertions.
    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
                .await
                .expect("connect");
        tokio::spawn(connection);
        client
    }

    /// Graceful stop; returns what `run` returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.await.expect("join")
    }
}

/// Moves a key's expiry into the past, as the passing of time would, and drops the key from `app`'s cache at once
/// (the trigger's notification does the same a moment later), so the next call reads the expired key.
pub async fn expire_key_now(app: &TestApp, key_id: &str) {
    let key_id = uuid::Uuid::parse_str(key_id).expect("a key id");
    let updated = app
        .db()
        .await
        .execute(
            "UPDATE public.api_keys SET expires_at = now() - interval '1 second' WHERE key_id = $1",
            &[&key_id],
        )
        .await
        .expect("expire the key");
    assert_eq!(updated, 1, "no key {key_id}");
    app.services.auth_cache.invalidate_key(key_id);
}

/// Asserts a status has the gRPC code and the SPEC reason.
#[track_caller]
pub fn assert_status(
    result: Result<impl std::fmt::Debug, Status>,
    code: Code,
    reason: &str,
) -> Status {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "unexpected reason: {status:?}");
    status
}

/// Defines `$name(channel) -> Vec<String>`: the services listed through reflection `$version` (the two versions
/// have the same messages in different packages).
macro_rules! list_services_through {
    ($name:ident, $version:ident) => {
        pub async fn $name(channel: Channel) -> Vec<String> {
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest,
                server_reflection_response::MessageResponse,
            };
            let mut client = ServerReflectionClient::new(channel);
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut responses = client
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .expect("reflection")
                .into_inner();
            let response = responses
                .message()
                .await
                .expect("message")
                .expect("a response");
            match response.message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    list.service.into_iter().map(|s| s.name).collect()
                }
                other => panic!("unexpected reflection response {other:?}"),
            }
        }
    };
}

// Reflection v1, as grpcurl speaks it first.
list_services_through!(list_services_by_reflection, v1);
// Reflection v1alpha, the only one Python's grpcio-reflection client speaks.
list_services_through!(list_services_by_reflection_v1alpha, v1alpha);

/// A merchant key's points client, ready to use.
pub type PointsClient = PointsServiceClient<Intercepted>;

pub fn earn_request(uid: &str, points: i64, key: &str) -> pb::EarnRequest {
    pb::EarnRequest {
        uid: uid.into(),
        points: Some(points),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

pub fn spend_request(uid: &str, points: i64, key: &str) -> pb::SpendRequest {
    pb::SpendRequest {
        uid: uid.into(),
        points,
        idempotency_key: key.into(),
        ..Default::default()
    }
}

/// A fresh idempotency key.
pub fn idem() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Checks the ledger invariants of a tenant straight from the database: every account's balance equals the sum of
/// its entry deltas and the open lots, no balance is negative, no entry is reversed twice.
pub async fn assert_ledger_invariants(db: &tokio_postgres::Client, merchant_id: &str) {
    let schema = format!("merchant_{}", merchant_id.replace('-', ""));
    let broken = db
        .query(
            &format!(
                "SELECT a.uid, a.balance, coalesce(e.total, 0)::bigint, coalesce(l.total, 0)::bigint FROM {schema}.accounts a \
                 LEFT JOIN (SELECT uid, sum(delta) AS total FROM {schema}.entries GROUP BY uid) e ON e.uid = a.uid \
                 LEFT JOIN (SELECT uid, sum(remaining) AS total FROM {schema}.lots GROUP BY uid) l ON l.uid = a.uid \
                 WHERE a.balance <> coalesce(e.total, 0) OR a.balance <> coalesce(l.total, 0) OR a.balance < 0"
            ),
            &[],
        )
        .await
        .expect("invariant query");
    let broken: Vec<(String, i64, i64, i64)> = broken
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert!(
        broken.is_empty(),
        "(uid, balance, sum of deltas, sum of lots) out of line: {broken:?}"
    );
    let negative: i64 = db
        .query_one(
            &format!("SELECT count(*) FROM {schema}.entries WHERE balance_after < 0"),
            &[],
        )
        .await
        .expect("negative query")
        .get(0);
    assert_eq!(negative, 0);
}

pub fn schema_of(merchant_id: &str) -> String {
    format!("merchant_{}", merchant_id.replace('-', ""))
}

/// A connection to the `postgres` maintenance database (for sabotage that must not go through the app's own).
pub async fn connect_maintenance() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        "postgres://postgres@127.0.0.1:5432/postgres",
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to postgres");
    tokio::spawn(connection);
    client
}

/// Tests that load the machine heavily (thousands of concurrent calls) hold this while they run, so that two of them
/// never overlap: on a 2-core machine they would push each other's waits on a hot account row past the statement
/// timeout, which such tests rightly treat as a failure.
pub async fn heavy_test() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}
