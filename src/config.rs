//! Settings from the environment, validated once at start with messages that name the variable.
//!
//! Every bound the service has (pool, timeouts, message size, cache lifetime, concurrency) is here, explicit,
//! with its unit in the name. See the configuration table in README.md.

use std::{net::SocketAddr, str::FromStr, time::Duration};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// What sits between the service and PostgreSQL (`POINTS_DATABASE_POOL_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Direct connections, or a pooler that gives each client connection a server session of its own: the
    /// service's session defaults (`search_path = pg_catalog`, its timeouts) travel in each connection's startup.
    Session,
    /// A transaction-mode pooler (pgbouncer `pool_mode = transaction`): server sessions are shared, so the service
    /// keeps no session state on them and sends no startup options; its session defaults are stored once as the
    /// settings of its role in its database (over the direct connection), which every new server session starts
    /// with. Needs `POINTS_LISTEN_DATABASE_URL`.
    Transaction,
}

/// The prefix of issued keys: `lp_live_` or `lp_test_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEnvironment {
    Live,
    Test,
}

/// Default database URL (SPEC §2).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/points";
/// The key-hash secret used when none is configured. Fine for a laptop, logged as a warning at start.
pub const DEVELOPMENT_KEY_HASH_SECRET: &str = "development-only-key-hash-secret-change-me!";
/// The shortest key-hash secret accepted.
pub const KEY_HASH_SECRET_LENGTH_MIN: usize = 32;

/// All settings of the server process.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    /// A direct connection for LISTEN/NOTIFY (`POINTS_LISTEN_DATABASE_URL`), when `database_url` goes through a pooler
    /// that cannot keep a session's LISTEN (pgbouncer in transaction mode); `None`: `database_url`.
    pub listen_database_url: Option<String>,
    pub database_pool_mode: PoolMode,
    pub grpc_addr: SocketAddr,
    /// `None` when the in-process REST gateway is disabled (`POINTS_HTTP_ADDR=off`).
    pub http_addr: Option<SocketAddr>,
    /// The server's own Prometheus `/metrics` listener (`POINTS_METRICS_ADDR`), for deployments whose REST gateway
    /// runs in another process; `None` (unset or `off`): only the in-process gateway's `/metrics` shows them.
    pub metrics_addr: Option<SocketAddr>,
    /// How long the first database connect at start is retried, with backoff, before giving up
    /// (`POINTS_DB_STARTUP_RETRY_MS`; 0: one attempt).
    pub db_startup_retry: Duration,
    pub db_pool_size: usize,
    pub db_pool_wait_timeout: Duration,
    pub db_connect_timeout: Duration,
    pub db_statement_timeout: Duration,
    pub key_hash_secret: String,
    pub key_hash_secret_is_default: bool,
    /// The secret being rotated away from (`POINTS_KEY_HASH_SECRET_PREVIOUS`): a key whose hash under the current
    /// secret is unknown is looked up under this one too, and re-hashed under the current secret when found.
    pub key_hash_secret_previous: Option<String>,
    pub key_environment: KeyEnvironment,
    pub bootstrap_admin_key: Option<String>,
    pub log_format: LogFormat,
    pub request_timeout: Duration,
    pub grpc_message_size_bytes_max: usize,
    pub migration_concurrency: usize,
    pub key_cache_ttl: Duration,
    pub last_used_flush_interval: Duration,
    pub shutdown_timeout: Duration,
    /// `None` when the expiry sweeper is off (`POINTS_EXPIRY_SWEEP_INTERVAL_MS=0`).
    pub expiry_sweep_interval: Option<Duration>,
    pub expiry_sweep_batch_size: i64,
    pub audit_flush_interval: Duration,
    pub audit_buffer_capacity: usize,
    /// Token bucket of each API key, and of each merchant (SPEC §14).
    pub rate_limit_key: crate::auth::limits::Limit,
    pub rate_limit_merchant: crate::auth::limits::Limit,
    /// How often refused calls over an address's recording budget are written as one summary record each.
    pub refusal_summary_interval: Duration,
    /// The gRPC listener's bound on open connections and its idle timeout (above the request timeout).
    pub grpc_connection_limits: points_gateway::connections::ConnectionLimits,
    /// Calls handled at once; beyond it a call is answered UNAVAILABLE at once (load shedding).
    pub in_flight_max: usize,
    /// Lanes of the ledger's fast path per tenant (0: every mutation in a transaction of its own).
    pub ledger_lanes: usize,
    /// Batches a lane may have sent to its connection ahead of the one running (1: one at a time).
    pub ledger_pipeline_depth: usize,
    /// What a REST gateway sends in `x-points-gateway-token` to have its calls recorded as `rest`:
    /// `POINTS_GATEWAY_TOKEN` (shared with a separately deployed gateway), or one drawn at start for the
    /// in-process gateway.
    pub gateway_token: String,
}

