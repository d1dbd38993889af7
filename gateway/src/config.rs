//! The gateway's settings: where the gRPC service is, the body limit, the request timeout and the admin SPA folder.
//!
//! [`GatewayConfig::from_env`] reads `POINTS_GATEWAY_GRPC_URL`, `POINTS_HTTP_BODY_LIMIT_BYTES`,
//! `POINTS_HTTP_REQUEST_TIMEOUT_MS` and `POINTS_ADMIN_UI_DIR`; every value is checked once here, with an error that
//! names the variable, so a bad deployment fails at start rather than on the first request.

use std::path::PathBuf;
use std::time::Duration;

use crate::admin::AdminUi;

/// The env var naming the gRPC server, e.g. `http://127.0.0.1:50051`, or several replicas separated by commas
/// (`http://points-1:50051,http://points-2:50051`), balanced with failover (see [`crate::backend`]).
pub const ENV_GRPC_URL: &str = "POINTS_GATEWAY_GRPC_URL";
/// The env var of the request body limit in bytes.
pub const ENV_BODY_LIMIT_BYTES: &str = "POINTS_HTTP_BODY_LIMIT_BYTES";
/// The env var of the whole-request timeout in milliseconds.
pub const ENV_REQUEST_TIMEOUT_MS: &str = "POINTS_HTTP_REQUEST_TIMEOUT_MS";
/// The env var of the admin SPA: unset serves the build embedded in the binary, a folder serves that folder (e.g.
/// `admin-ui/dist` while working on the app), empty or `off` disables `/admin`.
pub const ENV_ADMIN_UI_DIR: &str = "POINTS_ADMIN_UI_DIR";

/// The env var of the REST listener's bound on open connections (SPEC §14).
pub const ENV_CONNECTIONS_MAX: &str = "POINTS_HTTP_CONNECTIONS_MAX";
/// The env var of the REST listener's idle timeout: a connection without traffic this long is closed.
pub const ENV_IDLE_TIMEOUT_MS: &str = "POINTS_HTTP_IDLE_TIMEOUT_MS";
/// The env var of the token the gateway proves itself with to the points service (`x-points-gateway-token`), so
/// that its calls are recorded with the `rest` transport; the server reads the same variable. A standalone gateway
/// without it still works, and its calls are recorded as `grpc`.
pub const ENV_GATEWAY_TOKEN: &str = "POINTS_GATEWAY_TOKEN";
/// Shortest accepted gateway token.
pub const GATEWAY_TOKEN_LENGTH_MIN: usize = 32;
/// Longest accepted gateway token.
pub const GATEWAY_TOKEN_LENGTH_MAX: usize = 256;

/// How long a new connection may take to send its first request's headers (slowloris), in milliseconds.
pub const ENV_HEADER_READ_TIMEOUT_MS: &str = "POINTS_HTTP_HEADER_READ_TIMEOUT_MS";

/// Default gRPC address: the server's default port on this machine.
pub const DEFAULT_GRPC_URL: &str = "http://127.0.0.1:50051";
/// Default body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 1024 * 1024;
/// Default request timeout: 10 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Smallest accepted body limit: below this not even a small earn request fits.
pub const BODY_LIMIT_BYTES_MIN: usize = 1024;
/// Largest accepted body limit (64 MiB): a batch of 1,000 operations is far below it.
pub const BODY_LIMIT_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Smallest accepted request timeout in milliseconds.
pub const REQUEST_TIMEOUT_MS_MIN: u64 = 10;
/// Largest accepted request timeout in milliseconds (10 minutes).
pub const REQUEST_TIMEOUT_MS_MAX: u64 = 600_000;

/// How the gateway is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The gRPC server, e.g. `"http://127.0.0.1:50051"`, or several separated by commas (see [`Self::grpc_urls`]).
    pub grpc_url: String,
    /// The largest accepted request body; larger bodies get 400 / 40001.
    pub body_limit_bytes: usize,
    /// The longest a request may take end to end (also sent as the gRPC deadline); past it, 503 / 50301.
    pub request_timeout: std::time::Duration,
    /// What `/admin` serves.
    pub admin_ui: crate::admin::AdminUi,
    /// Open connections at most, and the idle timeout (above the request timeout).
    pub connection_limits: crate::connections::ConnectionLimits,
    /// The token sent as `x-points-gateway-token` (see [`ENV_GATEWAY_TOKEN`]); `None` sends none.
    pub gateway_token: Option<String>,
}

