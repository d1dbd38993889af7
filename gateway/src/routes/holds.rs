//! Holds (SPEC §12): reserve points at checkout, capture (a spend) or void them at shipment.
//!
//! Status rule: a request that created something answers 201 (a new hold, or the spend entry of a capture); a void,
//! and the replay of an earlier request with the same idempotency key (`replayed: true`), answer 200.

use super::prelude::*;

use axum::http::StatusCode;

use super::ledger::{Account, Entry};
use crate::convert::{Metadata, metadata_object};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_hold))
        .routes(routes!(get_hold))
        .routes(routes!(capture_hold))
        .routes(routes!(void_hold))
        .routes(routes!(list_holds))
}

/// Points reserved for a later capture or void.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hold {
    /// The hold's id.
    #[schema(example = "7")]
    pub hold_id: String,
    /// The merchant's end-user id.
    #[schema(example = "user-42")]
    pub uid: String,
    /// Points reserved.
    #[schema(example = 300)]
    pub points: i64,
    /// Points the capture spent (0 unless captured; less than `points` for a partial capture).
    #[schema(example = 0)]
    pub captured_points: i64,
    /// "active", "captured", "voided" or "expired" (an active hold past `expires_at` reads as expired at once).
    #[schema(example = "active")]
    pub status: String,
    /// When the hold lapses by itself if neither captured nor voided.
    pub expires_at: Option<DateTime<Utc>>,
    /// The merchant's own reference, e.g. an order number.
    #[schema(example = "order-1001")]
    pub reference: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// The JSON object given with the request (`{}` when none); the capture's entry carries it.
    #[schema(value_type = Object, example = json!({"store": "downtown"}))]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The idempotency key of the request that created the hold.
    #[schema(example = "order-1001-hold")]
    pub idempotency_key: String,
    /// The spend entry the capture wrote.
    pub capture_entry_id: Option<String>,
    /// When the hold was created.
    pub created_at: Option<DateTime<Utc>>,
    /// When it was captured, voided or expired; null while active.
    pub closed_at: Option<DateTime<Utc>>,
}

impl From<pb::Hold> for Hold {
    fn from(hold: pb::Hold) -> Hold {
        Hold {
            hold_id: hold.hold_id,
            uid: hold.uid,
            points: hold.points,
            captured_points: hold.captured_points,
            status: hold.status,
            expires_at: from_timestamp(hold.expires_at),
            reference: hold.reference,
            description: hold.description,
            metadata: metadata_object(hold.metadata.as_ref()),
            idempotency_key: hold.idempotency_key,
            capture_entry_id: hold.capture_entry_id,
            created_at: from_timestamp(hold.created_at),
            closed_at: from_timestamp(hold.closed_at),
        }
    }
}

/// The result of creating, capturing or voiding a hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldResult {
    /// The hold after the operation (for a replay: as it is now).
    pub hold: Hold,
    /// The uid's account after the operation: `held` and `available` include the change.
    pub account: Account,
    /// True when this is the stored result of an earlier request with the same idempotency key.
    #[schema(example = false)]
    pub replayed: bool,
    /// For a capture: the spend entry it wrote (with `hold_id`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<Entry>,
}

impl Reply<pb::HoldResponse> for HoldResult {
    fn reply(response: pb::HoldResponse) -> Result<HoldResult, ApiError> {
        Ok(HoldResult {
            hold: required(response.hold, "hold")?.into(),
            account: required(response.account, "account")?.into(),
            replayed: response.replayed,
            entry: response.entry.map(Entry::from),
        })
    }

    /// 201 for a new hold or a capture's new entry; 200 for a void or a replay.
    fn status(&self) -> StatusCode {
        let created_hold = self.hold.status == "active";
        if !self.replayed && (created_hold || self.entry.is_some()) {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        }
    }
}

