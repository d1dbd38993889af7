//! PostgreSQL access: the connection pool, database creation, migrations and the SQL of each resource.
//!
//! Every connection starts with `search_path = pg_catalog`: `public` is never searched, so shared tables are
//! always written `public.<table>`, and tenant tables are only visible inside a transaction that ran
//! [`crate::tenancy::begin_tenant_transaction`], which sets the search path with `set_config(.., true)` — it ends with
//! the transaction, committed or rolled back, so a pooled connection never carries one tenant's path to the next.

/// `$T { field: row.get("field"), ... }`: a struct whose fields are the row's columns of the same names.
macro_rules! from_columns {
    ($row:expr => $T:ident { $($field:ident),+ $(,)? }) => {
        $T { $($field: $row.get(stringify!($field))),+ }
    };
}

pub mod api_keys;
pub mod audit;
pub mod holds;
pub mod ledger;
pub mod merchants;
pub mod migrations;
pub mod reports;
pub mod rules;
pub mod sql;

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::{Config, PoolMode};
use crate::store::sql::params;

/// The search path every pooled connection has outside a tenant transaction.
pub const DEFAULT_SEARCH_PATH: &str = "pg_catalog";

/// The session defaults of every connection of the service: no schema searched but `pg_catalog`, and its timeouts.
pub fn session_defaults(config: &Config) -> Vec<(&'static str, String)> {
    let statement_timeout_ms = config.db_statement_timeout.as_millis();
    vec![
        ("search_path", DEFAULT_SEARCH_PATH.to_owned()),
        ("statement_timeout", statement_timeout_ms.to_string()),
        (
            "idle_in_transaction_session_timeout",
            (statement_timeout_ms * 2).to_string(),
        ),
        ("lock_timeout", statement_timeout_ms.to_string()),
    ]
}

/// `-c name=value ...`: the session defaults as a connection's startup `options`.
fn startup_options(config: &Config) -> String {
    session_defaults(config)
        .iter()
        .map(|(name, value)| format!("-c {name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The settings of the pool's connections (`DATABASE_URL`). In session mode they carry the session defaults; behind a
/// transaction-mode pooler they carry none (the pooler would refuse them, and could not keep them per client):
/// [`store_session_defaults`] has stored them as the role's settings in the database instead.
pub fn postgres_config(config: &Config) -> anyhow::Result<tokio_postgres::Config> {
    let mut pg = tokio_postgres::Config::from_str(&config.database_url)?;
    if config.database_pool_mode == PoolMode::Session {
        pg.options(startup_options(config));
    }
    pg.application_name("points");
    pg.connect_timeout(config.db_connect_timeout);
    Ok(pg)
}

/// The settings of a direct connection to PostgreSQL, past any pooler: `POINTS_LISTEN_DATABASE_URL` when set, else the
/// pool's URL; always with the session defaults. For LISTEN/NOTIFY, creating the database and storing the session
/// defaults.
pub fn direct_postgres_config(config: &Config) -> anyhow::Result<tokio_postgres::Config> {
    let Some(url) = &config.listen_database_url else {
        let mut pg = postgres_config(config)?;
        pg.options(startup_options(config));
        return Ok(pg);
    };
    let mut pg = tokio_postgres::Config::from_str(url)?;
    pg.options(startup_options(config));
    pg.connect_timeout(config.db_connect_timeout);
    pg.application_name("points-direct");
    Ok(pg)
}

/// Behind a transaction-mode pooler: makes the session defaults the settings of the service's role in its database
/// (`ALTER ROLE .. IN DATABASE .. SET`), over the direct connection, so that every server session the pooler opens
/// starts with them; then checks through the pool that its sessions have them. Does nothing in session mode.
///
/// The settings are written only when they differ from what is stored. A pooler's server sessions opened before
/// they were stored keep the old values until they are closed (pgbouncer: `RECONNECT`, or `server_lifetime`); the
/// check reports that as a warning, naming the setting.
pub async fn store_session_defaults(config: &Config, pool: &Pool) -> anyhow::Result<()> {
    if config.database_pool_mode != PoolMode::Transaction {
        return Ok(());
    }
    let wanted = session_defaults(config);
    let (client, connection) = direct_postgres_config(config)?.connect(NoTls).await?;
    let connection_task = tokio::spawn(connection);
    let row = client
        .query_typed_one(
            "SELECT current_user::text, current_database()::text, \
             coalesce((SELECT s.setconfig FROM pg_db_role_setting s \
               WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
                 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())), '{}')",
            &[],
        )
        .await?;
    let (role, database, stored): (String, String, Vec<String>) =
        (row.get(0), row.get(1), row.get(2));
    let missing: Vec<&(&str, String)> = wanted
        .iter()
        .filter(|(name, value)| !stored.contains(&format!("{name}={value}")))
        .collect();
    if !missing.is_empty() {
        let statements: String = missing
            .iter()
            .map(|(name, value)| {
                format!(
                    "ALTER ROLE {} IN DATABASE {} SET {name} = '{value}';",
                    quote_identifier(&role),
                    quote_identifier(&database)
                )
            })
            .collect();
        client.batch_execute(&statements).await.map_err(|error| {
            anyhow::anyhow!(
                "cannot store the session defaults of role {role} in database {database} \
                 (POINTS_DATABASE_POOL_MODE=transaction): {error}"
            )
        })?;
        tracing::info!(
            role,
            database,
            "stored the session defaults for transaction-mode pooling"
        );
    }
    drop(client);
    let _ = connection_task.await;

    let pooled = pool.get().await?;
    let names: Vec<&str> = wanted.iter().map(|(name, _)| *name).collect();
    let rows = pooled
        .query_typed(
            "SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY($1)",
            &params![&names],
        )
        .await?;
    for row in rows {
        let (name, setting): (String, String) = (row.get(0), row.get(1));
        if let Some((_, value)) = wanted.iter().find(|(wanted, _)| *wanted == name)
            && *value != setting
        {
            tracing::warn!(
                setting = name,
                expected = value.as_str(),
                actual = setting,
                "a pooled server session lacks a session default: it was opened before the default was stored; \
                 close the pooler's server sessions (pgbouncer: RECONNECT) to pick it up"
            );
        }
    }
    Ok(())
}

