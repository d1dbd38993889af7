//! What every resource module uses: the JSON and OpenAPI derives, the forwarding path and the shared shapes.

pub use chrono::{DateTime, Utc};
pub use serde::{Deserialize, Serialize};
pub use utoipa::{IntoParams, ToSchema};
pub use utoipa_axum::router::OpenApiRouter;
pub use utoipa_axum::routes;

pub use super::forward::{NoInput, Reply, With};
pub use super::{Page, PageQuery, page_size, required};
pub use crate::convert::{deserialize_query_time, from_timestamp, to_timestamp_opt};
pub use crate::envelope::Envelope;
pub use crate::error::ApiError;
pub use crate::pb;
pub use crate::state::AppState;
pub use crate::{forward, reply_from, reply_page};
