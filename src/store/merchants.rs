//! SQL for `public.merchants`.

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::domain::Merchant;
use crate::store::sql::params;

const COLUMNS: &str = "merchant_id, slug, name, status, created_at";

impl Merchant {
    fn from_row(row: &Row) -> Merchant {
        from_columns!(row => Merchant {
            merchant_id, slug, name, status, created_at
        })
    }
}

/// The unique constraint a duplicate slug violates.
pub const SLUG_CONSTRAINT: &str = "merchants_slug_key";

pub async fn insert(
    client: &impl GenericClient,
    merchant_id: Uuid,
    slug: &str,
    name: &str,
    schema_name: &str,
) -> Result<Merchant, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO public.merchants (merchant_id, slug, name, status, schema_name) \
         VALUES ($1, $2, $3, 'active', $4) RETURNING {COLUMNS}"
    );
    let row = client
        .query_typed_one(&sql, &params![&merchant_id, &slug, &name, &schema_name])
        .await?;
    Ok(Merchant::from_row(&row))
}

pub async fn get(
    client: &impl GenericClient,
    merchant_id: Uuid,
) -> Result<Option<Merchant>, tokio_postgres::Error> {
    let sql = format!("SELECT {COLUMNS} FROM public.merchants WHERE merchant_id = $1");
    Ok(client
        .query_typed_opt(&sql, &params![&merchant_id])
        .await?
        .as_ref()
        .map(Merchant::from_row))
}

/// Merchants ordered by creation, after the `(created_at, merchant_id)` cursor.
pub async fn list(
    client: &impl GenericClient,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Merchant>, tokio_postgres::Error> {
    let rows = match after {
        Some((created_at, merchant_id)) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM public.merchants WHERE (created_at, merchant_id) > ($1, $2) \
                 ORDER BY created_at, merchant_id LIMIT $3"
            );
            client
                .query_typed(&sql, &params![&created_at, &merchant_id, &limit])
                .await?
        }
        None => {
            let sql = format!(
                "SELECT {COLUMNS} FROM public.merchants ORDER BY created_at, merchant_id LIMIT $1"
            );
            client.query_typed(&sql, &params![&limit]).await?
        }
    };
    Ok(rows.iter().map(Merchant::from_row).collect())
}

pub async fn update(
    client: &impl GenericClient,
    merchant_id: Uuid,
    name: Option<&str>,
    status: Option<&str>,
) -> Result<Option<Merchant>, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE public.merchants SET name = coalesce($2, name), status = coalesce($3, status), updated_at = now() \
         WHERE merchant_id = $1 RETURNING {COLUMNS}"
    );
    Ok(client
        .query_typed_opt(&sql, &params![&merchant_id, &name, &status])
        .await?
        .as_ref()
        .map(Merchant::from_row))
}

/// What the auth layer needs to know about a merchant on every request.
#[derive(Debug, Clone)]
pub struct MerchantAccessRow {
    pub merchant_id: Uuid,
    pub status: String,
    /// Migration version of the tenant schema (0 when it has no status row).
    pub schema_version: i32,
    pub migration_error: Option<String>,
}

pub async fn access(
    client: &impl GenericClient,
    merchant_id: Uuid,
) -> Result<Option<MerchantAccessRow>, tokio_postgres::Error> {
    let row = client
        .query_typed_opt(
            "SELECT m.merchant_id, m.status, coalesce(t.version, 0) AS version, t.error \
             FROM public.merchants m LEFT JOIN public.tenant_migrations t ON t.merchant_id = m.merchant_id \
             WHERE m.merchant_id = $1", &params![&merchant_id])
        .await?;
    Ok(row.map(|row| MerchantAccessRow {
        merchant_id: row.get(0),
        status: row.get(1),
        schema_version: row.get(2),
        migration_error: row.get(3),
    }))
}
