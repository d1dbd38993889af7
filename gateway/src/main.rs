//! `points-gateway`: the REST gateway as its own process, pointed at a (possibly remote) gRPC server.
//!
//! Env: `POINTS_HTTP_ADDR` (default `0.0.0.0:8030`) plus the variables of [`GatewayConfig::from_env`]; logs follow
//! `RUST_LOG` (default `info`). SIGTERM or Ctrl-C stops accepting connections and finishes in-flight requests.
//! `points-gateway openapi` prints the OpenAPI document and exits.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use anyhow::Context;
use points_gateway::{GatewayConfig, install_metrics_recorder, serve};
use tracing_subscriber::EnvFilter;

/// The env var of the listen address.
const ENV_HTTP_ADDR: &str = "POINTS_HTTP_ADDR";
/// The default listen address.
const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8030";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        println!("{}", points_gateway::openapi().to_pretty_json()?);
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = GatewayConfig::from_env()?;
    let address_text =
        std::env::var(ENV_HTTP_ADDR).unwrap_or_else(|_| DEFAULT_HTTP_ADDR.to_owned());
    let address: SocketAddr = address_text.parse().with_context(|| {
        format!("{ENV_HTTP_ADDR}={address_text:?} is not a socket address like {DEFAULT_HTTP_ADDR}")
    })?;
    install_metrics_recorder();
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    serve(listener, config, shutdown_signal()).await
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received, finishing in-flight requests");
}
