//! `points-gateway`: the REST gateway as its own process, pointed at one or more (possibly remote) gRPC servers.
//!
//! `points-gateway [serve]` runs it; `points-gateway openapi` prints the OpenAPI document; `points-gateway
//! healthcheck` asks the running gateway on `POINTS_HTTP_ADDR` (this host) for `/healthz` and exits 0 when it
//! answers 200 (container probes: the image has no curl).
//!
//! Env: `POINTS_HTTP_ADDR` (default `0.0.0.0:8030`), `POINTS_LOG_FORMAT` (`pretty` or `json`; the filter is
//! `RUST_LOG`, default `info`), plus the variables of [`GatewayConfig::from_env`]. SIGTERM or Ctrl-C stops accepting
//! connections and finishes in-flight requests.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use points_gateway::{GatewayConfig, install_metrics_recorder, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::EnvFilter;

/// The env var of the listen address.
const ENV_HTTP_ADDR: &str = "POINTS_HTTP_ADDR";
/// The default listen address.
const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8030";
/// The env var of the log format, shared with the server.
const ENV_LOG_FORMAT: &str = "POINTS_LOG_FORMAT";
/// How long `healthcheck` waits for `/healthz`.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1);
    let result = match command.as_deref() {
        None | Some("serve") => run().await,
        Some("openapi") => points_gateway::openapi()
            .to_pretty_json()
            .map(|json| println!("{json}"))
            .map_err(anyhow::Error::from),
        Some("healthcheck") => healthcheck().await,
        Some(other) => Err(anyhow::anyhow!(
            "unknown command {other:?}: expected serve (the default), openapi or healthcheck"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    init_logging()?;
    let config = GatewayConfig::from_env()?;
    let address = listen_address()?;
    install_metrics_recorder();
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    serve(listener, config, shutdown_signal()).await
}

/// Logs as the server does: `POINTS_LOG_FORMAT=json` (one JSON object a line) or `pretty` (the default).
fn init_logging() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match std::env::var(ENV_LOG_FORMAT).ok().as_deref().map(str::trim) {
        None | Some("" | "pretty") => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        Some("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_env_filter(filter)
            .init(),
        Some(other) => anyhow::bail!("{ENV_LOG_FORMAT} must be json or pretty, not {other:?}"),
    }
    Ok(())
}

fn listen_address() -> anyhow::Result<SocketAddr> {
    let text = std::env::var(ENV_HTTP_ADDR).unwrap_or_else(|_| DEFAULT_HTTP_ADDR.to_owned());
    text.parse().with_context(|| {
        format!("{ENV_HTTP_ADDR}={text:?} is not a socket address like {DEFAULT_HTTP_ADDR}")
    })
}

/// `GET /healthz` on this host's listener; Ok on a 200.
async fn healthcheck() -> anyhow::Result<()> {
    let mut address = listen_address()?;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(HEALTHCHECK_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {address} within 3 s"))?
        .with_context(|| format!("GET http://{address}/healthz"))?;
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if status_line.starts_with("HTTP/1.1 200") {
        println!("{address}: {status_line}");
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "GET http://{address}/healthz answered {status_line:?}"
        ))
    }
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
