//! Logging: `tracing` with an env filter (`RUST_LOG`, default `info`) in json or pretty format.

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), which tests rely on.
pub fn init(format: LogFormat) {
    init_with_default_filter(format, "info");
}

/// Like [`init`], with the filter used when `RUST_LOG` is unset (tests pass `warn`).
pub fn init_with_default_filter(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_current_span(true))
            .try_init(),
        LogFormat::Pretty => {
            // Colours only on a terminal: redirected logs stay plain text.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
            registry
                .with(fmt::layer().compact().with_ansi(ansi))
                .try_init()
        }
    };
}
