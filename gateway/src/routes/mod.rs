//! The `/api/v1` resources of SPEC §9, one module per gRPC service, plus the operations endpoints.
//!
//! Each module holds its JSON shapes (SPEC §11), their proto conversions, its handlers with their OpenAPI
//! annotations, and a `router()`; [`api_router`] merges them so a route and its documentation are declared once.

pub mod api_keys;
pub mod audit;
pub mod forward;
pub mod holds;
pub mod ledger;
pub mod merchants;
pub mod ops;
pub mod points;
mod prelude;
pub mod reports;
pub mod rules;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest `page_size` of every list (SPEC §8).
pub const PAGE_SIZE_MAX: u32 = 500;

/// Every `/api/v1` route.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(merchants::router())
        .merge(api_keys::router())
        .merge(points::router())
        .merge(holds::router())
        .merge(rules::router())
        .merge(reports::router())
        .merge(audit::router())
}

/// One page of a list: `{items, next_page_token}`; `next_page_token` is null on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass as `page_token` to get the next page; null when this is the last page.
    #[schema(example = "eyJvIjo1MH0")]
    pub next_page_token: Option<String>,
}

/// The paging parameters of lists without filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// The query of a route that takes no query parameters: any parameter is refused with 400, as unknown JSON fields
/// are, so that a guessed or misspelt parameter (`GET /points/accounts/{uid}?at=...`) is reported instead of being
/// silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

/// `TryFrom<PageQuery>` for list requests that take only `page_size` and `page_token`.
macro_rules! page_request {
    ($($query:ty => $request:ty),* $(,)?) => {
        $(impl TryFrom<$query> for $request {
            type Error = $crate::error::ApiError;

            fn try_from(query: $query) -> Result<$request, $crate::error::ApiError> {
                Ok(Self {
                    page_size: $crate::routes::page_size(query.page_size)?,
                    page_token: query.page_token.unwrap_or_default(),
                })
            }
        })*
    };
}
pub(crate) use page_request;

/// The proto `page_size`: 0 (the server's default) when absent; 1–500 when given.
///
/// Checked here because proto3 cannot tell an explicit 0 from "absent": without this, `page_size=0` would silently
/// mean "default".
pub fn page_size(page_size: Option<u32>) -> Result<i32, ApiError> {
    match page_size {
        None => Ok(0),
        Some(size @ 1..=PAGE_SIZE_MAX) => Ok(size as i32),
        Some(size) => Err(ApiError::invalid_argument(format!(
            "page_size must be between 1 and {PAGE_SIZE_MAX}, got {size}"
        ))),
    }
}

/// A field the points service must always fill; its absence is a server bug, reported as 500 and logged.
pub fn required<T>(value: Option<T>, what: &'static str) -> Result<T, ApiError> {
    value.ok_or_else(|| {
        tracing::error!(
            field = what,
            "points service response lacks a required field"
        );
        ApiError::internal()
    })
}