/// Reserves points: lowers `available`, not the balance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHoldBody {
    /// The merchant's end-user id, 1–128 printable characters.
    #[schema(
        example = "user-42",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub uid: String,
    /// Points to reserve (> 0, at most `available`).
    #[schema(example = 300, minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    pub points: i64,
    /// 1–128 characters, unique per merchant; a retry with the same key and body replays the first result.
    #[schema(
        example = "order-1001-hold",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub idempotency_key: String,
    /// When the hold lapses (default 15 minutes from now, at most 30 days ahead).
    pub expires_at: Option<DateTime<Utc>>,
    /// The order the points are held for; the capture's spend entry carries it.
    #[schema(
        example = "order-1001",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub reference: Option<String>,
    /// Free text for the hold and its capture's entry (newlines and tabs allowed).
    #[schema(
        example = "Checkout, awaiting shipment",
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub description: Option<String>,
    /// A JSON object of at most 4 KiB, carried to the capture's entry.
    #[schema(value_type = Option<Object>, example = json!({"cart": "c-77"}))]
    pub metadata: Option<Metadata>,
}

impl From<CreateHoldBody> for pb::CreateHoldRequest {
    fn from(body: CreateHoldBody) -> pb::CreateHoldRequest {
        pb::CreateHoldRequest {
            uid: body.uid,
            points: body.points,
            idempotency_key: body.idempotency_key,
            expires_at: to_timestamp_opt(body.expires_at),
            reference: body.reference,
            description: body.description,
            metadata: body.metadata.map(|Metadata(object)| object),
        }
    }
}

/// Spends the hold: all of it, or `points` of it (the rest is released).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureBody {
    /// 1–128 characters, unique per merchant.
    #[schema(
        example = "order-1001-capture",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub idempotency_key: String,
    /// Points to spend (> 0, at most the hold's points); default the whole hold.
    #[schema(example = 250, minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    pub points: Option<i64>,
}

/// Releases the hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidBody {
    /// 1–128 characters, unique per merchant.
    #[schema(
        example = "order-1001-void",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub idempotency_key: String,
}

/// A capture in a batch: the hold and the capture's body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCaptureBody {
    /// The hold to capture.
    #[schema(example = "7", pattern = "^[1-9][0-9]{0,17}$")]
    pub hold_id: String,
    /// 1–128 characters, unique per merchant.
    pub idempotency_key: String,
    /// Points to spend; default the whole hold.
    pub points: Option<i64>,
}

/// A void in a batch: the hold and the void's body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchVoidBody {
    /// The hold to void.
    #[schema(example = "7", pattern = "^[1-9][0-9]{0,17}$")]
    pub hold_id: String,
    /// 1–128 characters, unique per merchant.
    pub idempotency_key: String,
}

impl From<With<String, CaptureBody>> for pb::CaptureHoldRequest {
    fn from(With(hold_id, body): With<String, CaptureBody>) -> pb::CaptureHoldRequest {
        pb::CaptureHoldRequest {
            hold_id,
            idempotency_key: body.idempotency_key,
            points: body.points,
        }
    }
}

impl From<BatchCaptureBody> for pb::CaptureHoldRequest {
    fn from(body: BatchCaptureBody) -> pb::CaptureHoldRequest {
        let capture = CaptureBody {
            idempotency_key: body.idempotency_key,
            points: body.points,
        };
        With(body.hold_id, capture).into()
    }
}

impl From<With<String, VoidBody>> for pb::VoidHoldRequest {
    fn from(With(hold_id, body): With<String, VoidBody>) -> pb::VoidHoldRequest {
        pb::VoidHoldRequest {
            hold_id,
            idempotency_key: body.idempotency_key,
        }
    }
}

impl From<BatchVoidBody> for pb::VoidHoldRequest {
    fn from(body: BatchVoidBody) -> pb::VoidHoldRequest {
        let void = VoidBody {
            idempotency_key: body.idempotency_key,
        };
        With(body.hold_id, void).into()
    }
}

