//! API keys (`keys:manage`, or `admin` for platform keys): create, list, rotate, revoke.

use super::prelude::*;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(rotate_api_key))
        .routes(routes!(revoke_api_key))
}

/// An API key. The plaintext `key` is present only in the response that created it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    /// The key's id.
    #[schema(example = "k_01J9Z3M2XG")]
    pub key_id: String,
    /// What the key is for.
    #[schema(example = "POS terminal 3")]
    pub name: String,
    /// Display prefix; never enough to use the key.
    #[schema(example = "lp_live_AbCd")]
    pub prefix: String,
    /// The last 4 characters of the key.
    #[schema(example = "x9Qz")]
    pub last4: String,
    /// The key's scopes.
    #[schema(example = json!(["points:read", "points:write"]))]
    pub scopes: Vec<String>,
    /// "active" or "revoked"; a key past `expires_at` stays "active" but is refused.
    #[schema(example = "active")]
    pub status: String,
    /// When the key stops working; null for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the key was created.
    pub created_at: Option<DateTime<Utc>>,
    /// When the key was last used; null if never.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The merchant the key belongs to; null for platform keys.
    #[schema(example = "m_01J9Z3K8Q4")]
    pub merchant_id: Option<String>,
    /// The plaintext key: only in the response of register, create and rotate.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "lp_live_AbCdEfGhIjKlMnOpQrStUvWxYz012345x9Qz")]
    pub key: Option<String>,
}

impl From<pb::ApiKey> for ApiKey {
    fn from(key: pb::ApiKey) -> ApiKey {
        ApiKey {
            key_id: key.key_id,
            name: key.name,
            prefix: key.prefix,
            last4: key.last4,
            scopes: key.scopes,
            status: key.status,
            expires_at: from_timestamp(key.expires_at),
            created_at: from_timestamp(key.created_at),
            last_used_at: from_timestamp(key.last_used_at),
            merchant_id: key.merchant_id,
            key: key.key,
        }
    }
}

/// A scope a key may hold (SPEC §4): the contract's one list, with its JSON names.
pub use points_api::Scope;

/// Creates a key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyBody {
    /// What the key is for, 1–100 characters.
    #[schema(
        example = "POS terminal 3",
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// The scopes of the new key.
    #[schema(example = json!(["points:read", "points:write"]))]
    pub scopes: Vec<Scope>,
    /// When the key stops working; absent for never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Rotates a key; the body may be omitted.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKeyBody {
    /// How long the old key keeps working, 0–604800 seconds (default 0: it stops at once).
    #[schema(example = 3600, minimum = 0, maximum = 604800)]
    pub grace_seconds: Option<u32>,
}

/// The new key (with its plaintext) and the old one (with the `expires_at` the grace period gave it).
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedApiKey {
    /// The new key; `key` holds the plaintext.
    pub api_key: ApiKey,
    /// The old key.
    pub previous: ApiKey,
}

reply_from!(ApiKey => pb::ApiKey);
reply_page!(ApiKey => pb::ListApiKeysResponse);
super::page_request!(PageQuery => pb::ListApiKeysRequest);

impl From<CreateApiKeyBody> for pb::CreateApiKeyRequest {
    fn from(body: CreateApiKeyBody) -> pb::CreateApiKeyRequest {
        pb::CreateApiKeyRequest {
            name: body.name,
            scopes: body
                .scopes
                .into_iter()
                .map(|scope| scope.as_str().to_owned())
                .collect(),
            expires_at: to_timestamp_opt(body.expires_at),
        }
    }
}

impl From<With<String, RotateApiKeyBody>> for pb::RotateApiKeyRequest {
    fn from(With(key_id, body): With<String, RotateApiKeyBody>) -> pb::RotateApiKeyRequest {
        pb::RotateApiKeyRequest {
            key_id,
            grace_seconds: body.grace_seconds,
        }
    }
}

impl Reply<pb::RotateApiKeyResponse> for RotatedApiKey {
    fn reply(response: pb::RotateApiKeyResponse) -> Result<RotatedApiKey, ApiError> {
        Ok(RotatedApiKey {
            api_key: required(response.api_key, "api_key")?.into(),
            previous: required(response.previous, "previous")?.into(),
        })
    }
}

impl From<With<String, NoInput>> for pb::RevokeApiKeyRequest {
    fn from(With(key_id, NoInput): With<String, NoInput>) -> pb::RevokeApiKeyRequest {
        pb::RevokeApiKeyRequest { key_id }
    }
}

forward! {
    /// List the keys of the calling merchant (platform keys for an admin key without `x-merchant-id`).
    #[utoipa::path(
        get,
        path = "/api/v1/api-keys",
        tag = "api-keys",
        operation_id = "list_api_keys",
        params(PageQuery),
        responses((status = 200, description = "One page of keys.", body = Envelope<Page<ApiKey>>))
    )]
    fn list_api_keys(query: PageQuery) -> Page<ApiKey> = api_keys.list_api_keys;
}

forward! {
    /// Create a key; the plaintext `key` is returned once. Scope `keys:manage`.
    #[utoipa::path(
        post,
        path = "/api/v1/api-keys",
        tag = "api-keys",
        operation_id = "create_api_key",
        request_body = CreateApiKeyBody,
        responses((status = 201, description = "The key was created; `key` holds the plaintext.", body = Envelope<ApiKey>))
    )]
    fn create_api_key(body: CreateApiKeyBody) -> ApiKey = api_keys.create_api_key, created;
}

forward! {
    /// Rotate a key: a new key with the same scopes; the old one works for `grace_seconds` more. Scope `keys:manage`.
    #[utoipa::path(
        post,
        path = "/api/v1/api-keys/{key_id}/rotate",
        tag = "api-keys",
        operation_id = "rotate_api_key",
        params(("key_id" = uuid::Uuid, Path, description = "The key to rotate.")),
        request_body(content = Option<RotateApiKeyBody>, description = "Optional; an empty body means `grace_seconds: 0`."),
        responses((status = 201, description = "The new key was issued.", body = Envelope<RotatedApiKey>))
    )]
    fn rotate_api_key(path: String, optional_body: RotateApiKeyBody) -> RotatedApiKey = api_keys.rotate_api_key, created;
}

forward! {
    /// Revoke a key at once. Scope `keys:manage`.
    #[utoipa::path(
        delete,
        path = "/api/v1/api-keys/{key_id}",
        tag = "api-keys",
        operation_id = "revoke_api_key",
        params(("key_id" = uuid::Uuid, Path, description = "The key to revoke.")),
        responses((status = 200, description = "The revoked key.", body = Envelope<ApiKey>))
    )]
    fn revoke_api_key(path: String) -> ApiKey = api_keys.revoke_api_key;
}
