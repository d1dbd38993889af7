//! REST gateway of the points platform: `/api/v1` JSON envelopes over the `points.v1` gRPC API.
//!
//! The gateway only translates: JSON ⇄ proto and gRPC status ⇄ `{code, message, data}` envelope. It never sees the
//! store or the domain; everything it knows about the service comes from `proto/points/v1`.
//!
//! * [`router`] builds the axum app (`/api/v1/...`, `/docs`, `/openapi.json`, `/admin`, `/healthz`, `/readyz`,
//!   `/metrics`) over a lazily connected gRPC channel; [`router_in_process`] over the gRPC server's own services
//!   in the same process (see [`in_process`]);
//! * [`serve`] and [`serve_in_process`] run it on a listener until a shutdown signal, finishing in-flight requests;
//! * [`install_metrics_recorder`] installs the process-wide Prometheus recorder `/metrics` renders.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod backend;
pub mod config;
pub mod connections;
mod convert;
pub mod envelope;
pub mod error;
mod extract;
pub mod in_process;
pub mod metrics;
mod middleware;
pub mod openapi;
mod ratelimit;
pub mod refusals;
mod routes;
mod state;

/// The generated `points.v1` messages and gRPC clients, from the contract crate.
pub use points_api::pb;

use std::future::Future;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

pub use crate::config::{ConfigError, GatewayConfig};
pub use crate::error::{ApiError, ErrorCode};
pub use crate::metrics::install_metrics_recorder;

use crate::middleware::RequestId;
use crate::state::{AppState, Backend};

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Where Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";
pub use crate::admin::{ADMIN_PATH, AdminUi};

/// The OpenAPI document of every route the gateway serves (what `/openapi.json` returns).
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().1
}

/// The routes that appear in the OpenAPI document, and the document: declared together, so they cannot diverge.
fn documented_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::api_router())
        .merge(routes::ops::router())
        .split_for_parts();
    (router, openapi::finish(document))
}

/// Builds the gateway: every route, the envelope-producing fallbacks, and the layers (request id, metrics, tracing,
/// timeout, body limit, panic guard). Connects to gRPC lazily, so it succeeds while the server is still down.
///
/// Installs the global metrics recorder if nobody did yet (see [`install_metrics_recorder`]).
pub async fn router(config: &GatewayConfig) -> anyhow::Result<axum::Router> {
    config.validate()?;
    router_over(config, Backend::connect_lazy(config)?)
}

/// Like [`router`], but every gRPC call goes into `service`, the gRPC server's own service stack in this process
/// (see [`in_process`]); `config.grpc_url` is not used.
pub fn router_in_process(
    config: &GatewayConfig,
    service: in_process::InProcessService,
) -> anyhow::Result<axum::Router> {
    config.validate_in_process()?;
    router_over(config, Backend::over(backend::Upstream::InProcess(service)))
}

fn router_over(config: &GatewayConfig, backend: Backend) -> anyhow::Result<axum::Router> {
    let refusals = refusals::RefusalReporter::start(backend.channel.clone());
    let state = AppState {
        backend: std::sync::Arc::new(backend),
        request_timeout: config.request_timeout,
        metrics: install_metrics_recorder(),
        gateway_token: match &config.gateway_token {
            Some(token) => Some(
                tonic::metadata::AsciiMetadataValue::try_from(token.as_str())
                    .map_err(|_| anyhow::anyhow!("the gateway token is not visible ASCII"))?,
            ),
            None => {
                tracing::warn!(
                    "no {} set: the points service records this gateway's calls as grpc, not rest",
                    config::ENV_GATEWAY_TOKEN
                );
                None
            }
        },
    };
    let (api, document) = documented_routes();
    let swagger = SwaggerUi::new(DOCS_PATH)
        .url(OPENAPI_PATH, document)
        .config(
            SwaggerConfig::new([OPENAPI_PATH])
                .validator_url("none")
                .try_it_out_enabled(true)
                .persist_authorization(true)
                .display_request_duration(true),
        );
    let mut app: Router<AppState> = api.merge(Router::from(swagger)).fallback(unknown_route);
    app = app.merge(admin::router(&config.admin_ui));
    let app = app
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(CatchPanicLayer::new())
        .layer(from_fn_with_state(
            config.request_timeout,
            crate::middleware::timeout,
        ))
        .layer(from_fn(crate::middleware::envelope_bare_errors))
        .layer(from_fn_with_state(refusals, crate::refusals::record))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                // The response line already carries the status; errors worth a warning are logged where they arise.
                .on_failure(()),
        )
        .layer(from_fn(crate::ratelimit::pass_rate_limit_headers))
        .layer(from_fn(crate::middleware::record_metrics))
        .layer(from_fn(crate::middleware::request_id))
        .with_state(state);
    Ok(app)
}

/// Runs the gateway on `listener` until `shutdown` completes, then stops accepting and finishes in-flight requests.
///
/// Each connection is served by hyper (HTTP/1 and HTTP/2) with the header-read timeout of
/// [`ConnectionLimits`](connections::ConnectionLimits): an HTTP/1 request whose headers are not complete in time
/// closes its connection (slowloris), on top of the listener's bound, idle timeout and handshake deadline.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(&config).await?;
    serve_app(listener, &config, app, &config.grpc_url, shutdown).await
}

/// Like [`serve`], with the gRPC calls going into `service` in this process (see [`router_in_process`]).
pub async fn serve_in_process(
    listener: tokio::net::TcpListener,
    config: GatewayConfig,
    service: in_process::InProcessService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router_in_process(&config, service)?;
    serve_app(listener, &config, app, "in-process", shutdown).await
}

async fn serve_app(
    listener: tokio::net::TcpListener,
    config: &GatewayConfig,
    app: axum::Router,
    grpc: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;

    let listener = connections::GuardedListener::new(listener, config.connection_limits, "rest");
    let address = listener.local_addr()?;
    tracing::info!(%address, grpc, "rest gateway listening");
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.connection_limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept_guarded() => accepted,
            () = &mut shutdown => break,
        };
        // With the peer address, which is forwarded to the points service for its per-address limits.
        let service =
            app.clone()
                .map_request(move |mut request: Request<hyper::body::Incoming>| {
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(connections::ClientAddr(peer)));
                    request
                });
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "rest connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    tracing::info!("rest gateway stopped");
    Ok(())
}

/// The span of one request: method, route template (never the raw path, which may carry ids) and request id.
fn make_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(crate::middleware::UNMATCHED_ROUTE, MatchedPath::as_str);
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map_or("", RequestId::as_str);
    tracing::info_span!("http_request", method = %request.method(), route, request_id)
}

/// 404 envelope for every path no route serves (`/api/v1/...` included; `/admin/...` has its own SPA fallback).
async fn unknown_route(method: Method, uri: axum::http::Uri) -> Response {
    ApiError::not_found(format!("no route for {method} {}", uri.path())).into_response()
}
