//! `points.v1.MerchantService`.

use tonic::{Request, Response, Status};

use super::{Handlers, api_keys::api_key_message, handle, timestamp};
use crate::{
    domain::Merchant,
    pb::{self, merchant_service_server::MerchantService},
    service::{api_keys as key_service, merchants},
};

pub fn merchant_message(row: Merchant) -> pb::Merchant {
    pb::Merchant {
        merchant_id: row.merchant_id.to_string(),
        slug: row.slug,
        name: row.name,
        status: row.status,
        created_at: Some(timestamp(row.created_at)),
    }
}

#[tonic::async_trait]
impl MerchantService for Handlers {
    async fn register_merchant(
        &self,
        request: Request<pb::RegisterMerchantRequest>,
    ) -> Result<Response<pb::RegisterMerchantResponse>, Status> {
        handle(request, |call, message| async move {
            let (merchant, key) =
                merchants::register(&self.services, &call, &message.slug, &message.name).await?;
            Ok(pb::RegisterMerchantResponse {
                merchant: Some(merchant_message(merchant)),
                api_key: Some(api_key_message(key.row, Some(key.plaintext.expose()))),
            })
        })
        .await
    }

    async fn get_merchant(
        &self,
        request: Request<pb::GetMerchantRequest>,
    ) -> Result<Response<pb::Merchant>, Status> {
        handle(request, |_call, message| async move {
            Ok(merchant_message(
                merchants::get(&self.services, &message.merchant_id).await?,
            ))
        })
        .await
    }

    async fn list_merchants(
        &self,
        request: Request<pb::ListMerchantsRequest>,
    ) -> Result<Response<pb::ListMerchantsResponse>, Status> {
        handle(request, |_call, message| async move {
            let (rows, next_page_token) =
                merchants::list(&self.services, message.page_size, &message.page_token).await?;
            Ok(pb::ListMerchantsResponse {
                items: rows.into_iter().map(merchant_message).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn update_merchant(
        &self,
        request: Request<pb::UpdateMerchantRequest>,
    ) -> Result<Response<pb::Merchant>, Status> {
        handle(request, |call, message| async move {
            let row = merchants::update(
                &self.services,
                &call,
                &message.merchant_id,
                message.name.as_deref(),
                message.status.as_deref(),
            )
            .await?;
            Ok(merchant_message(row))
        })
        .await
    }

    async fn get_me(
        &self,
        request: Request<pb::GetMeRequest>,
    ) -> Result<Response<pb::GetMeResponse>, Status> {
        handle(request, |call, _message| async move {
            let (merchant, key) = key_service::me(&self.services, &call).await?;
            Ok(pb::GetMeResponse {
                merchant: merchant.map(merchant_message),
                api_key: Some(api_key_message(key, None)),
            })
        })
        .await
    }
}
