//! Platform administration (`admin` scope): merchants, and `GET /api/v1/me` for any key.

use super::prelude::*;

use super::api_keys::ApiKey;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_merchant, list_merchants))
        .routes(routes!(get_merchant, update_merchant))
        .routes(routes!(get_me))
}

/// A merchant (tenant).
#[derive(Debug, Serialize, ToSchema)]
pub struct Merchant {
    /// The merchant's id.
    #[schema(example = "m_01J9Z3K8Q4")]
    pub merchant_id: String,
    /// Lowercase `[a-z0-9-]{3,40}`, unique across the platform.
    #[schema(example = "coffee-corner")]
    pub slug: String,
    /// Display name.
    #[schema(example = "Coffee Corner")]
    pub name: String,
    /// "active" or "suspended".
    #[schema(example = "active")]
    pub status: String,
    /// When the merchant was registered.
    pub created_at: Option<DateTime<Utc>>,
}

impl From<pb::Merchant> for Merchant {
    fn from(merchant: pb::Merchant) -> Merchant {
        Merchant {
            merchant_id: merchant.merchant_id,
            slug: merchant.slug,
            name: merchant.name,
            status: merchant.status,
            created_at: from_timestamp(merchant.created_at),
        }
    }
}

/// Registers a merchant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterMerchantBody {
    /// Lowercase `[a-z0-9-]{3,40}`, unique across the platform.
    #[schema(
        example = "coffee-corner",
        min_length = 3,
        max_length = 40,
        pattern = "^[a-z0-9-]{3,40}$"
    )]
    pub slug: String,
    /// Display name.
    #[schema(
        example = "Coffee Corner",
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
}

/// The registered merchant and its first key (the plaintext `key` is shown only here).
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredMerchant {
    /// The new merchant.
    pub merchant: Merchant,
    /// Its first key, with every merchant scope; `key` holds the plaintext.
    pub api_key: ApiKey,
}

/// A merchant status.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MerchantStatus {
    /// Keys work.
    Active,
    /// Every key of the merchant is refused.
    Suspended,
}

impl MerchantStatus {
    fn as_str(self) -> &'static str {
        match self {
            MerchantStatus::Active => "active",
            MerchantStatus::Suspended => "suspended",
        }
    }
}

/// Renames, suspends or reactivates a merchant; absent fields are unchanged.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMerchantBody {
    /// New display name.
    #[schema(
        example = "Coffee Corner & Bakery",
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: Option<String>,
    /// New status.
    pub status: Option<MerchantStatus>,
}

/// The caller: its merchant (null for a platform key not acting for a merchant) and its key.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The merchant of the key, or the one named by `x-merchant-id`.
    pub merchant: Option<Merchant>,
    /// The calling key.
    pub api_key: ApiKey,
}

reply_from!(Merchant => pb::Merchant);
reply_page!(Merchant => pb::ListMerchantsResponse);
super::page_request!(PageQuery => pb::ListMerchantsRequest);

impl From<RegisterMerchantBody> for pb::RegisterMerchantRequest {
    fn from(body: RegisterMerchantBody) -> pb::RegisterMerchantRequest {
        pb::RegisterMerchantRequest {
            slug: body.slug,
            name: body.name,
        }
    }
}

impl Reply<pb::RegisterMerchantResponse> for RegisteredMerchant {
    fn reply(response: pb::RegisterMerchantResponse) -> Result<RegisteredMerchant, ApiError> {
        Ok(RegisteredMerchant {
            merchant: required(response.merchant, "merchant")?.into(),
            api_key: required(response.api_key, "api_key")?.into(),
        })
    }
}

impl From<With<String, NoInput>> for pb::GetMerchantRequest {
    fn from(With(merchant_id, NoInput): With<String, NoInput>) -> pb::GetMerchantRequest {
        pb::GetMerchantRequest { merchant_id }
    }
}

impl From<With<String, UpdateMerchantBody>> for pb::UpdateMerchantRequest {
    fn from(
        With(merchant_id, body): With<String, UpdateMerchantBody>,
    ) -> pb::UpdateMerchantRequest {
        pb::UpdateMerchantRequest {
            merchant_id,
            name: body.name,
            status: body.status.map(|status| status.as_str().to_owned()),
        }
    }
}

impl From<NoInput> for pb::GetMeRequest {
    fn from(NoInput: NoInput) -> pb::GetMeRequest {
        pb::GetMeRequest {}
    }
}

impl Reply<pb::GetMeResponse> for Me {
    fn reply(response: pb::GetMeResponse) -> Result<Me, ApiError> {
        Ok(Me {
            merchant: response.merchant.map(Merchant::from),
            api_key: required(response.api_key, "api_key")?.into(),
        })
    }
}

forward! {
    /// Register a merchant: creates its schema and its first key (plaintext returned once). Scope `admin`.
    #[utoipa::path(
        post,
        path = "/api/v1/merchants",
        tag = "merchants",
        operation_id = "register_merchant",
        request_body = RegisterMerchantBody,
        responses((status = 201, description = "The merchant was registered.", body = Envelope<RegisteredMerchant>))
    )]
    fn register_merchant(body: RegisterMerchantBody) -> RegisteredMerchant = merchants.register_merchant, created;
}

forward! {
    /// List merchants. Scope `admin`.
    #[utoipa::path(
        get,
        path = "/api/v1/merchants",
        tag = "merchants",
        operation_id = "list_merchants",
        params(PageQuery),
        responses((status = 200, description = "One page of merchants.", body = Envelope<Page<Merchant>>))
    )]
    fn list_merchants(query: PageQuery) -> Page<Merchant> = merchants.list_merchants;
}

forward! {
    /// Get a merchant. Scope `admin`.
    #[utoipa::path(
        get,
        path = "/api/v1/merchants/{merchant_id}",
        tag = "merchants",
        operation_id = "get_merchant",
        params(("merchant_id" = uuid::Uuid, Path, description = "The merchant's id.")),
        responses((status = 200, description = "The merchant.", body = Envelope<Merchant>))
    )]
    fn get_merchant(path: String) -> Merchant = merchants.get_merchant;
}

forward! {
    /// Rename, suspend or reactivate a merchant. Scope `admin`.
    #[utoipa::path(
        patch,
        path = "/api/v1/merchants/{merchant_id}",
        tag = "merchants",
        operation_id = "update_merchant",
        params(("merchant_id" = uuid::Uuid, Path, description = "The merchant's id.")),
        request_body = UpdateMerchantBody,
        responses((status = 200, description = "The updated merchant.", body = Envelope<Merchant>))
    )]
    fn update_merchant(path: String, body: UpdateMerchantBody) -> Merchant = merchants.update_merchant;
}

forward! {
    /// The merchant of the calling key and the key itself. Any valid key.
    #[utoipa::path(
        get,
        path = "/api/v1/me",
        tag = "merchants",
        operation_id = "get_me",
        responses((status = 200, description = "The caller.", body = Envelope<Me>))
    )]
    fn get_me() -> Me = merchants.get_me;
}
