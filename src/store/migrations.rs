//! Schema migrations with refinery: the `public` set once, and the tenant set in every merchant schema, each
//! schema with its own `refinery_schema_history`.
//!
//! refinery runs a migration in a transaction of its own; we need it inside *ours* (registering a merchant creates
//! the merchant row, the schema, its tables and its first key in one transaction, so a failure leaves nothing).
//! [`TxMigrator`] adapts an open transaction to refinery's driver traits, running each refinery "transaction" as a
//! savepoint. Tenant DDL is unqualified and lands in the schema set by `set_config('search_path', .., true)`.
//!
//! On Citus each migration is sent one statement at a time ([`split_statements`]; elsewhere in one message): Citus
//! forwards a tenant schema's DDL to the worker holding it and cannot forward several commands in one message. There,
//! triggers on tables of distributed schemas also need `citus.enable_unsafe_triggers`, set for the migrating
//! transaction only (the triggers refuse changes to append-only rows of their own table, which is safe wherever the
//! shard lives). A new merchant's schema is migrated before it is distributed (see [`create_tenant_schema`]).

use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, stream};
use refinery::{Migration, Runner};
use refinery_core::traits::r#async::{AsyncQuery, AsyncTransaction};
use tokio_postgres::Transaction;

use crate::store::sql::params;
use crate::{error::ErrorChain, store::quote_identifier, tenancy::TenantSchema};

mod embedded {
    pub mod public {
        refinery::embed_migrations!("migrations/public");
    }
    pub mod tenant {
        refinery::embed_migrations!("migrations/tenant");
    }
}

/// The refinery history table of the `public` set.
const PUBLIC_HISTORY_TABLE: &str = "public.refinery_schema_history";

/// Whether the database has the Citus extension, learnt when `public` is migrated (every start does that first).
static CITUS: AtomicBool = AtomicBool::new(false);

/// True when the database runs Citus (seen at start).
pub fn on_citus() -> bool {
    CITUS.load(Ordering::Relaxed)
}

/// The newest tenant migration version this build knows; a tenant below it is refused until migrated.
pub fn tenant_version_latest() -> i32 {
    embedded::tenant::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Adapts an open transaction to refinery: each refinery transaction becomes a savepoint of ours.
pub struct TxMigrator<'t, 'c>(pub &'t mut Transaction<'c>);

impl AsyncTransaction for TxMigrator<'_, '_> {
    type Error = tokio_postgres::Error;

    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let savepoint = self.0.transaction().await?;
        let mut count = 0;
        for query in queries {
            if on_citus() {
                for statement in split_statements(query) {
                    savepoint.batch_execute(statement).await?;
                }
            } else {
                savepoint.batch_execute(query).await?;
            }
            count += 1;
        }
        savepoint.commit().await?;
        Ok(count)
    }
}

impl AsyncQuery<Vec<Migration>> for TxMigrator<'_, '_> {
    async fn query<'a>(&'a mut self, query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        let rows = self.0.query_typed(query, &params![]).await?;
        let mut applied = Vec::with_capacity(rows.len());
        for row in rows {
            let applied_on: String = row.get(2);
            let checksum: String = row.get(3);
            // refinery wrote both values itself; a row it cannot read is a corrupted history, reported as the
            // migration error of this schema by the caller rather than a panic.
            let applied_on = time::OffsetDateTime::parse(
                &applied_on,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            applied.push(Migration::applied(
                row.get(0),
                row.get(1),
                applied_on,
                checksum.parse().unwrap_or(0),
            ));
        }
        Ok(applied)
    }
}

impl refinery::AsyncMigrate for TxMigrator<'_, '_> {}

/// Migrates the `public` schema; instances starting together wait on an advisory lock.
pub async fn migrate_public(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    let mut transaction = client.transaction().await?;
    transaction
        .execute_typed(
            "SELECT pg_advisory_xact_lock(hashtext('points:migrate:public'))",
            &params![],
        )
        .await?;
    let report = embedded::public::migrations::runner()
        .set_migration_table_name(PUBLIC_HISTORY_TABLE)
        .run_async(&mut TxMigrator(&mut transaction))
        .await?;
    let citus: bool = transaction
        .query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')",
            &params![],
        )
        .await?
        .get(0);
    CITUS.store(citus, Ordering::Relaxed);
    transaction.commit().await?;
    for migration in report.applied_migrations() {
        tracing::info!(
            version = migration.version(),
            name = migration.name(),
            "applied public migration"
        );
    }
    Ok(())
}

/// Migrates one tenant schema inside `transaction` (which must hold the schema's lock) and returns its version.
pub async fn migrate_tenant_in(
    transaction: &mut Transaction<'_>,
    schema: &TenantSchema,
) -> anyhow::Result<i32> {
    transaction
        .execute_typed(
            "SELECT set_config('search_path', $1, true)",
            &params![&schema.quoted()],
        )
        .await?;
    if on_citus() {
        transaction
            .batch_execute("SELECT set_config('citus.enable_unsafe_triggers', 'on', true)")
            .await?;
    }
    let mut runner: Runner = embedded::tenant::migrations::runner();
    runner
        .set_migration_table_name(format!("{}.refinery_schema_history", schema.quoted()))
        .run_async(&mut TxMigrator(transaction))
        .await?;
    Ok(tenant_version_latest())
}