/// Builds the bounded pool. Connections are opened lazily; a failed connect surfaces as UNAVAILABLE.
pub fn build_pool(config: &Config) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        postgres_config(config)?,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(config.db_pool_size)
        .wait_timeout(Some(config.db_pool_wait_timeout))
        .create_timeout(Some(config.db_connect_timeout))
        .recycle_timeout(Some(config.db_connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()?;
    Ok(pool)
}

/// The first and the longest pause between two attempts of [`ensure_database_with_retry`].
const STARTUP_RETRY_PAUSE_FIRST: std::time::Duration = std::time::Duration::from_millis(250);
const STARTUP_RETRY_PAUSE_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// [`ensure_database`], retried while the database is unreachable or still starting, with a pause doubling from
/// 250 ms to 5 s, for at most `config.db_startup_retry`. Errors that waiting cannot fix (a wrong password, a
/// missing role) fail at once.
pub async fn ensure_database_with_retry(config: &Config) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + config.db_startup_retry;
    let mut pause = STARTUP_RETRY_PAUSE_FIRST;
    let mut attempt = 1u32;
    loop {
        let error = match ensure_database(config).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let now = tokio::time::Instant::now();
        if !is_transient_connect_error(&error) || now >= deadline {
            return Err(error.context(format!(
                "cannot reach the database after {attempt} attempt(s) (POINTS_DB_STARTUP_RETRY_MS={})",
                config.db_startup_retry.as_millis()
            )));
        }
        tracing::warn!(
            attempt,
            retry_in_ms = pause.as_millis() as u64,
            error = format!("{error:#}"),
            "database not reachable yet, retrying"
        );
        // The last attempt is at the deadline.
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(STARTUP_RETRY_PAUSE_MAX);
        attempt += 1;
    }
}

/// True for errors that go away by waiting: no connection (refused, reset, timed out) or a server that is starting,
/// shutting down or full.
fn is_transient_connect_error(error: &anyhow::Error) -> bool {
    use tokio_postgres::error::SqlState;
    let Some(error) = error.downcast_ref::<tokio_postgres::Error>() else {
        return false;
    };
    match error.code() {
        None => error.as_db_error().is_none(),
        Some(code) => [
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(code),
    }
}

/// Creates the configured database if it does not exist (SPEC §2), connecting to the `postgres` database.
pub async fn ensure_database(config: &Config) -> anyhow::Result<()> {
    let target = direct_postgres_config(config)?;
    let Some(database) = target.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    let mut maintenance = target.clone();
    maintenance.dbname("postgres");
    let (client, connection) = maintenance.connect(NoTls).await?;
    let connection_task = tokio::spawn(connection);
    let exists = client
        .query_typed_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &params![&database],
        )
        .await?
        .is_some();
    if !exists {
        let statement = format!("CREATE DATABASE {}", quote_identifier(&database));
        match client.batch_execute(&statement).await {
            Ok(()) => tracing::info!(database, "created database"),
            // Another instance created it between our check and our CREATE: PostgreSQL says so with
            // duplicate_database, or, when both CREATEs ran at once, with a unique violation of pg_database's index.
            Err(error)
                if error.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                    || is_unique_violation(&error, "pg_database_datname_index") => {}
            Err(error) => return Err(error.into()),
        }
    }
    drop(client);
    let _ = connection_task.await;
    Ok(())
}

/// Quotes an SQL identifier (`"name"` with inner quotes doubled).
pub fn quote_identifier(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// True when `error` is a unique violation of the named constraint.
pub fn is_unique_violation(error: &tokio_postgres::Error, constraint: &str) -> bool {
    error.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some(constraint)
    })
}
