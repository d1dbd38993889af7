//! Builds and runs the whole server: database, migrations, bootstrap key, background tasks, gRPC (and the
//! in-process REST gateway), with one shutdown signal for all of it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{service::Routes, transport::Server};
use tower::Layer;

use crate::{
    audit::{
        buffer::{AuditLog, run_flusher},
        chain::run_sealer,
    },
    auth::{
        Authenticator,
        cache::{AuthCache, LastUsed, run_last_used_flusher, run_listener},
        layer::CallLayer,
    },
    config::Config,
    domain::api_key::KeyHasher,
    grpc::Handlers,
    pb,
    service::{
        Services,
        bootstrap::{self, Bootstrap},
    },
    store,
};

/// The gRPC services whose health follows the database; "" is the server as a whole, what a plain
/// `grpc.health.v1.Health/Check` and Kubernetes' gRPC probes ask about.
const SERVICE_NAMES: &[&str] = &[
    "",
    "points.v1.MerchantService",
    "points.v1.ApiKeyService",
    "points.v1.PointsService",
    "points.v1.RuleService",
    "points.v1.AuditService",
    "points.v1.ReportService",
];
/// How often the database is probed, and how long one probe may take: a loss shows in health (and in the
/// gateway's `/readyz`) within about their sum.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_millis(200);
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// A built server, listening but not yet serving.
pub struct Application {
    config: Config,
    grpc_listener: TcpListener,
    http_listener: Option<TcpListener>,
    metrics_listener: Option<TcpListener>,
    services: Arc<Services>,
    authenticator: Arc<Authenticator>,
    pg_config: tokio_postgres::Config,
    listen_pg_config: tokio_postgres::Config,
    shutdown: CancellationToken,
    /// What start-up did about the platform admin key; `Created` holds a key to print once.
    pub bootstrap: Bootstrap,
    pub tenant_migrations: store::migrations::TenantMigrationSummary,
}

