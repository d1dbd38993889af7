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
pub mod ledger;
pub mod merchants;
pub mod migrations;
pub mod reports;
pub mod rules;

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::Config;

/// The search path every pooled connection has outside a tenant transaction.
pub const DEFAULT_SEARCH_PATH: &str = "pg_catalog";

/// The PostgreSQL connection settings of `config`, with the session defaults every connection gets.
pub fn postgres_config(config: &Config) -> anyhow::Result<tokio_postgres::Config> {
    let mut pg = tokio_postgres::Config::from_str(&config.database_url)?;
    let statement_timeout_ms = config.db_statement_timeout.as_millis();
    pg.options(format!(
        "-c search_path={DEFAULT_SEARCH_PATH} -c statement_timeout={statement_timeout_ms} \
         -c idle_in_transaction_session_timeout={} -c lock_timeout={statement_timeout_ms}",
        statement_timeout_ms * 2
    ));
    pg.application_name("points");
    pg.connect_timeout(config.db_connect_timeout);
    Ok(pg)
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

/// Creates the configured database if it does not exist (SPEC §2), connecting to the `postgres` database.
pub async fn ensure_database(config: &Config) -> anyhow::Result<()> {
    let target = postgres_config(config)?;
    let Some(database) = target.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    let mut maintenance = target.clone();
    maintenance.dbname("postgres");
    let (client, connection) = maintenance.connect(NoTls).await?;
    let connection_task = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await?
        .is_some();
    if !exists {
        let statement = format!("CREATE DATABASE {}", quote_identifier(&database));
        match client.batch_execute(&statement).await {
            Ok(()) => tracing::info!(database, "created database"),
            // Another instance created it between our check and our CREATE.
            Err(error)
                if error.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
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