/// The outcome of migrating every tenant at start.
#[derive(Debug, Default)]
pub struct TenantMigrationSummary {
    pub migrated: usize,
    /// (merchant id, error) of each tenant that failed; they are refused until a later run succeeds.
    pub failed: Vec<(uuid::Uuid, String)>,
}

/// Migrates every tenant schema with at most `concurrency` at a time. A failing tenant does not stop the others:
/// its version stays where it was and its error is recorded in `public.tenant_migrations`.
pub async fn migrate_all_tenants(
    pool: &deadpool_postgres::Pool,
    concurrency: usize,
) -> anyhow::Result<TenantMigrationSummary> {
    let client = pool.get().await?;
    let rows = client
        .query_typed(
            "SELECT merchant_id FROM public.merchants ORDER BY created_at, merchant_id",
            &params![],
        )
        .await?;
    drop(client);
    let merchant_ids: Vec<uuid::Uuid> = rows.iter().map(|row| row.get(0)).collect();
    let results: Vec<(uuid::Uuid, anyhow::Result<i32>)> = stream::iter(merchant_ids)
        .map(
            |merchant_id| async move { (merchant_id, migrate_one_tenant(pool, merchant_id).await) },
        )
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut summary = TenantMigrationSummary::default();
    for (merchant_id, result) in results {
        match result {
            Ok(_) => summary.migrated += 1,
            Err(error) => {
                let message = format!("{}", ErrorChain(error.as_ref()));
                tracing::error!(%merchant_id, error = %message, "tenant migration failed; its requests are refused");
                record_tenant_failure(pool, merchant_id, &message).await?;
                summary.failed.push((merchant_id, message));
            }
        }
    }
    Ok(summary)
}

async fn migrate_one_tenant(
    pool: &deadpool_postgres::Pool,
    merchant_id: uuid::Uuid,
) -> anyhow::Result<i32> {
    let schema = TenantSchema::for_merchant(merchant_id);
    let mut client = pool.get().await?;
    let mut transaction = client.transaction().await?;
    transaction
        .execute_typed(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &params![&schema.name()],
        )
        .await?;
    let version = migrate_tenant_in(&mut transaction, &schema).await?;
    upsert_tenant_status(&*transaction, merchant_id, &schema, version, None).await?;
    transaction.commit().await?;
    Ok(version)
}

async fn record_tenant_failure(
    pool: &deadpool_postgres::Pool,
    merchant_id: uuid::Uuid,
    error: &str,
) -> anyhow::Result<()> {
    let schema = TenantSchema::for_merchant(merchant_id);
    let client = pool.get().await?;
    // The version the schema is really at: its history may be missing altogether if even V1 failed.
    let history = format!("{}.refinery_schema_history", schema.quoted());
    let version: i32 = match client
        .query_typed_one(
            &format!("SELECT coalesce(max(version), 0) FROM {history}"),
            &params![],
        )
        .await
    {
        Ok(row) => row.get(0),
        Err(_) => 0,
    };
    upsert_tenant_status(&**client, merchant_id, &schema, version, Some(error)).await?;
    Ok(())
}

/// Records a tenant's migration version and error (None when healthy).
pub async fn upsert_tenant_status(
    client: &impl tokio_postgres::GenericClient,
    merchant_id: uuid::Uuid,
    schema: &TenantSchema,
    version: i32,
    error: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute_typed(
            "INSERT INTO public.tenant_migrations (merchant_id, schema_name, version, error, updated_at) \
             VALUES ($1, $2, $3, $4, now()) \
             ON CONFLICT (merchant_id) DO UPDATE SET version = excluded.version, error = excluded.error, \
             updated_at = now()", &params![&merchant_id, &schema.name(), &version, &error])
        .await?;
    Ok(())
}

/// Creates the schema of a new merchant and migrates it, inside the registration transaction.
///
/// On Citus the schema is created as a regular one, migrated, then distributed with `citus_schema_distribute`, all in
/// this transaction: Citus 13.2 cannot run every migration statement inside a distributed schema (an `INSERT ..
/// SELECT` between two of its tables, which have no distribution column, reaches the worker as invalid SQL), while
/// the finished schema moves to a worker, data included, as a whole. The copies left behind on the coordinator are
/// truncated.
pub async fn create_tenant_schema(
    transaction: &mut Transaction<'_>,
    schema: &TenantSchema,
) -> anyhow::Result<i32> {
    let citus = on_citus();
    if citus {
        transaction
            .batch_execute("SELECT set_config('citus.enable_schema_based_sharding', 'off', true)")
            .await?;
    }
    transaction
        .batch_execute(&format!(
            "CREATE SCHEMA {}",
            quote_identifier(schema.name())
        ))
        .await?;
    let version = migrate_tenant_in(transaction, schema).await?;
    if citus {
        transaction
            .execute_typed(
                "SELECT citus_schema_distribute($1::text::regnamespace)",
                &params![&schema.name()],
            )
            .await?;
        transaction
            .execute_typed(
                "SELECT truncate_local_data_after_distributing_table(c.oid) FROM pg_catalog.pg_class c \
                 WHERE c.relnamespace = $1::text::regnamespace AND c.relkind = 'r'", &params![&schema.name()])
            .await?;
    }
    Ok(version)
}