impl Application {
    /// Creates and migrates the database, ensures an admin key, and binds the listeners.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        if config.key_hash_secret_is_default {
            tracing::warn!(
                "POINTS_KEY_HASH_SECRET is not set: using the development secret; set it in production"
            );
        }
        let services = Arc::new(connect(&config).await?);
        let migrating = std::time::Instant::now();
        let tenant_migrations =
            store::migrations::migrate_all_tenants(&services.pool, config.migration_concurrency)
                .await?;
        tracing::info!(
            elapsed_ms = migrating.elapsed().as_millis() as u64,
            migrated = tenant_migrations.migrated,
            failed = tenant_migrations.failed.len(),
            "tenant schemas migrated"
        );
        let bootstrap =
            bootstrap::ensure_admin_key(&services, config.bootstrap_admin_key.as_deref()).await?;
        let authenticator = Arc::new(
            Authenticator::new(
                services.pool.clone(),
                services.hasher.clone(),
                services.auth_cache.clone(),
                Arc::new(LastUsed::default()),
                store::migrations::tenant_version_latest(),
            )
            .with_previous_hasher(
                config
                    .key_hash_secret_previous
                    .as_deref()
                    .map(KeyHasher::new),
            ),
        );
        let grpc_listener = TcpListener::bind(config.grpc_addr).await?;
        let http_listener = match config.http_addr {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Application {
            pg_config: store::postgres_config(&config)?,
            listen_pg_config: store::direct_postgres_config(&config)?,
            config,
            grpc_listener,
            http_listener,
            metrics_listener,
            services,
            authenticator,
            shutdown: CancellationToken::new(),
            bootstrap,
            tenant_migrations,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listener.as_ref().map(|listener| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
        })
    }

    /// The address of the server's own `/metrics` listener, when `POINTS_METRICS_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|listener| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
        })
    }

    /// Cancel this token to shut down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn services(&self) -> Arc<Services> {
        self.services.clone()
    }

    /// Serves until the shutdown token is cancelled, then: health NOT_SERVING, stop accepting, let in-flight calls
    /// finish (bounded by the shutdown timeout), flush buffered state, return.
    pub async fn run(self) -> anyhow::Result<()> {
        let Application {
            config,
            grpc_listener,
            http_listener,
            metrics_listener,
            services,
            authenticator,
            pg_config,
            listen_pg_config,
            shutdown,
            ..
        } = self;
        let background = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(listener) = metrics_listener {
            // Up until the background tasks stop, so the last flushes still show.
            let stop = background.clone();
            tracing::info!(metrics = %listener.local_addr()?, "serving /metrics");
            tasks.spawn(async move {
                if let Err(error) =
                    points_gateway::metrics::serve_metrics(listener, stop.cancelled_owned()).await
                {
                    tracing::error!(%error, "the /metrics listener failed");
                }
            });
        }
        tasks.spawn(run_listener(
            services.auth_cache.clone(),
            listen_pg_config,
            background.clone(),
        ));
        tasks.spawn(run_last_used_flusher(
            authenticator.last_used.clone(),
            services.pool.clone(),
            config.last_used_flush_interval,
            background.clone(),
        ));

        // The audit writer flushes once more when `background` is cancelled, which happens only after gRPC has
        // stopped serving, so every call's record is in the buffer by then; the pool closes after it finishes.
        tasks.spawn(run_flusher(
            services.audit.clone(),
            services.pool.clone(),
            config.audit_flush_interval,
            background.clone(),
        ));
        tasks.spawn(run_sealer(
            services.audit.unsealed().clone(),
            services.pool.clone(),
            background.clone(),
        ));

        if let Some(interval) = config.expiry_sweep_interval {
            tasks.spawn(crate::service::ledger::run_expiry_sweeper(
                services.clone(),
                interval,
                config.expiry_sweep_batch_size,
                background.clone(),
            ));
        }

        tasks.spawn(crate::service::reports::run_liability_roller(
            services.clone(),
            background.clone(),
        ));

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        for name in SERVICE_NAMES {
            health_reporter
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
        }
        tasks.spawn(probe_database(
            pg_config,
            health_reporter.clone(),
            background.clone(),
        ));

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let handlers = Handlers {
            services: services.clone(),
        };
        let size_max = config.grpc_message_size_bytes_max;
        macro_rules! bounded {
            ($server:ty) => {
                <$server>::new(handlers.clone())
                    .max_decoding_message_size(size_max)
                    .max_encoding_message_size(size_max)
            };
        }
        let rate_limits = Arc::new(crate::auth::limits::RateLimits::new(
            config.rate_limit_key,
            config.rate_limit_merchant,
        ));
        tasks.spawn(shrink_rate_limits(rate_limits.clone(), background.clone()));
        let sources = services.sources.clone();
        tasks.spawn(write_refusal_summaries(
            sources.clone(),
            config.refusal_summary_interval,
            services.audit.clone(),
            background.clone(),
        ));
        let grpc_addr = grpc_listener.local_addr()?;
        let grpc_shutdown = shutdown.clone();
        let grpc_health = health_reporter.clone();
        let call_layer = CallLayer::new(
            authenticator.clone(),
            services.audit.clone(),
            rate_limits.clone(),
            sources.clone(),
            Arc::new(tokio::sync::Semaphore::new(config.in_flight_max)),
            &config.gateway_token,
        );
        let routes = Routes::new(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(bounded!(
                pb::merchant_service_server::MerchantServiceServer<Handlers>
            ))
            .add_service(bounded!(
                pb::api_key_service_server::ApiKeyServiceServer<Handlers>
            ))
            .add_service(bounded!(
                pb::points_service_server::PointsServiceServer<Handlers>
            ))
            .add_service(bounded!(
                pb::rule_service_server::RuleServiceServer<Handlers>
            ))
            .add_service(bounded!(
                pb::report_service_server::ReportServiceServer<Handlers>
            ))
            .add_service(bounded!(
                pb::audit_service_server::AuditServiceServer<Handlers>
            ))
            .add_service(bounded!(
                pb::gateway::gateway_service_server::GatewayServiceServer<Handlers>
            ))
            .prepare();
        // The in-process gateway's channel: the listener's own stack (the call layer over the same routes, the
        // same request timeout), called directly rather than over loopback TCP and HTTP/2.
        let in_process = points_gateway::in_process::InProcessService::new(
            call_layer.layer(routes.clone()),
            Some(config.request_timeout),
        );
        let grpc = Server::builder()
            .timeout(config.request_timeout)
            // Idle channels stay open through pings; a peer that stops answering them is dropped.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .layer(call_layer)
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                // Without TCP_NODELAY a response written in several pieces waits for the client's delayed ACK
                // (40 ms on Linux) before its last piece goes out.
                // Bounded in number, closed when idle; TCP_NODELAY is set on each.
                futures::stream::unfold(
                    points_gateway::connections::GuardedListener::new(
                        grpc_listener,
                        config.grpc_connection_limits,
                        "grpc",
                    ),
                    |listener| async move {
                        let (stream, _) = listener.accept_guarded().await;
                        Some((Ok::<_, std::io::Error>(stream), listener))
                    },
                ),
                async move {
                    grpc_shutdown.cancelled().await;
                    for name in SERVICE_NAMES {
                        grpc_health
                            .set_service_status(*name, tonic_health::ServingStatus::NotServing)
                            .await;
                    }
                    tracing::info!("shutting down: finishing in-flight calls");
                },
            );
        tracing::info!(grpc = %grpc_addr, "serving gRPC");

        let gateway = crate::app::gateway_task(
            http_listener,
            in_process,
            config.gateway_token.clone(),
            shutdown.clone(),
        );
        let served = tokio::select! {
            result = async { tokio::try_join!(async { grpc.await.map_err(anyhow::Error::from) }, gateway) } => result.map(|_| ()),
            () = async {
                shutdown.cancelled().await;
                tokio::time::sleep(config.shutdown_timeout).await;
            } => Err(anyhow::anyhow!("in-flight calls did not finish within the shutdown timeout")),
        };
        background.cancel();
        while tasks.join_next().await.is_some() {}
        services.pool.close();
        tracing::info!("stopped");
        served
    }
}

