//! `points.v1.ApiKeyService`.

use tonic::{Request, Response, Status};

use super::{Handlers, handle, parse_timestamp, timestamp, timestamp_opt};
use crate::{
    domain::api_key::ApiKey,
    pb::{self, api_key_service_server::ApiKeyService},
    service::api_keys,
};

/// A key as the API shows it; `plaintext` only in the response that created it.
pub fn api_key_message(row: ApiKey, plaintext: Option<&str>) -> pb::ApiKey {
    pb::ApiKey {
        key_id: row.key_id.to_string(),
        name: row.name,
        prefix: row.prefix,
        last4: row.last4,
        scopes: row.scopes,
        status: row.status,
        expires_at: timestamp_opt(row.expires_at),
        created_at: Some(timestamp(row.created_at)),
        last_used_at: timestamp_opt(row.last_used_at),
        merchant_id: row.merchant_id.map(|id| id.to_string()),
        key: plaintext.map(str::to_owned),
    }
}

#[tonic::async_trait]
impl ApiKeyService for Handlers {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        handle(request, |call, message| async move {
            let expires_at = parse_timestamp("expires_at", message.expires_at)?;
            let issued = api_keys::create(
                &self.services,
                &call,
                &message.name,
                &message.scopes,
                expires_at,
            )
            .await?;
            Ok(api_key_message(issued.row, Some(issued.plaintext.expose())))
        })
        .await
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        handle(request, |call, message| async move {
            let (rows, next_page_token) = api_keys::list(
                &self.services,
                &call,
                message.page_size,
                &message.page_token,
            )
            .await?;
            Ok(pb::ListApiKeysResponse {
                items: rows
                    .into_iter()
                    .map(|row| api_key_message(row, None))
                    .collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn rotate_api_key(
        &self,
        request: Request<pb::RotateApiKeyRequest>,
    ) -> Result<Response<pb::RotateApiKeyResponse>, Status> {
        handle(request, |call, message| async move {
            let (issued, previous) = api_keys::rotate(
                &self.services,
                &call,
                &message.key_id,
                message.grace_seconds,
            )
            .await?;
            Ok(pb::RotateApiKeyResponse {
                api_key: Some(api_key_message(issued.row, Some(issued.plaintext.expose()))),
                previous: Some(api_key_message(previous, None)),
            })
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        handle(request, |call, message| async move {
            Ok(api_key_message(
                api_keys::revoke(&self.services, &call, &message.key_id).await?,
                None,
            ))
        })
        .await
    }
}
