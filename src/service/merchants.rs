//! Merchant registration and administration. Registration and updates write their audit record in their own
//! transaction (the platform audit, or the merchant's when an admin acts with `x-merchant-id`).

use uuid::Uuid;

use super::{Services, api_keys};
use crate::call::CallContext;
use crate::{
    domain::{Merchant, MerchantStatus, Scope, Slug, parse_name, parse_uuid},
    error::{ErrorCode, ServiceError, ServiceResult},
    pagination::{PageRequest, finish_page, time_id_cursor},
    store,
    tenancy::TenantSchema,
};

const NAME_LENGTH_MAX: usize = 200;

/// Registers a merchant: its row, its schema (migrated) and its first key, in one transaction, so a failure at
/// any step leaves nothing behind. Returns the merchant and the key with its plaintext.
pub async fn register(
    services: &Services,
    call: &CallContext,
    slug: &str,
    name: &str,
) -> ServiceResult<(Merchant, api_keys::IssuedKey)> {
    let slug = Slug::parse(slug)?;
    let name = parse_name("name", name, NAME_LENGTH_MAX)?;
    let merchant_id = Uuid::now_v7();
    let schema = TenantSchema::for_merchant(merchant_id);
    let mut client = services.pool.get().await?;
    let mut transaction = client.transaction().await?;
    let merchant = store::merchants::insert(
        &*transaction,
        merchant_id,
        slug.as_str(),
        &name,
        schema.name(),
    )
    .await
    .map_err(|error| {
        if store::is_unique_violation(&error, store::merchants::SLUG_CONSTRAINT) {
            ServiceError::new(
                ErrorCode::AlreadyExists,
                format!("a merchant with slug {:?} exists", slug.as_str()),
            )
        } else {
            ServiceError::from(error)
        }
    })?;
    let version = store::migrations::create_tenant_schema(&mut transaction, &schema)
        .await
        .map_err(|error| ServiceError::internal(error.as_ref()))?;
    store::migrations::upsert_tenant_status(&*transaction, merchant_id, &schema, version, None)
        .await?;
    let scopes: Vec<String> = Scope::MERCHANT
        .iter()
        .map(|scope| scope.as_str().to_owned())
        .collect();
    let key = api_keys::issue(
        &*transaction,
        services,
        Some(merchant_id),
        "default",
        &scopes,
        None,
    )
    .await?;
    call.notes().subject_merchant_id = Some(merchant_id);
    crate::audit::record_in_transaction(&transaction, call).await?;
    transaction.commit().await?;
    tracing::info!(%merchant_id, slug = slug.as_str(), "registered merchant");
    Ok((merchant, key))
}

pub async fn get(services: &Services, merchant_id: &str) -> ServiceResult<Merchant> {
    let merchant_id = parse_uuid("merchant_id", merchant_id)?;
    let client = services.pool.get().await?;
    store::merchants::get(&**client, merchant_id)
        .await?
        .ok_or_else(|| ServiceError::not_found("merchant not found"))
}

pub async fn list(
    services: &Services,
    page_size: i32,
    page_token: &str,
) -> ServiceResult<(Vec<Merchant>, String)> {
    const LIST: &str = "merchants";
    let page = PageRequest::parse(LIST, page_size, page_token)?;
    let after = page.time_id_position(|id| parse_uuid("page_token", id))?;
    let client = services.pool.get().await?;
    let rows = store::merchants::list(&**client, after, page.fetch_limit()).await?;
    Ok(finish_page(LIST, rows, &page, |row| {
        time_id_cursor(row.created_at, &row.merchant_id.to_string())
    }))
}

/// Renames, suspends or reactivates. Suspension takes effect on every instance within a second. Like a JSON merge
/// patch, an update that names nothing changes nothing and answers the merchant as it is.
pub async fn update(
    services: &Services,
    call: &CallContext,
    merchant_id: &str,
    name: Option<&str>,
    status: Option<&str>,
) -> ServiceResult<Merchant> {
    let merchant_id = parse_uuid("merchant_id", merchant_id)?;
    let name = name
        .map(|name| parse_name("name", name, NAME_LENGTH_MAX))
        .transpose()?;
    let status = status.map(MerchantStatus::parse).transpose()?;
    let mut client = services.pool.get().await?;
    let transaction = client.transaction().await?;
    let merchant = store::merchants::update(
        &*transaction,
        merchant_id,
        name.as_deref(),
        status.map(MerchantStatus::as_str),
    )
    .await?
    .ok_or_else(|| ServiceError::not_found("merchant not found"))?;
    call.notes().subject_merchant_id = Some(merchant_id);
    crate::audit::record_in_transaction(&transaction, call).await?;
    transaction.commit().await?;
    services.auth_cache.invalidate_merchant(merchant_id);
    Ok(merchant)
}
