//! API key lifecycle: issue, list, rotate with a grace period, revoke.
//!
//! A merchant context manages that merchant's keys (merchant scopes only); an admin key without
//! `x-merchant-id` manages platform keys (scope `admin` only). Every change writes its audit record in its own
//! transaction ([`crate::audit::record_in_transaction`]): the merchant's audit, or the platform's.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::Services;
use crate::call::CallContext;
use crate::domain::api_key::ApiKey;
use crate::{
    domain::{Scope, api_key::ApiKeyPlaintext, parse_name, parse_uuid},
    error::{ServiceError, ServiceResult},
    pagination::{PageRequest, finish_page, time_id_cursor},
    store::{self, api_keys::NewApiKey},
};

/// Longest rotation grace period (SPEC §4): one week.
pub const GRACE_SECONDS_MAX: u32 = 604_800;
const NAME_LENGTH_MAX: usize = 100;

/// A key just issued, with the plaintext that is shown once.
#[derive(Debug)]
pub struct IssuedKey {
    pub row: ApiKey,
    pub plaintext: ApiKeyPlaintext,
}

/// Generates a key, stores its hash and returns it with its plaintext.
pub async fn issue(
    client: &impl tokio_postgres::GenericClient,
    services: &Services,
    merchant_id: Option<Uuid>,
    name: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
) -> ServiceResult<IssuedKey> {
    let plaintext = ApiKeyPlaintext::generate(services.key_environment);
    let key_hash = services.hasher.hash(&plaintext);
    let row = store::api_keys::insert(
        client,
        &NewApiKey {
            key_id: Uuid::now_v7(),
            merchant_id,
            name,
            key_hash: &key_hash,
            prefix: plaintext.display_prefix(),
            last4: plaintext.last4(),
            scopes,
            expires_at,
        },
    )
    .await?;
    Ok(IssuedKey { row, plaintext })
}

/// Checks requested scopes against the owner: merchant keys get merchant scopes, platform keys `admin`.
fn parse_scopes_for(owner: Option<Uuid>, scopes: &[String]) -> ServiceResult<Vec<String>> {
    let scopes = crate::domain::parse_scopes(scopes)?;
    match owner {
        Some(_) if scopes.contains(&Scope::Admin) => Err(ServiceError::invalid(
            "a merchant key cannot have the admin scope",
        )),
        None if scopes != [Scope::Admin] => Err(ServiceError::invalid(
            "a platform key has exactly the admin scope",
        )),
        _ => Ok(scopes
            .iter()
            .map(|scope| scope.as_str().to_owned())
            .collect()),
    }
}

pub async fn create(
    services: &Services,
    call: &CallContext,
    name: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
) -> ServiceResult<IssuedKey> {
    let owner = call.auth.owner();
    let name = parse_name("name", name, NAME_LENGTH_MAX)?;
    let scopes = parse_scopes_for(owner, scopes)?;
    if expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ServiceError::invalid("expires_at must be in the future"));
    }
    let mut client = services.pool.get().await?;
    let transaction = client.transaction().await?;
    let issued = issue(&*transaction, services, owner, &name, &scopes, expires_at).await?;
    crate::audit::record_in_transaction(&transaction, call).await?;
    transaction.commit().await?;
    Ok(issued)
}

pub async fn list(
    services: &Services,
    call: &CallContext,
    page_size: i32,
    page_token: &str,
) -> ServiceResult<(Vec<ApiKey>, String)> {
    const LIST: &str = "api-keys";
    let page = PageRequest::parse(LIST, page_size, page_token)?;
    let after = page.time_id_position(|id| parse_uuid("page_token", id))?;
    let client = services.pool.get().await?;
    let rows =
        store::api_keys::list(&**client, call.auth.owner(), after, page.fetch_limit()).await?;
    Ok(finish_page(LIST, rows, &page, |row| {
        time_id_cursor(row.created_at, &row.key_id.to_string())
    }))
}

/// Issues a successor with the same name and scopes; the old key works for `grace_seconds` more, then expires.
pub async fn rotate(
    services: &Services,
    call: &CallContext,
    key_id: &str,
    grace_seconds: Option<u32>,
) -> ServiceResult<(IssuedKey, ApiKey)> {
    let key_id = parse_uuid("key_id", key_id)?;
    let grace_seconds = grace_seconds.unwrap_or(0);
    if grace_seconds > GRACE_SECONDS_MAX {
        return Err(ServiceError::invalid(format!(
            "grace_seconds must be between 0 and {GRACE_SECONDS_MAX}"
        )));
    }
    let owner = call.auth.owner();
    let mut client = services.pool.get().await?;
    let transaction = client.transaction().await?;
    let old = store::api_keys::get_for_update(&*transaction, key_id, owner)
        .await?
        .ok_or_else(|| ServiceError::not_found("API key not found"))?;
    let now = Utc::now();
    if old.status != "active" || old.expires_at.is_some_and(|at| at <= now) {
        return Err(ServiceError::invalid(
            "only an active, unexpired key can be rotated",
        ));
    }
    let issued = issue(
        &*transaction,
        services,
        owner,
        &old.name,
        &old.scopes,
        old.expires_at,
    )
    .await?;
    let old_expires_at = now + Duration::seconds(i64::from(grace_seconds));
    let previous =
        store::api_keys::expire_rotated(&*transaction, key_id, old_expires_at, issued.row.key_id)
            .await?;
    crate::audit::record_in_transaction(&transaction, call).await?;
    transaction.commit().await?;
    services.auth_cache.invalidate_key(key_id);
    Ok((issued, previous))
}

/// Revokes at once; other instances learn it through the `points_auth` notification.
pub async fn revoke(
    services: &Services,
    call: &CallContext,
    key_id: &str,
) -> ServiceResult<ApiKey> {
    let key_id = parse_uuid("key_id", key_id)?;
    let mut client = services.pool.get().await?;
    let transaction = client.transaction().await?;
    store::api_keys::get_for_update(&*transaction, key_id, call.auth.owner())
        .await?
        .ok_or_else(|| ServiceError::not_found("API key not found"))?;
    let row = store::api_keys::revoke(&*transaction, key_id).await?;
    crate::audit::record_in_transaction(&transaction, call).await?;
    transaction.commit().await?;
    services.auth_cache.invalidate_key(key_id);
    Ok(row)
}

/// The calling key and its merchant, for `GetMe`.
pub async fn me(
    services: &Services,
    call: &CallContext,
) -> ServiceResult<(Option<crate::domain::Merchant>, ApiKey)> {
    let client = services.pool.get().await?;
    let merchant = match call.auth.owner() {
        Some(merchant_id) => store::merchants::get(&**client, merchant_id).await?,
        None => None,
    };
    let key_owner = if call.auth.is_admin() {
        None
    } else {
        call.auth.owner()
    };
    let key = store::api_keys::get(&**client, call.auth.key_id, key_owner)
        .await?
        .ok_or_else(|| ServiceError::unauthenticated("API key not found"))?;
    Ok((merchant, key))
}