/// Checks a gateway token: 32–256 visible ASCII characters (it travels as a header). Returns it, or why not.
pub fn validate_gateway_token(token: &str) -> Result<String, String> {
    let length_ok = (GATEWAY_TOKEN_LENGTH_MIN..=GATEWAY_TOKEN_LENGTH_MAX).contains(&token.len());
    if length_ok && token.bytes().all(|byte| byte.is_ascii_graphic()) {
        Ok(token.to_owned())
    } else {
        Err(format!(
            "{ENV_GATEWAY_TOKEN} must be {GATEWAY_TOKEN_LENGTH_MIN}-{GATEWAY_TOKEN_LENGTH_MAX} visible ASCII \
             characters (e.g. 64 hex digits: openssl rand -hex 32)"
        ))
    }
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The gRPC URL is not an absolute `http://host:port` URL.
    #[error(
        "{variable}={value:?} is not a gRPC URL: {reason} (expected e.g. http://127.0.0.1:50051)"
    )]
    GrpcUrl {
        /// The variable (or field) name.
        variable: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The gateway token is not 32–256 visible ASCII characters.
    #[error("{0}")]
    GatewayToken(String),
    /// A number is not a number or is out of range.
    #[error("{variable}={value:?} is invalid: expected an integer from {min} to {max}")]
    OutOfRange {
        /// The variable (or field) name.
        variable: &'static str,
        /// The rejected value.
        value: String,
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            grpc_url: DEFAULT_GRPC_URL.to_owned(),
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            admin_ui: AdminUi::Embedded,
            connection_limits: crate::connections::ConnectionLimits::default(),
            gateway_token: None,
        }
    }
}

impl GatewayConfig {
    /// The defaults, pointed at `grpc_url`.
    pub fn new(grpc_url: impl Into<String>) -> GatewayConfig {
        GatewayConfig {
            grpc_url: grpc_url.into(),
            ..GatewayConfig::default()
        }
    }

    /// Reads the settings from the process environment (unset variables take their defaults) and validates them.
    pub fn from_env() -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (tests, or a caller with its own source).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<GatewayConfig, ConfigError> {
        let defaults = GatewayConfig::default();
        let grpc_url = lookup(ENV_GRPC_URL).unwrap_or(defaults.grpc_url);
        let body_limit_bytes = match lookup(ENV_BODY_LIMIT_BYTES) {
            Some(value) => parse_in_range(
                ENV_BODY_LIMIT_BYTES,
                &value,
                BODY_LIMIT_BYTES_MIN as u64,
                BODY_LIMIT_BYTES_MAX as u64,
            )? as usize,
            None => defaults.body_limit_bytes,
        };
        let request_timeout = match lookup(ENV_REQUEST_TIMEOUT_MS) {
            Some(value) => Duration::from_millis(parse_in_range(
                ENV_REQUEST_TIMEOUT_MS,
                &value,
                REQUEST_TIMEOUT_MS_MIN,
                REQUEST_TIMEOUT_MS_MAX,
            )?),
            None => defaults.request_timeout,
        };
        let admin_ui = match lookup(ENV_ADMIN_UI_DIR) {
            Some(value) if value.trim().is_empty() || value.trim() == "off" => AdminUi::Disabled,
            Some(value) => AdminUi::Directory(PathBuf::from(value)),
            None => defaults.admin_ui,
        };
        let connection_limits = crate::connections::ConnectionLimits {
            connections_max: match lookup(ENV_CONNECTIONS_MAX) {
                Some(value) => parse_in_range(ENV_CONNECTIONS_MAX, &value, 1, 1_000_000)? as usize,
                None => defaults.connection_limits.connections_max,
            },
            idle_timeout: match lookup(ENV_IDLE_TIMEOUT_MS) {
                Some(value) => Duration::from_millis(parse_in_range(
                    ENV_IDLE_TIMEOUT_MS,
                    &value,
                    100,
                    3_600_000,
                )?),
                None => defaults.connection_limits.idle_timeout,
            },
            header_read_timeout: match lookup(ENV_HEADER_READ_TIMEOUT_MS) {
                Some(value) => Duration::from_millis(parse_in_range(
                    ENV_HEADER_READ_TIMEOUT_MS,
                    &value,
                    100,
                    600_000,
                )?),
                None => defaults.connection_limits.header_read_timeout,
            },
        };
        if lookup(ENV_IDLE_TIMEOUT_MS).is_some()
            && connection_limits.idle_timeout <= request_timeout
        {
            return Err(ConfigError::OutOfRange {
                variable: ENV_IDLE_TIMEOUT_MS,
                value: format!(
                    "{}ms (not above the request timeout)",
                    connection_limits.idle_timeout.as_millis()
                ),
                min: request_timeout.as_millis() as u64 + 1,
                max: 3_600_000,
            });
        }
        let gateway_token = lookup(ENV_GATEWAY_TOKEN)
            .filter(|token| !token.trim().is_empty())
            .map(|token| validate_gateway_token(&token).map_err(ConfigError::GatewayToken))
            .transpose()?;
        let config = GatewayConfig {
            gateway_token,
            connection_limits,
            grpc_url,
            body_limit_bytes,
            request_timeout,
            admin_ui,
        };
        config.validate_named(ENV_GRPC_URL, ENV_BODY_LIMIT_BYTES, ENV_REQUEST_TIMEOUT_MS)?;
        Ok(config)
    }