/// Creates the database if needed, migrates `public`, and builds the shared services.
///
/// The first connect is retried with backoff for up to `POINTS_DB_STARTUP_RETRY_MS`: a server started beside its
/// database (compose, a host booting) waits for it rather than exiting.
pub async fn connect(config: &Config) -> anyhow::Result<Services> {
    // Every process records through the one Prometheus recorder (the in-process gateway's `/metrics` or the
    // server's own listener shows it).
    points_gateway::install_metrics_recorder();
    store::ensure_database_with_retry(config).await?;
    let pool = store::build_pool(config)?;
    store::store_session_defaults(config, &pool).await?;
    {
        let mut client = pool.get().await?;
        store::migrations::migrate_public(&mut client).await?;
    }
    crate::pagination::set_token_secret(&config.key_hash_secret);
    let lanes = (config.ledger_lanes > 0).then(|| {
        crate::service::ledger::lanes::Lanes::new(
            pool.clone(),
            config.ledger_lanes,
            config.ledger_pipeline_depth,
            config.database_pool_mode,
        )
    });
    Ok(Services {
        lanes,
        pool,
        hasher: KeyHasher::new(&config.key_hash_secret),
        key_environment: config.key_environment,
        auth_cache: Arc::new(AuthCache::new(config.key_cache_ttl)),
        audit: Arc::new(AuditLog::new(config.audit_buffer_capacity)),
        rollup_marks: Arc::default(),
        sources: Arc::new(crate::auth::sources::Sources::new()),
    })
}

/// The REST gateway in the same process, calling the gRPC services in-process through `in_process` (the stack the
/// gRPC listener serves, so authentication, the gateway-token check, limits and audit are the same as over the
/// network, without the loopback TCP and HTTP/2 hop a separately deployed gateway takes).
async fn gateway_task(
    listener: Option<TcpListener>,
    in_process: points_gateway::in_process::InProcessService,
    gateway_token: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(listener) = listener else {
        return Ok(());
    };
    let mut gateway_config = points_gateway::GatewayConfig::from_env()?;
    gateway_config.gateway_token = Some(gateway_token);
    tracing::info!(http = %listener.local_addr()?, "serving REST gateway, /docs and /admin");
    points_gateway::serve_in_process(listener, gateway_config, in_process, async move {
        shutdown.cancelled().await
    })
    .await
}

