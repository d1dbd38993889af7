//! The process-wide Prometheus recorder behind `/metrics`.
//!
//! The server process that hosts the gateway records its gRPC metrics through the same `metrics` facade, so the
//! recorder is installed once per process ([`install_metrics_recorder`] is idempotent) and every layer shares it.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds for every histogram whose name ends in `_seconds` (1 ms … 10 s).
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram buffers are drained when nobody scrapes `/metrics` (keeps memory bounded).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the global `metrics` recorder (once per process) and returns its handle.
///
/// Every later call returns the same handle. If another recorder was installed first by someone else, the handle of
/// a private recorder is returned and a warning is logged: `/metrics` then shows only what that recorder sees.
pub fn install_metrics_recorder() -> PrometheusHandle {
    HANDLE.get_or_init(install).clone()
}

fn install() -> PrometheusHandle {
    let builder = match PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Suffix("_seconds".to_owned()),
        LATENCY_BUCKETS_SECONDS,
    ) {
        Ok(builder) => builder,
        Err(error) => {
            // Only an empty bucket list fails, and the list above is a non-empty constant.
            tracing::error!(%error, "cannot configure metric buckets, using summaries");
            PrometheusBuilder::new()
        }
    };
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if let Err(error) = metrics::set_global_recorder(recorder) {
        tracing::warn!(%error, "a metrics recorder was already installed; /metrics shows a private recorder");
    }
    let upkeep_handle = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep_handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the metrics upkeep thread; histograms drain only when scraped");
    }
    handle
}

/// Serves `/metrics` alone on `listener` until `shutdown` completes: the server process's own metrics when its REST
/// gateway runs in another process (`POINTS_METRICS_ADDR`).
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = install_metrics_recorder();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = handle.render();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