    /// The gRPC backends `grpc_url` lists (one or more, comma-separated, blanks around commas ignored).
    pub fn grpc_urls(&self) -> Vec<&str> {
        self.grpc_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect()
    }

    /// Checks a configuration built in code (the router calls it too).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_named("grpc_url", "body_limit_bytes", "request_timeout")
    }

    fn validate_named(
        &self,
        grpc_url_name: &'static str,
        body_limit_name: &'static str,
        timeout_name: &'static str,
    ) -> Result<(), ConfigError> {
        let urls = self.grpc_urls();
        if urls.is_empty() {
            return Err(ConfigError::GrpcUrl {
                variable: grpc_url_name,
                value: self.grpc_url.clone(),
                reason: "no URL given".to_owned(),
            });
        }
        for (index, url) in urls.iter().enumerate() {
            validate_grpc_url(grpc_url_name, url)?;
            if urls[..index].contains(url) {
                return Err(ConfigError::GrpcUrl {
                    variable: grpc_url_name,
                    value: self.grpc_url.clone(),
                    reason: format!("{url} is listed twice"),
                });
            }
        }
        self.validate_limits_named(body_limit_name, timeout_name)
    }

    /// Checks what an in-process gateway uses (everything but the gRPC URLs, which it does not).
    pub(crate) fn validate_in_process(&self) -> Result<(), ConfigError> {
        self.validate_limits_named("body_limit_bytes", "request_timeout")
    }

    fn validate_limits_named(
        &self,
        body_limit_name: &'static str,
        timeout_name: &'static str,
    ) -> Result<(), ConfigError> {
        let body_limit = self.body_limit_bytes as u64;
        if !(BODY_LIMIT_BYTES_MIN as u64..=BODY_LIMIT_BYTES_MAX as u64).contains(&body_limit) {
            return Err(ConfigError::OutOfRange {
                variable: body_limit_name,
                value: body_limit.to_string(),
                min: BODY_LIMIT_BYTES_MIN as u64,
                max: BODY_LIMIT_BYTES_MAX as u64,
            });
        }
        let timeout_ms = self.request_timeout.as_millis();
        if !(u128::from(REQUEST_TIMEOUT_MS_MIN)..=u128::from(REQUEST_TIMEOUT_MS_MAX))
            .contains(&timeout_ms)
        {
            return Err(ConfigError::OutOfRange {
                variable: timeout_name,
                value: format!("{timeout_ms}ms"),
                min: REQUEST_TIMEOUT_MS_MIN,
                max: REQUEST_TIMEOUT_MS_MAX,
            });
        }
        Ok(())
    }
}