/// Where this host reaches a listener bound to `addr`: loopback for an unspecified address (`0.0.0.0`).
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// `points healthcheck`: asks the gRPC health service of the server `config` describes, on this host, about the
/// server as a whole (`""`, which follows the database). Ok when SERVING.
pub async fn healthcheck(config: &Config, timeout: Duration) -> anyhow::Result<()> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let address = loopback(config.grpc_addr);
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(timeout)
            .connect()
            .await?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        anyhow::Ok(response.into_inner().status())
    };
    let status = tokio::time::timeout(timeout, check)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no health answer from {address} within {} ms",
                timeout.as_millis()
            )
        })?
        .map_err(|error| anyhow::anyhow!("gRPC health of {address}: {error:#}"))?;
    if status == ServingStatus::Serving {
        println!("{address}: SERVING");
        Ok(())
    } else {
        Err(anyhow::anyhow!("gRPC health of {address}: {status:?}"))
    }
}

/// The method name of the platform audit record that summarises an address's refused calls over its budget.
pub const REFUSAL_SUMMARY_METHOD: &str = "system/RefusedCallsSummary";

/// Every `interval` (a minute by default, and once more at shutdown), writes one platform audit record per client
/// address whose refused calls went over the recording budget, with their number in `points` and the address in
/// the request id.
async fn write_refusal_summaries(
    sources: Arc<crate::auth::sources::Sources>,
    interval: Duration,
    audit: Arc<crate::audit::buffer::AuditLog>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            () = shutdown.cancelled() => true,
        };
        for (address, count) in sources.take_summaries() {
            tracing::warn!(%address, count, "refused calls over the recording budget, summarised");
            audit
                .enqueue(crate::call::NewRecord {
                    chain: crate::call::Chain::Platform,
                    occurred_at: chrono::Utc::now(),
                    merchant_id: None,
                    key_id: None,
                    key_prefix: None,
                    transport: crate::call::Transport::System,
                    method: REFUSAL_SUMMARY_METHOD.to_owned(),
                    request_id: format!("refusals-from-{address}"),
                    request_digest: String::new(),
                    outcome: crate::call::Outcome::from_error(crate::error::ErrorCode::RateLimited),
                    latency_us: 0,
                    entry_ids: Vec::new(),
                    uid: None,
                    amount: None,
                    currency: None,
                    rule_code: None,
                    rule_version: None,
                    points: i64::try_from(count).ok(),
                    unless_committed: None,
                })
                .await;
        }
        if stopping {
            return;
        }
    }
}

/// Every minute, forgets the rate-limit buckets that are full again, so memory follows the active callers.
async fn shrink_rate_limits(
    limits: Arc<crate::auth::limits::RateLimits>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = ticker.tick() => limits.shrink(),
            () = shutdown.cancelled() => return,
        }
    }
}

/// Marks the services NOT_SERVING while the database does not answer, SERVING when it does again.
///
/// The probe has a connection of its own rather than one from the pool: under load the pool may be busy, and a
/// probe waiting for a connection would report a healthy database as lost; and a stopped database breaks this
/// connection at once, so the loss is seen at the next probe, not after a pool timeout.
async fn probe_database(
    pg_config: tokio_postgres::Config,
    reporter: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) {
    let mut last_ok = true;
    let mut probe: Option<tokio_postgres::Client> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(HEALTH_PROBE_INTERVAL) => {}
            () = shutdown.cancelled() => return,
        }
        let check = async {
            if probe.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
                let (client, connection) = pg_config.connect(tokio_postgres::NoTls).await.ok()?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                probe = Some(client);
            }
            probe.as_ref()?.simple_query("SELECT 1").await.ok()
        };
        let ok = matches!(
            tokio::time::timeout(HEALTH_PROBE_TIMEOUT, check).await,
            Ok(Some(_))
        );
        if !ok {
            // A timed-out or failed connection is not trusted again.
            probe = None;
        }
        if ok != last_ok {
            let status = if ok {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            tracing::warn!(database_reachable = ok, "database reachability changed");
            for name in SERVICE_NAMES {
                reporter.set_service_status(*name, status).await;
            }
            last_ok = ok;
        }
    }
}
