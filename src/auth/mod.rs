//! Authentication and authorization of every `points.v1` call.
//!
//! [`layer::CallLayer`] (a tower layer: tonic interceptors are synchronous and cannot query the database) reads
//! `x-api-key` and `x-merchant-id`, and [`Authenticator::authenticate`] resolves key → merchant → tenant schema,
//! checking status, expiry, suspension, migration state and scope on **every** request, cache hit or not. The
//! scope each method needs is declared once in [`access::METHOD_ACCESS`]; a method missing there is refused.

pub mod access;
pub mod cache;
pub mod layer;
pub mod limits;
pub mod sources;

use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use crate::{
    call::{AuthContext, AuthFailure, MerchantContext},
    domain::{
        MerchantStatus, Scope,
        api_key::{ApiKeyPlaintext, KeyHasher},
    },
    error::{ServiceError, ServiceResult},
    store,
    tenancy::TenantSchema,
};
use access::Requirement;
use cache::{AuthCache, LastUsed};

/// Metadata keys.
pub use points_api::headers::{API_KEY as API_KEY_HEADER, MERCHANT_ID as MERCHANT_HEADER};

impl AuthFailure {
    /// A known caller refused by its rate limit.
    pub fn limited(auth: &AuthContext, limited: limits::Limited) -> AuthFailure {
        AuthFailure {
            error: limited.error,
            key_id: Some(auth.key_id),
            key_prefix: Some(auth.key_prefix.clone()),
            merchant_id: auth.owner(),
            retry_after: Some(limited.retry_after),
        }
    }
}

/// Resolves keys to contexts, with the shared cache.
pub struct Authenticator {
    pool: deadpool_postgres::Pool,
    hasher: KeyHasher,
    /// The hasher of `POINTS_KEY_HASH_SECRET_PREVIOUS` while the secret is being rotated.
    previous_hasher: Option<KeyHasher>,
    pub cache: Arc<AuthCache>,
    pub last_used: Arc<LastUsed>,
    tenant_version_latest: i32,
    /// Hashes of keys the database did not know, and when that was learnt (see [`UNKNOWN_KEY_TTL`]).
    unknown: std::sync::Mutex<std::collections::HashMap<[u8; 32], std::time::Instant>>,
}

/// How long an unknown key hash is remembered: a client repeating a bad key costs no query meanwhile. A key is
/// known to its holder only once it exists, so no real key can be refused by this.
pub const UNKNOWN_KEY_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Bound on remembered unknown hashes; at the bound they are forgotten at once.
const UNKNOWN_KEYS_MAX: usize = 100_000;

impl Authenticator {
    pub fn new(
        pool: deadpool_postgres::Pool,
        hasher: KeyHasher,
        cache: Arc<AuthCache>,
        last_used: Arc<LastUsed>,
        tenant_version_latest: i32,
    ) -> Authenticator {
        Authenticator {
            pool,
            hasher,
            previous_hasher: None,
            cache,
            last_used,
            tenant_version_latest,
            unknown: std::sync::Mutex::default(),
        }
    }

    /// During a rotation of the key-hash secret: keys not found under the current secret are looked up under
    /// `previous` too, and re-hashed under the current one when found, so nobody is locked out.
    pub fn with_previous_hasher(mut self, previous: Option<KeyHasher>) -> Authenticator {
        self.previous_hasher = previous;
        self
    }

    fn known_unknown(&self, key_hash: &[u8; 32]) -> bool {
        let unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        unknown
            .get(key_hash)
            .is_some_and(|at| at.elapsed() < UNKNOWN_KEY_TTL)
    }

    fn remember_unknown(&self, key_hash: [u8; 32]) {
        let mut unknown = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        if unknown.len() >= UNKNOWN_KEYS_MAX {
            unknown.clear();
        }
        unknown.insert(key_hash, std::time::Instant::now());
    }