/// A gateway token for this process only (64 hex digits), when none is configured.
fn random_gateway_token() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A setting that could not be used; the message names the variable and what it accepts.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let key_hash_secret = get("POINTS_KEY_HASH_SECRET");
        let key_hash_secret_is_default = key_hash_secret.is_none();
        let key_hash_secret =
            key_hash_secret.unwrap_or_else(|| DEVELOPMENT_KEY_HASH_SECRET.to_owned());
        if key_hash_secret.len() < KEY_HASH_SECRET_LENGTH_MIN {
            return Err(ConfigError(format!(
                "POINTS_KEY_HASH_SECRET must be at least {KEY_HASH_SECRET_LENGTH_MIN} characters"
            )));
        }
        let key_hash_secret_previous = get("POINTS_KEY_HASH_SECRET_PREVIOUS");
        if let Some(previous) = &key_hash_secret_previous {
            if previous.len() < KEY_HASH_SECRET_LENGTH_MIN {
                return Err(ConfigError(format!(
                    "POINTS_KEY_HASH_SECRET_PREVIOUS must be at least {KEY_HASH_SECRET_LENGTH_MIN} characters"
                )));
            }
            if *previous == key_hash_secret {
                return Err(ConfigError(
                    "POINTS_KEY_HASH_SECRET_PREVIOUS equals POINTS_KEY_HASH_SECRET: set it to the secret being \
                     replaced, or unset it"
                        .to_owned(),
                ));
            }
        }
        let metrics_addr = match get("POINTS_METRICS_ADDR").as_deref() {
            None | Some("off") => None,
            Some(value) => Some(parse_value(
                "POINTS_METRICS_ADDR",
                value,
                "a socket address like 0.0.0.0:9090 or off",
            )?),
        };
        let http_addr = match get("POINTS_HTTP_ADDR").as_deref() {
            Some("off") => None,
            Some(value) => Some(parse_value(
                "POINTS_HTTP_ADDR",
                value,
                "a socket address like 0.0.0.0:8030 or off",
            )?),
            None => Some(SocketAddr::from(([0, 0, 0, 0], 8030))),
        };
        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        tokio_postgres::Config::from_str(&database_url).map_err(|error| {
            ConfigError(format!(
                "DATABASE_URL is not a valid PostgreSQL URL: {error}"
            ))
        })?;
        let listen_database_url = get("POINTS_LISTEN_DATABASE_URL");
        if let Some(url) = &listen_database_url {
            tokio_postgres::Config::from_str(url).map_err(|error| {
                ConfigError(format!(
                    "POINTS_LISTEN_DATABASE_URL is not a valid PostgreSQL URL: {error}"
                ))
            })?;
        }
        let database_pool_mode = match get("POINTS_DATABASE_POOL_MODE").as_deref() {
            None | Some("session") => PoolMode::Session,
            Some("transaction") => PoolMode::Transaction,
            Some(other) => {
                return Err(ConfigError(format!(
                    "POINTS_DATABASE_POOL_MODE must be session or transaction, not {other:?}"
                )));
            }
        };
        if database_pool_mode == PoolMode::Transaction && listen_database_url.is_none() {
            return Err(ConfigError(
                "POINTS_DATABASE_POOL_MODE=transaction needs POINTS_LISTEN_DATABASE_URL: a direct connection to the \
                 same database, for LISTEN/NOTIFY and the service's session defaults, which a transaction-mode \
                 pooler cannot keep"
                    .to_owned(),
            ));
        }
        let config = Config {
            database_url,
            listen_database_url,
            database_pool_mode,
            grpc_addr: parse_or(
                &get,
                "POINTS_GRPC_ADDR",
                SocketAddr::from(([0, 0, 0, 0], 50051)),
                "a socket address",
            )?,
            http_addr,
            metrics_addr,
            db_startup_retry: millis(&get, "POINTS_DB_STARTUP_RETRY_MS", 60_000, 0, 3_600_000)?,
            db_pool_size: bounded(&get, "POINTS_DB_POOL_SIZE", 16, 1, 1000)?,
            db_pool_wait_timeout: millis(&get, "POINTS_DB_POOL_WAIT_MS", 2000, 1, 600_000)?,
            db_connect_timeout: millis(&get, "POINTS_DB_CONNECT_TIMEOUT_MS", 3000, 1, 600_000)?,
            db_statement_timeout: millis(
                &get,
                "POINTS_DB_STATEMENT_TIMEOUT_MS",
                5000,
                1,
                3_600_000,
            )?,
            key_hash_secret,
            key_hash_secret_is_default,
            key_hash_secret_previous,
            key_environment: match get("POINTS_KEY_ENVIRONMENT").as_deref() {
                None | Some("live") => KeyEnvironment::Live,
                Some("test") => KeyEnvironment::Test,
                Some(other) => {
                    return Err(ConfigError(format!(
                        "POINTS_KEY_ENVIRONMENT must be live or test, not {other:?}"
                    )));
                }
            },
            bootstrap_admin_key: get("POINTS_BOOTSTRAP_ADMIN_KEY"),
            log_format: match get("POINTS_LOG_FORMAT").as_deref() {
                None | Some("pretty") => LogFormat::Pretty,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(ConfigError(format!(
                        "POINTS_LOG_FORMAT must be json or pretty, not {other:?}"
                    )));
                }
            },
            request_timeout: millis(&get, "POINTS_REQUEST_TIMEOUT_MS", 15_000, 1, 600_000)?,
            grpc_message_size_bytes_max: bounded(
                &get,
                "POINTS_GRPC_MESSAGE_SIZE_BYTES_MAX",
                4 << 20,
                1024,
                64 << 20,
            )?,
            migration_concurrency: bounded(&get, "POINTS_MIGRATION_CONCURRENCY", 4, 1, 64)?,
            key_cache_ttl: millis(&get, "POINTS_KEY_CACHE_TTL_MS", 5000, 0, 3_600_000)?,
            last_used_flush_interval: millis(
                &get,
                "POINTS_LAST_USED_FLUSH_MS",
                5000,
                10,
                3_600_000,
            )?,
            shutdown_timeout: millis(&get, "POINTS_SHUTDOWN_TIMEOUT_MS", 20_000, 1, 600_000)?,
            expiry_sweep_interval: Some(millis(
                &get,
                "POINTS_EXPIRY_SWEEP_INTERVAL_MS",
                30_000,
                0,
                86_400_000,
            )?)
            .filter(|interval| !interval.is_zero()),
            expiry_sweep_batch_size: bounded(
                &get,
                "POINTS_EXPIRY_SWEEP_BATCH_SIZE",
                500,
                1,
                10_000,
            )?,
            audit_flush_interval: millis(&get, "POINTS_AUDIT_FLUSH_MS", 200, 1, 60_000)?,
            audit_buffer_capacity: bounded(
                &get,
                "POINTS_AUDIT_BUFFER_CAPACITY",
                10_000,
                1,
                1_000_000,
            )?,
            rate_limit_key: rate_limit(&get, "KEY", 10_000, 20_000)?,
            rate_limit_merchant: rate_limit(&get, "MERCHANT", 20_000, 40_000)?,
            grpc_connection_limits: points_gateway::connections::ConnectionLimits {
                connections_max: bounded(
                    &get,
                    "POINTS_GRPC_CONNECTIONS_MAX",
                    10_000,
                    1,
                    1_000_000,
                )?,
                idle_timeout: millis(&get, "POINTS_GRPC_IDLE_TIMEOUT_MS", 60_000, 100, 3_600_000)?,
                header_read_timeout: millis(
                    &get,
                    "POINTS_GRPC_HEADER_READ_TIMEOUT_MS",
                    10_000,
                    100,
                    600_000,
                )?,
            },
            in_flight_max: bounded(&get, "POINTS_IN_FLIGHT_MAX", 4_096, 1, 1_000_000)?,
            ledger_lanes: bounded(&get, "POINTS_LEDGER_LANES", 1, 0, 64)?,
            ledger_pipeline_depth: bounded(&get, "POINTS_LEDGER_PIPELINE_DEPTH", 2, 1, 8)?,
            gateway_token: match get("POINTS_GATEWAY_TOKEN") {
                Some(token) => {
                    points_gateway::config::validate_gateway_token(&token).map_err(ConfigError)?
                }
                None => random_gateway_token(),
            },
            refusal_summary_interval: millis(
                &get,
                "POINTS_REFUSAL_SUMMARY_INTERVAL_MS",
                60_000,
                100,
                3_600_000,
            )?,
        };
        if config.grpc_connection_limits.idle_timeout <= config.request_timeout {
            return Err(ConfigError(format!(
                "POINTS_GRPC_IDLE_TIMEOUT_MS ({} ms) must be above POINTS_REQUEST_TIMEOUT_MS ({} ms): an idle \
                 connection is closed, and a call still being worked on must not be",
                config.grpc_connection_limits.idle_timeout.as_millis(),
                config.request_timeout.as_millis()
            )));
        }
        Ok(config)
    }

    /// The pool size is also the bound on concurrent database work; keep the connection count honest.
    pub fn describe(&self) -> String {
        format!(
            "grpc={} http={} pool={} statement_timeout_ms={}",
            self.grpc_addr,
            self.http_addr
                .map_or_else(|| "off".to_owned(), |addr| addr.to_string()),
            self.db_pool_size,
            self.db_statement_timeout.as_millis()
        )
    }
}