/// Splits SQL text into its statements (without the `;`), dropping those that are only blanks. A `;` inside a
/// quoted string or identifier (`'..'`, `".."`, doubled quotes included), a dollar-quoted body (`$$..$$`,
/// `$tag$..$tag$`) or a comment (`-- ..`, nested `/* .. */`) does not end a statement.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        at = match bytes[at] {
            quote @ (b'\'' | b'"') => {
                let mut end = at + 1;
                while end < bytes.len() {
                    if bytes[end] == quote {
                        if bytes.get(end + 1) == Some(&quote) {
                            end += 2;
                            continue;
                        }
                        break;
                    }
                    end += 1;
                }
                end + 1
            }
            b'-' if bytes.get(at + 1) == Some(&b'-') => bytes[at..]
                .iter()
                .position(|&byte| byte == b'\n')
                .map_or(bytes.len(), |offset| at + offset + 1),
            b'/' if bytes.get(at + 1) == Some(&b'*') => {
                let (mut depth, mut end) = (1, at + 2);
                while end < bytes.len() && depth > 0 {
                    if bytes[end..].starts_with(b"/*") {
                        depth += 1;
                        end += 2;
                    } else if bytes[end..].starts_with(b"*/") {
                        depth -= 1;
                        end += 2;
                    } else {
                        end += 1;
                    }
                }
                end
            }
            b'$' => match dollar_tag(bytes, at) {
                Some(tag) => {
                    let body = at + tag.len();
                    sql[body..]
                        .find(tag)
                        .map_or(bytes.len(), |offset| body + offset + tag.len())
                }
                None => at + 1,
            },
            b';' => {
                push_statement(&mut statements, &sql[start..at]);
                start = at + 1;
                at + 1
            }
            _ => at + 1,
        };
    }
    push_statement(&mut statements, &sql[start.min(sql.len())..]);
    statements
}

fn push_statement<'s>(statements: &mut Vec<&'s str>, statement: &'s str) {
    let statement = statement.trim();
    if !statement.is_empty() {
        statements.push(statement);
    }
}

/// The dollar-quote tag (`$$` or `$name$`) starting at `at`, if one does: not a parameter (`$1`) nor the `$` inside
/// an identifier (`a$b`).
fn dollar_tag(bytes: &[u8], at: usize) -> Option<&str> {
    let identifier = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$';
    if at > 0 && identifier(bytes[at - 1]) {
        return None;
    }
    let name_length = bytes[at + 1..]
        .iter()
        .take_while(|&&byte| byte.is_ascii_alphanumeric() || byte == b'_')
        .count();
    let name = &bytes[at + 1..at + 1 + name_length];
    if name.first().is_some_and(u8::is_ascii_digit)
        || bytes.get(at + 1 + name_length) != Some(&b'$')
    {
        return None;
    }
    std::str::from_utf8(&bytes[at..at + name_length + 2]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_on_semicolons_outside_quotes_bodies_and_comments() {
        let sql = "CREATE TABLE a (x text DEFAULT 'a;b''c');\n\
                   -- a comment; still a comment\n\
                   CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$\n\
                   BEGIN RAISE EXCEPTION 'no; never'; RETURN NULL; END $$;\n\
                   /* outer /* nested; */ still; */ CREATE TABLE \"b;c\" (y int);\n\
                   SELECT $body$ ; $$ ; $body$, $1, a$b;;\n  \n";
        assert_eq!(
            split_statements(sql),
            [
                "CREATE TABLE a (x text DEFAULT 'a;b''c')",
                "-- a comment; still a comment\nCREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN RAISE EXCEPTION 'no; never'; RETURN NULL; END $$",
                "/* outer /* nested; */ still; */ CREATE TABLE \"b;c\" (y int)",
                "SELECT $body$ ; $$ ; $body$, $1, a$b",
            ]
        );
    }

    #[test]
    fn every_embedded_migration_splits_into_whole_statements() {
        for runner in [
            embedded::public::migrations::runner(),
            embedded::tenant::migrations::runner(),
        ] {
            for migration in runner.get_migrations() {
                let sql = migration.sql().unwrap_or_default();
                let statements = split_statements(sql);
                assert!(!statements.is_empty(), "{}", migration.name());
                for statement in statements {
                    // No statement ends inside a function body.
                    assert_eq!(statement.matches("$$").count() % 2, 0, "{statement}");
                }
            }
        }
    }
}