    /// Authenticates and authorizes one call of `method`. When `lookup_blocked` says so (the caller's address failed
    /// too often), a key that is not already cached is refused with `RATE_LIMITED` instead of being looked up. It
    /// and the unknown-key memory are consulted only on a cache miss, so a cached key costs neither.
    pub async fn authenticate(
        &self,
        method: &str,
        api_key: Option<&str>,
        merchant_header: Option<&str>,
        lookup_blocked: impl FnOnce() -> Option<std::time::Duration>,
    ) -> Result<AuthContext, AuthFailure> {
        let requirement = access::requirement(method).ok_or_else(|| {
            AuthFailure::anonymous(ServiceError::permission_denied(format!(
                "method {method} declares no scope"
            )))
        })?;
        let api_key = api_key.filter(|key| !key.is_empty()).ok_or_else(|| {
            AuthFailure::anonymous(ServiceError::unauthenticated("missing x-api-key"))
        })?;
        // Format and checksum first: a malformed key never costs a database query.
        let plaintext = ApiKeyPlaintext::parse(api_key).map_err(AuthFailure::anonymous)?;
        let key_hash = self.hasher.hash(&plaintext);
        let unknown = || AuthFailure::anonymous(ServiceError::unauthenticated("unknown API key"));
        let key = match self.cache.key(&key_hash) {
            Some(hit) => Some(hit),
            None => {
                if self.known_unknown(&key_hash) {
                    return Err(unknown());
                }
                if let Some(wait) = lookup_blocked() {
                    return Err(AuthFailure {
                        retry_after: Some(wait),
                        ..AuthFailure::anonymous(ServiceError::new(
                            crate::error::ErrorCode::RateLimited,
                            "too many failed authentications from this address; retry later",
                        ))
                    });
                }
                self.load_key(&key_hash, &plaintext)
                    .await
                    .map_err(AuthFailure::anonymous)?
            }
        };
        let key = key.ok_or_else(|| {
            self.remember_unknown(key_hash);
            unknown()
        })?;
        let fail = |error: ServiceError, merchant_id: Option<Uuid>| AuthFailure {
            error,
            key_id: Some(key.key_id),
            key_prefix: Some(key.prefix.clone()),
            merchant_id,
            retry_after: None,
        };
        if key.status != "active" {
            return Err(fail(
                ServiceError::unauthenticated("API key revoked"),
                key.merchant_id,
            ));
        }
        if key
            .expires_at
            .is_some_and(|expires_at| expires_at <= Utc::now())
        {
            return Err(fail(
                ServiceError::unauthenticated("API key expired"),
                key.merchant_id,
            ));
        }
        let scopes: Vec<Scope> = key
            .scopes
            .iter()
            .filter_map(|scope| Scope::from_name(scope))
            .collect();
        let is_admin = scopes.contains(&Scope::Admin);

        let merchant_id = match (
            key.merchant_id,
            merchant_header.filter(|value| !value.is_empty()),
        ) {
            (Some(own), None) => Some(own),
            (Some(own), Some(named)) => {
                if Uuid::parse_str(named).ok() != Some(own) {
                    return Err(fail(
                        ServiceError::permission_denied("x-merchant-id names another merchant"),
                        Some(own),
                    ));
                }
                Some(own)
            }
            (None, Some(named)) => match Uuid::parse_str(named) {
                Ok(named) => Some(named),
                Err(_) => {
                    return Err(fail(
                        ServiceError::invalid("x-merchant-id must be a merchant id (UUID)"),
                        None,
                    ));
                }
            },
            (None, None) => None,
        };
        if let Some(merchant_id) = merchant_id {
            let merchant = self
                .load_merchant(merchant_id)
                .await
                .map_err(|error| fail(error, Some(merchant_id)))?;
            let Some(merchant) = merchant else {
                return Err(fail(ServiceError::not_found("merchant not found"), None));
            };
            // Suspension refuses the merchant's own keys; an admin acting for it may still manage it.
            if merchant.status != MerchantStatus::Active.as_str() && !is_admin {
                return Err(fail(
                    ServiceError::permission_denied("merchant is suspended"),
                    Some(merchant_id),
                ));
            }
            if merchant.schema_version < self.tenant_version_latest
                || merchant.migration_error.is_some()
            {
                return Err(fail(
                    ServiceError::unavailable(format!(
                        "merchant data is being migrated (schema version {} of {}); retry later",
                        merchant.schema_version, self.tenant_version_latest
                    )),
                    Some(merchant_id),
                ));
            }
        }
        if let Err(error) = requirement.check(&scopes, merchant_id.is_some()) {
            return Err(fail(error, merchant_id));
        }
        self.last_used.touch(key.key_id);
        Ok(AuthContext {
            key_id: key.key_id,
            key_prefix: key.prefix.clone(),
            scopes,
            merchant: merchant_id.map(|merchant_id| MerchantContext {
                merchant_id,
                schema: TenantSchema::for_merchant(merchant_id),
            }),
        })
    }

    async fn load_key(
        &self,
        key_hash: &[u8; 32],
        plaintext: &ApiKeyPlaintext,
    ) -> ServiceResult<Option<Arc<store::api_keys::KeyAccessRow>>> {
        // The caller has looked in the cache already.
        let generation = self.cache.generation();
        let client = self.pool.get().await?;
        let mut row = store::api_keys::access_by_hash(&**client, key_hash).await?;
        if let (None, Some(previous)) = (&row, &self.previous_hasher) {
            let previous_hash = previous.hash(plaintext);
            if store::api_keys::rehash(&**client, &previous_hash, key_hash).await? > 0 {
                tracing::info!("an API key was re-hashed under the current key-hash secret");
            }
            row = store::api_keys::access_by_hash(&**client, key_hash).await?;
        }
        Ok(row.map(|row| self.cache.insert_key(*key_hash, row, generation)))
    }

    async fn load_merchant(
        &self,
        merchant_id: Uuid,
    ) -> ServiceResult<Option<Arc<store::merchants::MerchantAccessRow>>> {
        if let Some(hit) = self.cache.merchant(merchant_id) {
            return Ok(Some(hit));
        }
        let generation = self.cache.generation();
        let client = self.pool.get().await?;
        let row = store::merchants::access(&**client, merchant_id).await?;
        Ok(row.map(|row| self.cache.insert_merchant(row, generation)))
    }
}

impl Requirement {
    /// Checks the key's scopes and whether a merchant context is present.
    fn check(self, scopes: &[Scope], has_merchant: bool) -> ServiceResult<()> {
        let is_admin = scopes.contains(&Scope::Admin);
        let has = |scope: Scope| is_admin || scopes.contains(&scope);
        match self {
            Requirement::Admin if is_admin => Ok(()),
            Requirement::Admin => Err(ServiceError::permission_denied(
                "this method needs the admin scope",
            )),
            Requirement::AnyKey => Ok(()),
            Requirement::Merchant(scope) if !has(scope) => Err(ServiceError::permission_denied(
                format!("this method needs the {} scope", scope.as_str()),
            )),
            Requirement::Merchant(_) if !has_merchant => Err(ServiceError::permission_denied(
                "this method acts for a merchant: an admin key must send x-merchant-id",
            )),
            Requirement::Merchant(_) => Ok(()),
            Requirement::MerchantOrPlatform(scope) if has(scope) => Ok(()),
            Requirement::MerchantOrPlatform(scope) => Err(ServiceError::permission_denied(
                format!("this method needs the {} scope", scope.as_str()),
            )),
        }
    }
}
