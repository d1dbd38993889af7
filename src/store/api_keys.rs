//! SQL for `public.api_keys`. Only hashes are stored; see [`crate::domain::api_key`].

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::domain::api_key::ApiKey;
use crate::store::sql::params;

const COLUMNS: &str = "key_id, merchant_id, name, prefix, last4, scopes, status, expires_at, created_at, last_used_at";

impl ApiKey {
    fn from_row(row: &Row) -> ApiKey {
        from_columns!(row => ApiKey {
            key_id, merchant_id, name, prefix, last4, scopes, status, expires_at, created_at,
            last_used_at
        })
    }
}

/// A key to insert.
pub struct NewApiKey<'a> {
    pub key_id: Uuid,
    pub merchant_id: Option<Uuid>,
    pub name: &'a str,
    pub key_hash: &'a [u8],
    pub prefix: &'a str,
    pub last4: &'a str,
    pub scopes: &'a [String],
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    client: &impl GenericClient,
    key: &NewApiKey<'_>,
) -> Result<ApiKey, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO public.api_keys (key_id, merchant_id, name, key_hash, prefix, last4, scopes, status, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8) RETURNING {COLUMNS}"
    );
    let row = client
        .query_typed_one(
            &sql,
            &params![
                &key.key_id,
                &key.merchant_id,
                &key.name,
                &key.key_hash,
                &key.prefix,
                &key.last4,
                &key.scopes,
                &key.expires_at,
            ],
        )
        .await?;
    Ok(ApiKey::from_row(&row))
}

/// A key of `owner` (a merchant, or the platform when None); another owner's key is not found.
pub async fn get(
    client: &impl GenericClient,
    key_id: Uuid,
    owner: Option<Uuid>,
) -> Result<Option<ApiKey>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM public.api_keys WHERE key_id = $1 AND merchant_id IS NOT DISTINCT FROM $2"
    );
    Ok(client
        .query_typed_opt(&sql, &params![&key_id, &owner])
        .await?
        .as_ref()
        .map(ApiKey::from_row))
}

/// Locks a key of `owner` for a rotation or revocation.
pub async fn get_for_update(
    client: &impl GenericClient,
    key_id: Uuid,
    owner: Option<Uuid>,
) -> Result<Option<ApiKey>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM public.api_keys WHERE key_id = $1 AND merchant_id IS NOT DISTINCT FROM $2 FOR UPDATE"
    );
    Ok(client
        .query_typed_opt(&sql, &params![&key_id, &owner])
        .await?
        .as_ref()
        .map(ApiKey::from_row))
}

pub async fn list(
    client: &impl GenericClient,
    owner: Option<Uuid>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<ApiKey>, tokio_postgres::Error> {
    let (after_time, after_id) = after.unzip();
    let sql = format!(
        "SELECT {COLUMNS} FROM public.api_keys WHERE merchant_id IS NOT DISTINCT FROM $1 \
         AND ($2::timestamptz IS NULL OR (created_at, key_id) > ($2, $3)) ORDER BY created_at, key_id LIMIT $4"
    );
    let rows = client
        .query_typed(&sql, &params![&owner, &after_time, &after_id, &limit])
        .await?;
    Ok(rows.iter().map(ApiKey::from_row).collect())
}

pub async fn revoke(
    client: &impl GenericClient,
    key_id: Uuid,
) -> Result<ApiKey, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE public.api_keys SET status = 'revoked', revoked_at = coalesce(revoked_at, now()) \
         WHERE key_id = $1 RETURNING {COLUMNS}"
    );
    Ok(ApiKey::from_row(
        &client.query_typed_one(&sql, &params![&key_id]).await?,
    ))
}

/// Ends a rotated key's life at `expires_at` (never extends an earlier expiry).
pub async fn expire_rotated(
    client: &impl GenericClient,
    key_id: Uuid,
    expires_at: DateTime<Utc>,
    rotated_to: Uuid,
) -> Result<ApiKey, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE public.api_keys SET expires_at = least(coalesce(expires_at, $2), $2), rotated_to = $3 \
         WHERE key_id = $1 RETURNING {COLUMNS}"
    );
    Ok(ApiKey::from_row(
        &client
            .query_typed_one(&sql, &params![&key_id, &expires_at, &rotated_to])
            .await?,
    ))
}

/// What the auth layer loads for a presented key.
#[derive(Debug, Clone)]
pub struct KeyAccessRow {
    pub key_id: Uuid,
    pub merchant_id: Option<Uuid>,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub status: String,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn access_by_hash(
    client: &impl GenericClient,
    key_hash: &[u8],
) -> Result<Option<KeyAccessRow>, tokio_postgres::Error> {
    let row = client
        .query_typed_opt(
            "SELECT key_id, merchant_id, prefix, scopes, status, expires_at FROM public.api_keys WHERE key_hash = $1", &params![&key_hash])
        .await?;
    Ok(row.map(|row| KeyAccessRow {
        key_id: row.get(0),
        merchant_id: row.get(1),
        prefix: row.get(2),
        scopes: row.get(3),
        status: row.get(4),
        expires_at: row.get(5),
    }))
}

/// Replaces a key's hash made with the previous key-hash secret by its hash under the current one (secret rotation:
/// the key is re-hashed at its first use). Returns how many rows changed (0 when another instance did it first).
pub async fn rehash(
    client: &impl GenericClient,
    previous_hash: &[u8],
    current_hash: &[u8],
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute_typed(
            "UPDATE public.api_keys SET key_hash = $2 WHERE key_hash = $1",
            &params![&previous_hash, &current_hash],
        )
        .await
}

/// True when an active, unexpired platform admin key exists.
pub async fn active_admin_key_exists(
    client: &impl GenericClient,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM public.api_keys WHERE merchant_id IS NULL AND status = 'active' \
             AND (expires_at IS NULL OR expires_at > now()))", &params![])
        .await?;
    Ok(row.get(0))
}

/// True when a key with this hash exists (any status).
pub async fn hash_exists(
    client: &impl GenericClient,
    key_hash: &[u8],
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM public.api_keys WHERE key_hash = $1)",
            &params![&key_hash],
        )
        .await?;
    Ok(row.get(0))
}

/// Writes the in-memory `last_used_at` times in one statement; never moves a time backwards.
pub async fn record_last_used(
    client: &impl GenericClient,
    key_ids: &[Uuid],
    used_at: &[DateTime<Utc>],
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute_typed(
            "UPDATE public.api_keys k SET last_used_at = u.used_at \
             FROM unnest($1::uuid[], $2::timestamptz[]) AS u(key_id, used_at) \
             WHERE k.key_id = u.key_id AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at)",
            &params![&key_ids, &used_at],
        )
        .await
}