impl From<With<String, NoInput>> for pb::GetHoldRequest {
    fn from(With(hold_id, NoInput): With<String, NoInput>) -> pb::GetHoldRequest {
        pb::GetHoldRequest { hold_id }
    }
}

impl TryFrom<With<String, PageQuery>> for pb::ListHoldsRequest {
    type Error = ApiError;

    fn try_from(
        With(uid, query): With<String, PageQuery>,
    ) -> Result<pb::ListHoldsRequest, ApiError> {
        Ok(pb::ListHoldsRequest {
            uid,
            page_size: page_size(query.page_size)?,
            page_token: query.page_token.unwrap_or_default(),
        })
    }
}

reply_from!(Hold => pb::Hold);
reply_page!(Hold => pb::ListHoldsResponse);

forward! {
    /// Reserve points for a later capture or void. Scope `points:write`. 201 for a new hold, 200 for a replay;
    /// 422 INSUFFICIENT_POINTS when `available` is short.
    #[utoipa::path(
        post,
        path = "/api/v1/points/holds",
        tag = "holds",
        operation_id = "create_hold",
        request_body = CreateHoldBody,
        responses(
            (status = 201, description = "Points reserved.", body = Envelope<HoldResult>),
            (status = 200, description = "Replay of an earlier request with the same idempotency key.", body = Envelope<HoldResult>),
        )
    )]
    fn create_hold(body: CreateHoldBody) -> HoldResult = points.create_hold;
}

forward! {
    /// Get one hold. Scope `points:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/points/holds/{hold_id}",
        tag = "holds",
        operation_id = "get_hold",
        params(("hold_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "The hold's id.")),
        responses((status = 200, description = "The hold.", body = Envelope<Hold>))
    )]
    fn get_hold(path: String) -> Hold = points.get_hold;
}

forward! {
    /// Capture a hold: one `spend` entry carrying `hold_id`, the whole hold or `points` of it (the rest is released).
    /// Scope `points:write`. 201 for a new capture, 200 for a replay; 422 HOLD_NOT_ACTIVE for a captured, voided or
    /// expired hold; 422 INSUFFICIENT_POINTS when the held points expired meanwhile.
    #[utoipa::path(
        post,
        path = "/api/v1/points/holds/{hold_id}/capture",
        tag = "holds",
        operation_id = "capture_hold",
        params(("hold_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "The hold to capture.")),
        request_body = CaptureBody,
        responses(
            (status = 201, description = "Hold captured.", body = Envelope<HoldResult>),
            (status = 200, description = "Replay of an earlier request with the same idempotency key.", body = Envelope<HoldResult>),
        )
    )]
    fn capture_hold(path: String, body: CaptureBody) -> HoldResult = points.capture_hold;
}

forward! {
    /// Void a hold: its points are available again. Scope `points:write`. 422 HOLD_NOT_ACTIVE for a captured, voided
    /// or expired hold.
    #[utoipa::path(
        post,
        path = "/api/v1/points/holds/{hold_id}/void",
        tag = "holds",
        operation_id = "void_hold",
        params(("hold_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "The hold to void.")),
        request_body = VoidBody,
        responses((status = 200, description = "Hold voided (or the replay of an earlier void).", body = Envelope<HoldResult>))
    )]
    fn void_hold(path: String, body: VoidBody) -> HoldResult = points.void_hold;
}

forward! {
    /// A uid's holds, newest first. Scope `points:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/points/accounts/{uid}/holds",
        tag = "holds",
        operation_id = "list_holds",
        params(("uid" = String, Path, min_length = 1, max_length = 128, description = "The merchant's end-user id."), PageQuery),
        responses((status = 200, description = "One page of holds.", body = Envelope<Page<Hold>>))
    )]
    fn list_holds(path: String, query: PageQuery) -> Page<Hold> = points.list_holds;
}
