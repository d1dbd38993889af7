//! The first platform admin key (SPEC §4): from `POINTS_BOOTSTRAP_ADMIN_KEY` for deployments, created and printed
//! once on first start, or created on demand by `points admin create-key`.

use super::{Services, api_keys};
use crate::store::sql::params;
use crate::{domain::api_key::ApiKeyPlaintext, error::ServiceError, store};

/// The name given to bootstrap keys.
pub const BOOTSTRAP_KEY_NAME: &str = "bootstrap admin";

/// What start-up did about the admin key.
#[derive(Debug)]
pub enum Bootstrap {
    /// An admin key already existed; nothing was created.
    Existing,
    /// The key from the environment was installed (or already was).
    FromEnvironment,
    /// No admin key existed: this one was created; print it once.
    Created(ApiKeyPlaintext),
}

/// Ensures a platform admin key exists. Instances starting together serialize on an advisory lock.
pub async fn ensure_admin_key(
    services: &Services,
    from_environment: Option<&str>,
) -> anyhow::Result<Bootstrap> {
    let mut client = services.pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute_typed(
            "SELECT pg_advisory_xact_lock(hashtext('points:bootstrap-admin'))",
            &params![],
        )
        .await?;
    if let Some(value) = from_environment {
        let plaintext = ApiKeyPlaintext::parse(value).map_err(|_| {
            anyhow::anyhow!(
                "POINTS_BOOTSTRAP_ADMIN_KEY is not a well-formed key (lp_live_/lp_test_ format)"
            )
        })?;
        let key_hash = services.hasher.hash(&plaintext);
        if !store::api_keys::hash_exists(&*transaction, &key_hash).await? {
            store::api_keys::insert(
                &*transaction,
                &store::api_keys::NewApiKey {
                    key_id: uuid::Uuid::now_v7(),
                    merchant_id: None,
                    name: BOOTSTRAP_KEY_NAME,
                    key_hash: &key_hash,
                    prefix: plaintext.display_prefix(),
                    last4: plaintext.last4(),
                    scopes: &["admin".to_owned()],
                    expires_at: None,
                },
            )
            .await?;
        }
        transaction.commit().await?;
        return Ok(Bootstrap::FromEnvironment);
    }
    if store::api_keys::active_admin_key_exists(&*transaction).await? {
        return Ok(Bootstrap::Existing);
    }
    let issued = create_admin_key_in(&*transaction, services, BOOTSTRAP_KEY_NAME).await?;
    transaction.commit().await?;
    Ok(Bootstrap::Created(issued))
}

/// Creates a new platform admin key (the CLI subcommand).
pub async fn create_admin_key(services: &Services, name: &str) -> anyhow::Result<ApiKeyPlaintext> {
    let client = services.pool.get().await?;
    Ok(create_admin_key_in(&**client, services, name).await?)
}

async fn create_admin_key_in(
    client: &impl tokio_postgres::GenericClient,
    services: &Services,
    name: &str,
) -> Result<ApiKeyPlaintext, ServiceError> {
    let issued = api_keys::issue(client, services, None, name, &["admin".to_owned()], None).await?;
    Ok(issued.plaintext)
}
