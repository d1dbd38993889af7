//! Schema migrations with refinery: the `public` set once, and the tenant set in every merchant schema, each
//! schema with its own `refinery_schema_history`.
//!
//! refinery runs a migration in a transaction of its own; we need it inside *ours* (registering a merchant creates
//! the merchant row, the schema, its tables and its first key in one transaction, so a failure leaves nothing).
//! [`TxMigrator`] adapts an open transaction to refinery's driver traits, running each refinery "transaction" as a
//! savepoint. Tenant DDL is unqualified and lands in the schema set by `set_config('search_path', .., true)`.

use futures::{StreamExt, stream};
use refinery::{Migration, Runner};
use refinery_core::traits::r#async::{AsyncQuery, AsyncTransaction};
use tokio_postgres::Transaction;

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
            savepoint.batch_execute(query).await?;
            count += 1;
        }
        savepoint.commit().await?;
        Ok(count)
    }
}

impl AsyncQuery<Vec<Migration>> for TxMigrator<'_, '_> {
    async fn query<'a>(&'a mut self, query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        let rows = self.0.query(query, &[]).await?;
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
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('points:migrate:public'))",
            &[],
        )
        .await?;
    let report = embedded::public::migrations::runner()
        .set_migration_table_name(PUBLIC_HISTORY_TABLE)
        .run_async(&mut TxMigrator(&mut transaction))
        .await?;
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
        .execute(
            "SELECT set_config('search_path', $1, true)",
            &[&schema.quoted()],
        )
        .await?;
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
        .query(
            "SELECT merchant_id FROM public.merchants ORDER BY created_at, merchant_id",
            &[],
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
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&schema.name()],
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
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {history}"),
            &[],
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
        .execute(
            "INSERT INTO public.tenant_migrations (merchant_id, schema_name, version, error, updated_at) \
             VALUES ($1, $2, $3, $4, now()) \
             ON CONFLICT (merchant_id) DO UPDATE SET version = excluded.version, error = excluded.error, \
             updated_at = now()",
            &[&merchant_id, &schema.name(), &version, &error],
        )
        .await?;
    Ok(())
}

/// Creates the schema of a new merchant and migrates it, inside the registration transaction.
pub async fn create_tenant_schema(
    transaction: &mut Transaction<'_>,
    schema: &TenantSchema,
) -> anyhow::Result<i32> {
    transaction
        .batch_execute(&format!(
            "CREATE SCHEMA {}",
            quote_identifier(schema.name())
        ))
        .await?;
    migrate_tenant_in(transaction, schema).await
}