fn parse_in_range(
    variable: &'static str,
    value: &str,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let out_of_range = || ConfigError::OutOfRange {
        variable,
        value: value.to_owned(),
        min,
        max,
    };
    let number: u64 = value.trim().parse().map_err(|_| out_of_range())?;
    if (min..=max).contains(&number) {
        Ok(number)
    } else {
        Err(out_of_range())
    }
}

fn validate_grpc_url(variable: &'static str, value: &str) -> Result<(), ConfigError> {
    let error = |reason: &str| ConfigError::GrpcUrl {
        variable,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = value.parse().map_err(|_| error("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(error(
                "https is not supported by this build; use http inside the deployment",
            ));
        }
        _ => return Err(error("the scheme must be http://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(error("the host is missing"));
    }
    if uri
        .path_and_query()
        .is_some_and(|path| path.as_str() != "/" && !path.as_str().is_empty())
    {
        return Err(error("a path is not allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_from(vars: &[(&str, &str)]) -> Result<GatewayConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        GatewayConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn unset_variables_take_the_defaults() {
        let config = config_from(&[]).expect("defaults are valid");
        assert_eq!(config, GatewayConfig::default());
        assert_eq!(config.grpc_url, "http://127.0.0.1:50051");
        assert_eq!(config.body_limit_bytes, 1024 * 1024);
        assert_eq!(config.admin_ui, AdminUi::Embedded);
    }

    #[test]
    fn set_variables_are_read() {
        let config = config_from(&[
            (ENV_GRPC_URL, "http://points:50051"),
            (ENV_BODY_LIMIT_BYTES, "2048"),
            (ENV_REQUEST_TIMEOUT_MS, "1500"),
            (ENV_ADMIN_UI_DIR, "/srv/admin"),
        ])
        .expect("valid");
        assert_eq!(config.grpc_url, "http://points:50051");
        assert_eq!(config.body_limit_bytes, 2048);
        assert_eq!(config.request_timeout, Duration::from_millis(1500));
        assert_eq!(
            config.admin_ui,
            AdminUi::Directory(PathBuf::from("/srv/admin"))
        );
    }

    #[test]
    fn several_backends_are_listed_with_commas() {
        let config = config_from(&[(
            ENV_GRPC_URL,
            "http://points-1:50051, http://points-2:50051,",
        )])
        .expect("valid");
        assert_eq!(
            config.grpc_urls(),
            ["http://points-1:50051", "http://points-2:50051"]
        );
    }

    #[test]
    fn an_empty_admin_dir_disables_admin() {
        for value in ["", "off"] {
            let config = config_from(&[(ENV_ADMIN_UI_DIR, value)]).expect("valid");
            assert_eq!(config.admin_ui, AdminUi::Disabled);
        }
    }

    #[test]
    fn bad_values_are_rejected_with_the_variable_name() {
        let bad = [
            (ENV_GRPC_URL, "127.0.0.1:50051"),
            (ENV_GRPC_URL, "https://points:50051"),
            (ENV_GRPC_URL, "http://points:50051/v1"),
            (ENV_GRPC_URL, "not a url"),
            (ENV_GRPC_URL, " , "),
            (ENV_GRPC_URL, "http://a:50051,http://a:50051"),
            (ENV_GRPC_URL, "http://a:50051,b:50051"),
            (ENV_BODY_LIMIT_BYTES, "lots"),
            (ENV_BODY_LIMIT_BYTES, "10"),
            (ENV_BODY_LIMIT_BYTES, "1000000000000"),
            (ENV_REQUEST_TIMEOUT_MS, "0"),
            (ENV_REQUEST_TIMEOUT_MS, "-5"),
        ];
        for (variable, value) in bad {
            let error = config_from(&[(variable, value)]).expect_err(value);
            assert!(error.to_string().contains(variable), "{error}");
        }
    }
}