fn parse_value<T: FromStr>(name: &str, value: &str, expected: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError(format!("{name} must be {expected}, got {value:?}")))
}

fn parse_or<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    expected: &str,
) -> Result<T, ConfigError> {
    match get(name) {
        Some(value) => parse_value(name, &value, expected),
        None => Ok(default),
    }
}

/// `POINTS_RATE_LIMIT_<WHAT>_PER_SECOND` and `..._BURST`, each 1..=10,000,000.
fn rate_limit(
    get: &impl Fn(&str) -> Option<String>,
    what: &str,
    per_second: u32,
    burst: u32,
) -> Result<crate::auth::limits::Limit, ConfigError> {
    let per_second = bounded(
        get,
        &format!("POINTS_RATE_LIMIT_{what}_PER_SECOND"),
        per_second,
        1,
        10_000_000,
    )?;
    let burst = bounded(
        get,
        &format!("POINTS_RATE_LIMIT_{what}_BURST"),
        burst,
        1,
        10_000_000,
    )?;
    Ok(crate::auth::limits::Limit {
        per_second: std::num::NonZeroU32::new(per_second).unwrap_or(std::num::NonZeroU32::MIN),
        burst: std::num::NonZeroU32::new(burst).unwrap_or(std::num::NonZeroU32::MIN),
    })
}

fn bounded<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let value = parse_or(get, name, default, &format!("an integer in {min}..={max}"))?;
    if value < min || value > max {
        return Err(ConfigError(format!(
            "{name} must be in {min}..={max}, got {value}"
        )));
    }
    Ok(value)
}

fn millis(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    bounded(get, name, default, min, max).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_valid() {
        let config = config_with(&[]).expect("defaults");
        assert_eq!(config.grpc_addr.port(), 50051);
        assert_eq!(config.http_addr.map(|a| a.port()), Some(8030));
        assert!(config.key_hash_secret_is_default);
        // Without POINTS_GATEWAY_TOKEN each process draws its own, for its in-process gateway.
        let other = config_with(&[]).expect("defaults");
        assert_eq!(config.gateway_token.len(), 64);
        assert_ne!(config.gateway_token, other.gateway_token);
    }

    #[test]
    fn an_expiry_sweep_interval_of_zero_turns_the_sweeper_off() {
        let default = config_with(&[]).expect("defaults").expiry_sweep_interval;
        assert_eq!(default, Some(Duration::from_secs(30)));
        let off = config_with(&[("POINTS_EXPIRY_SWEEP_INTERVAL_MS", "0")]).expect("off");
        assert_eq!(off.expiry_sweep_interval, None);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("POINTS_DB_POOL_SIZE", "0"),
            ("POINTS_DB_POOL_SIZE", "many"),
            ("POINTS_GRPC_ADDR", "nowhere"),
            ("POINTS_LOG_FORMAT", "xml"),
            ("POINTS_KEY_HASH_SECRET", "short"),
            ("POINTS_KEY_HASH_SECRET_PREVIOUS", "short"),
            (
                "POINTS_KEY_HASH_SECRET_PREVIOUS",
                super::DEVELOPMENT_KEY_HASH_SECRET,
            ),
            ("POINTS_METRICS_ADDR", "everywhere"),
            ("POINTS_DB_STARTUP_RETRY_MS", "-1"),
            ("POINTS_GATEWAY_TOKEN", "short"),
            (
                "POINTS_GATEWAY_TOKEN",
                "a token with spaces in it, long enough to pass the length",
            ),
            ("DATABASE_URL", "postgres://a:b@/x?sslmode=nonsense"),
            ("POINTS_DATABASE_POOL_MODE", "statement"),
            ("POINTS_DATABASE_POOL_MODE", "transaction"),
            (
                "POINTS_LISTEN_DATABASE_URL",
                "postgres://a:b@/x?sslmode=nonsense",
            ),
        ] {
            let error = config_with(&[(name, value)]).expect_err(name).to_string();
            assert!(error.contains(name), "{error}");
        }
    }
}
