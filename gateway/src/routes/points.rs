//! The points ledger: earn, spend, adjust, reverse, entries, accounts, batch and calculate.
//!
//! Status rule: a mutation that wrote a new entry answers 201; the replay of an earlier request with the same
//! idempotency key (`replayed: true`) answers 200, since nothing was created. Batch and calculate answer 200.

use super::prelude::*;

use axum::http::StatusCode;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};

use super::holds::{BatchCaptureBody, BatchVoidBody, CreateHoldBody, HoldResult};
use super::ledger::{Account, Entry};
use crate::convert::Metadata;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(earn))
        .routes(routes!(spend))
        .routes(routes!(adjust))
        .routes(routes!(reverse))
        .routes(routes!(get_entry))
        .routes(routes!(get_account))
        .routes(routes!(list_accounts))
        .routes(routes!(list_entries))
        .routes(routes!(batch))
        .routes(routes!(calculate))
}

/// A non-zero points delta within the per-operation bound (10^18 either way).
fn nonzero_delta() -> Schema {
    let range = |minimum: i64, maximum: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(minimum))
            .maximum(Some(maximum))
    };
    OneOfBuilder::new()
        .item(range(1, POINTS_PER_OPERATION_MAX))
        .item(range(-POINTS_PER_OPERATION_MAX, -1))
        .into()
}

/// The largest number of points one operation moves (the server's bound).
const POINTS_PER_OPERATION_MAX: i64 = 1_000_000_000_000_000;

/// The result of earn, spend, adjust and reverse.
#[derive(Debug, Serialize, ToSchema)]
pub struct MutationResult {
    /// The entry written (or, for a replay, the one written the first time).
    pub entry: Entry,
    /// The uid's balance after the entry.
    #[schema(example = 560)]
    pub balance: i64,
    /// True when this is the stored result of an earlier request with the same idempotency key.
    #[schema(example = false)]
    pub replayed: bool,
}

impl Reply<pb::MutationResponse> for MutationResult {
    fn reply(response: pb::MutationResponse) -> Result<MutationResult, ApiError> {
        Ok(MutationResult {
            entry: required(response.entry, "entry")?.into(),
            balance: response.balance,
            replayed: response.replayed,
        })
    }

    /// 201 for a new entry, 200 for a replay.
    fn status(&self) -> StatusCode {
        if self.replayed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        }
    }
}

/// Credits points: either `points`, or `amount` + `currency` (+ `rule_code`, default "default") converted by a rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EarnBody {
    /// The merchant's end-user id, 1–128 printable characters.
    #[schema(
        example = "user-42",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub uid: String,
    /// Points to credit (> 0); omit when giving `amount`.
    #[schema(example = 120, minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    pub points: Option<i64>,
    /// Money amount to convert (decimal string); needs `currency`.
    #[schema(
        example = "12.50",
        pattern = "^([1-9][0-9]{0,25}(\\.[0-9]{1,2})?|0\\.(0[1-9]|[1-9][0-9]?))$"
    )]
    pub amount: Option<String>,
    /// ISO-4217 currency of `amount`.
    #[schema(example = "EUR", pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// The conversion rule (default "default").
    #[schema(example = "default", pattern = "^[a-z0-9_-]{1,40}$")]
    pub rule_code: Option<String>,
    /// 1–128 characters, unique per merchant; a retry with the same key and body replays the first result.
    #[schema(
        example = "order-1001-earn",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub idempotency_key: String,
    /// The merchant's own reference, e.g. an order number.
    #[schema(
        example = "order-1001",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub reference: Option<String>,
    /// Free text (newlines and tabs allowed).
    #[schema(
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub description: Option<String>,
    /// A JSON object of at most 4 KiB.
    #[schema(value_type = Option<Object>, example = json!({"store": "downtown"}))]
    pub metadata: Option<Metadata>,
    /// When the earned points expire (default: the rule's `points_ttl_days`, or never).
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<EarnBody> for pb::EarnRequest {
    fn from(body: EarnBody) -> pb::EarnRequest {
        pb::EarnRequest {
            uid: body.uid,
            points: body.points,
            amount: body.amount,
            currency: body.currency,
            rule_code: body.rule_code,
            idempotency_key: body.idempotency_key,
            reference: body.reference,
            description: body.description,
            metadata: body.metadata.map(|Metadata(object)| object),
            expires_at: to_timestamp_opt(body.expires_at),
        }
    }
}

/// Redeems points; the lots that expire first are used first.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendBody {
    /// The merchant's end-user id, 1–128 printable characters.
    #[schema(
        example = "user-42",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub uid: String,
    /// Points to redeem (> 0).
    #[schema(example = 50, minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    pub points: i64,
    /// 1–128 characters, unique per merchant.
    #[schema(
        example = "order-1002-spend",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub idempotency_key: String,
    /// The merchant's own reference.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub reference: Option<String>,
    /// Free text (newlines and tabs allowed).
    #[schema(
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub description: Option<String>,
    /// A JSON object of at most 4 KiB.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

impl From<SpendBody> for pb::SpendRequest {
    fn from(body: SpendBody) -> pb::SpendRequest {
        pb::SpendRequest {
            uid: body.uid,
            points: body.points,
            idempotency_key: body.idempotency_key,
            reference: body.reference,
            description: body.description,
            metadata: body.metadata.map(|Metadata(object)| object),
        }
    }
}

/// A signed manual correction; a negative delta cannot take the balance below zero.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustBody {
    /// The merchant's end-user id, 1–128 printable characters.
    #[schema(
        example = "user-42",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub uid: String,
    /// Non-zero, at most 10^18 either way; positive credits, negative debits.
    #[schema(example = -20, schema_with = nonzero_delta)]
    pub delta: i64,
    /// Why the correction was made (not blank; newlines and tabs allowed).
    #[schema(
        example = "goodwill correction",
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub reason: String,
    /// 1–128 characters, unique per merchant.
    #[schema(
        example = "ticket-77-adjust",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub idempotency_key: String,
}

impl From<AdjustBody> for pb::AdjustRequest {
    fn from(body: AdjustBody) -> pb::AdjustRequest {
        pb::AdjustRequest {
            uid: body.uid,
            delta: body.delta,
            reason: body.reason,
            idempotency_key: body.idempotency_key,
        }
    }
}

/// Reverses an entry (once).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReverseBody {
    /// 1–128 characters, unique per merchant.
    #[schema(
        example = "order-1001-refund",
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub idempotency_key: String,
    /// Why the entry is reversed (newlines and tabs allowed).
    #[schema(
        example = "order refunded",
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub reason: Option<String>,
}

/// One account of the account list.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountSummary {
    /// The merchant's end-user id.
    #[schema(example = "user-42")]
    pub uid: String,
    /// Current balance (never counts expired points).
    #[schema(example = 560)]
    pub balance: i64,
    /// Points reserved by active holds.
    #[schema(example = 0)]
    pub held: i64,
    /// `balance - held`.
    #[schema(example = 560)]
    pub available: i64,
    /// When the balance last changed.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<pb::AccountSummary> for AccountSummary {
    type Error = ApiError;

    fn try_from(account: pb::AccountSummary) -> Result<AccountSummary, ApiError> {
        Ok(AccountSummary {
            updated_at: required(from_timestamp(account.updated_at), "updated_at")?,
            uid: account.uid,
            balance: account.balance,
            held: account.held,
            available: account.available,
        })
    }
}

/// The order of the account list.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountOrder {
    /// By uid (byte order).
    Uid,
    /// Largest balance first, ties by uid.
    BalanceDesc,
}

/// Filters, order and paging of the account list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountsQuery {
    /// Only uids that start with this (case-sensitive, up to 128 printable characters; empty means all).
    #[param(
        min_length = 0,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub uid_prefix: Option<String>,
    /// `uid` (default) or `balance_desc` (top holders first).
    pub order: Option<AccountOrder>,
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page (of the same order).
    pub page_token: Option<String>,
}

/// An entry kind, to filter a uid's entries.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Points credited.
    Earn,
    /// Points redeemed.
    Spend,
    /// Manual correction.
    Adjust,
    /// Reversal of an entry.
    Reverse,
    /// Points that expired.
    Expire,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::Earn => "earn",
            EntryKind::Spend => "spend",
            EntryKind::Adjust => "adjust",
            EntryKind::Reverse => "reverse",
            EntryKind::Expire => "expire",
        }
    }
}

/// Filters and paging of a uid's entries.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntriesQuery {
    /// Only entries of this kind.
    pub kind: Option<EntryKind>,
    /// Entries created at or after this time (RFC 3339).
    #[serde(default, deserialize_with = "deserialize_query_time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<DateTime<Utc>>,
    /// Entries created before this time (RFC 3339).
    #[serde(default, deserialize_with = "deserialize_query_time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<DateTime<Utc>>,
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// One operation of a batch: `op` says which, the other fields are that operation's body.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum BatchOperationBody {
    /// An earn.
    Earn(EarnBody),
    /// A spend.
    Spend(SpendBody),
    /// An adjust.
    Adjust(AdjustBody),
    /// A new hold.
    Hold(CreateHoldBody),
    /// A hold's capture.
    Capture(BatchCaptureBody),
    /// A hold's void.
    Void(BatchVoidBody),
}

/// The schema is written by hand: the derived one would combine `{op}` with a body schema that forbids unknown
/// properties (`allOf`), which no document can satisfy. Here each variant is the body's own object schema with `op`
/// added as a required property, and without value constraints (lengths, ranges, patterns): an operation that breaks
/// them does not fail the batch, it gets its own 40001 result.
impl utoipa::PartialSchema for BatchOperationBody {
    fn schema() -> RefOr<Schema> {
        let variants = [
            ("earn", EarnBody::schema()),
            ("spend", SpendBody::schema()),
            ("adjust", AdjustBody::schema()),
            ("hold", CreateHoldBody::schema()),
            ("capture", BatchCaptureBody::schema()),
            ("void", BatchVoidBody::schema()),
        ];
        variants
            .into_iter()
            .fold(OneOfBuilder::new(), |builder, (op, body)| builder.item(with_op_property(op, body)))
            .description(Some("One operation of a batch: `op` says which, the other fields are that operation's body."))
            .into()
    }
}

impl ToSchema for BatchOperationBody {}

/// `body` (an object schema) with the required property `op` fixed to `op`.
fn with_op_property(op: &str, body: RefOr<Schema>) -> RefOr<Schema> {
    let RefOr::T(Schema::Object(mut object)) = body else {
        return body;
    };
    let op_schema = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some([op]))
        .description(Some("The operation."))
        .build();
    object
        .properties
        .insert("op".to_owned(), RefOr::T(Schema::Object(op_schema)));
    object.required.insert(0, "op".to_owned());
    object.title = Some(format!("batch {op}"));
    RefOr::T(Schema::Object(object))
}

impl From<BatchOperationBody> for pb::BatchOperation {
    fn from(operation: BatchOperationBody) -> pb::BatchOperation {
        let op = match operation {
            BatchOperationBody::Earn(body) => pb::batch_operation::Op::Earn(body.into()),
            BatchOperationBody::Spend(body) => pb::batch_operation::Op::Spend(body.into()),
            BatchOperationBody::Adjust(body) => pb::batch_operation::Op::Adjust(body.into()),
            BatchOperationBody::Hold(body) => pb::batch_operation::Op::Hold(body.into()),
            BatchOperationBody::Capture(body) => pb::batch_operation::Op::Capture(body.into()),
            BatchOperationBody::Void(body) => pb::batch_operation::Op::Void(body.into()),
        };
        pb::BatchOperation { op: Some(op) }
    }
}

/// Up to 1,000 operations; `atomic: true` applies all or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// All or nothing (default false: each operation gets its own result).
    #[serde(default)]
    #[schema(example = false)]
    pub atomic: bool,
    /// The operations, applied in order.
    #[schema(min_items = 1, max_items = 1000)]
    pub operations: Vec<BatchOperationBody>,
}

/// The per-operation results of a batch, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResults {
    /// One result per operation.
    pub results: Vec<BatchItemResult>,
}

/// The result of one batch operation.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItemResult {
    /// The operation's position in the request, from 0.
    #[schema(example = 0)]
    pub index: i32,
    /// 0 on success, else the SPEC error code, e.g. 42201.
    #[schema(example = 0)]
    pub code: i32,
    /// "OK" or the error message.
    #[schema(example = "OK")]
    pub message: String,
    /// The error name, "OK" on success.
    #[schema(example = "OK")]
    pub reason: String,
    /// The operation's result on success, null on error.
    pub data: Option<BatchItemData>,
}

/// The result of one batch operation: an entry's (earn, spend, adjust) or a hold's (hold, capture, void).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // one per batch item, serialized at once
pub enum BatchItemData {
    /// The result of an earn, spend or adjust.
    Mutation(MutationResult),
    /// The result of a hold, capture or void.
    Hold(HoldResult),
}

/// Converts money to points with the rule in effect; writes nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculateBody {
    /// Money amount (decimal string).
    #[schema(
        example = "12.50",
        pattern = "^([1-9][0-9]{0,25}(\\.[0-9]{1,2})?|0\\.(0[1-9]|[1-9][0-9]?))$"
    )]
    pub amount: String,
    /// ISO-4217 currency.
    #[schema(example = "EUR", pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// The rule (default "default").
    #[schema(example = "default", pattern = "^[a-z0-9_-]{1,40}$")]
    pub rule_code: Option<String>,
    /// Use the version in effect at this time (default now).
    pub at: Option<DateTime<Utc>>,
}

/// The points an amount is worth, and how they were computed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Calculation {
    /// The points.
    #[schema(example = 125)]
    pub points: i64,
    /// The rule used.
    #[schema(example = "default")]
    pub rule_code: String,
    /// Its version.
    #[schema(example = 3)]
    pub rule_version: i32,
    /// The input amount.
    #[schema(example = "12.50")]
    pub amount: String,
    /// The input currency.
    #[schema(example = "EUR")]
    pub currency: String,
    /// Money per step.
    #[schema(example = "1.00")]
    pub unit_amount: String,
    /// Points per step.
    #[schema(example = 10)]
    pub points_per_unit: i64,
    /// "floor", "round" or "ceil".
    #[schema(example = "floor")]
    pub rounding: String,
    /// amount / unit_amount * points_per_unit before rounding (exact decimal).
    #[schema(example = "125.0")]
    pub raw_points: String,
    /// True when `max_points` cut the result.
    #[schema(example = false)]
    pub capped: bool,
    /// The rule's cap per transaction.
    pub max_points: Option<i64>,
    /// The rule's minimum amount.
    pub min_amount: Option<String>,
    /// How long earned points live under this rule.
    pub points_ttl_days: Option<i32>,
}

impl From<pb::CalculateResponse> for Calculation {
    fn from(response: pb::CalculateResponse) -> Calculation {
        Calculation {
            points: response.points,
            rule_code: response.rule_code,
            rule_version: response.rule_version,
            amount: response.amount,
            currency: response.currency,
            unit_amount: response.unit_amount,
            points_per_unit: response.points_per_unit,
            rounding: response.rounding,
            raw_points: response.raw_points,
            capped: response.capped,
            max_points: response.max_points,
            min_amount: response.min_amount,
            points_ttl_days: response.points_ttl_days,
        }
    }
}

reply_from!(Entry => pb::Entry, Account => pb::Account, Calculation => pb::CalculateResponse);
reply_page!(Entry => pb::ListEntriesResponse, AccountSummary => pb::ListAccountsResponse);

impl From<With<String, ReverseBody>> for pb::ReverseRequest {
    fn from(With(entry_id, body): With<String, ReverseBody>) -> pb::ReverseRequest {
        pb::ReverseRequest {
            entry_id,
            idempotency_key: body.idempotency_key,
            reason: body.reason,
        }
    }
}

impl From<With<String, NoInput>> for pb::GetEntryRequest {
    fn from(With(entry_id, NoInput): With<String, NoInput>) -> pb::GetEntryRequest {
        pb::GetEntryRequest { entry_id }
    }
}

impl From<With<String, NoInput>> for pb::GetAccountRequest {
    fn from(With(uid, NoInput): With<String, NoInput>) -> pb::GetAccountRequest {
        pb::GetAccountRequest { uid }
    }
}

impl TryFrom<AccountsQuery> for pb::ListAccountsRequest {
    type Error = ApiError;

    fn try_from(query: AccountsQuery) -> Result<pb::ListAccountsRequest, ApiError> {
        let order = match query.order {
            None | Some(AccountOrder::Uid) => "uid",
            Some(AccountOrder::BalanceDesc) => "balance_desc",
        };
        Ok(pb::ListAccountsRequest {
            uid_prefix: query.uid_prefix,
            order: order.to_owned(),
            page_size: page_size(query.page_size)?,
            page_token: query.page_token.unwrap_or_default(),
        })
    }
}

impl TryFrom<With<String, EntriesQuery>> for pb::ListEntriesRequest {
    type Error = ApiError;

    fn try_from(
        With(uid, query): With<String, EntriesQuery>,
    ) -> Result<pb::ListEntriesRequest, ApiError> {
        Ok(pb::ListEntriesRequest {
            uid,
            kind: query.kind.map(|kind| kind.as_str().to_owned()),
            from: to_timestamp_opt(query.from),
            to: to_timestamp_opt(query.to),
            page_size: page_size(query.page_size)?,
            page_token: query.page_token.unwrap_or_default(),
        })
    }
}

impl From<BatchBody> for pb::BatchRequest {
    fn from(body: BatchBody) -> pb::BatchRequest {
        pb::BatchRequest {
            atomic: body.atomic,
            operations: body
                .operations
                .into_iter()
                .map(pb::BatchOperation::from)
                .collect(),
        }
    }
}

impl Reply<pb::BatchResponse> for BatchResults {
    fn reply(response: pb::BatchResponse) -> Result<BatchResults, ApiError> {
        let results = response
            .results
            .into_iter()
            .map(|result| {
                Ok(BatchItemResult {
                    index: result.index,
                    code: result.code,
                    message: result.message,
                    reason: result.reason,
                    data: match (result.data, result.hold_data) {
                        (Some(data), _) => {
                            Some(BatchItemData::Mutation(MutationResult::reply(data)?))
                        }
                        (None, Some(data)) => Some(BatchItemData::Hold(HoldResult::reply(data)?)),
                        (None, None) => None,
                    },
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(BatchResults { results })
    }
}

impl From<CalculateBody> for pb::CalculateRequest {
    fn from(body: CalculateBody) -> pb::CalculateRequest {
        pb::CalculateRequest {
            amount: body.amount,
            currency: body.currency,
            rule_code: body.rule_code,
            at: to_timestamp_opt(body.at),
        }
    }
}

forward! {
    /// Credit points. Scope `points:write`. 201 for a new entry, 200 for a replay.
    #[utoipa::path(
        post,
        path = "/api/v1/points/earn",
        tag = "points",
        operation_id = "earn",
        request_body = EarnBody,
        responses(
            (status = 201, description = "Points credited.", body = Envelope<MutationResult>),
            (status = 200, description = "Replay of an earlier request with the same idempotency key.", body = Envelope<MutationResult>),
        )
    )]
    fn earn(body: EarnBody) -> MutationResult = points.earn;
}

forward! {
    /// Redeem points. Scope `points:write`. 201 for a new entry, 200 for a replay.
    #[utoipa::path(
        post,
        path = "/api/v1/points/spend",
        tag = "points",
        operation_id = "spend",
        request_body = SpendBody,
        responses(
            (status = 201, description = "Points redeemed.", body = Envelope<MutationResult>),
            (status = 200, description = "Replay of an earlier request with the same idempotency key.", body = Envelope<MutationResult>),
        )
    )]
    fn spend(body: SpendBody) -> MutationResult = points.spend;
}

forward! {
    /// Correct a balance by a signed delta. Scope `points:write`. 201 for a new entry, 200 for a replay.
    #[utoipa::path(
        post,
        path = "/api/v1/points/adjust",
        tag = "points",
        operation_id = "adjust",
        request_body = AdjustBody,
        responses(
            (status = 201, description = "Balance adjusted.", body = Envelope<MutationResult>),
            (status = 200, description = "Replay of an earlier request with the same idempotency key.", body = Envelope<MutationResult>),
        )
    )]
    fn adjust(body: AdjustBody) -> MutationResult = points.adjust;
}

forward! {
    /// Reverse an entry (each entry once). Scope `points:write`. 201 for a new entry, 200 for a replay.
    #[utoipa::path(
        post,
        path = "/api/v1/points/entries/{entry_id}/reverse",
        tag = "points",
        operation_id = "reverse",
        params(("entry_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "The entry to reverse.")),
        request_body = ReverseBody,
        responses(
            (status = 201, description = "Entry reversed.", body = Envelope<MutationResult>),
            (status = 200, description = "Replay of an earlier request with the same idempotency key.", body = Envelope<MutationResult>),
        )
    )]
    fn reverse(path: String, body: ReverseBody) -> MutationResult = points.reverse;
}

forward! {
    /// Get one entry. Scope `points:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/points/entries/{entry_id}",
        tag = "points",
        operation_id = "get_entry",
        params(("entry_id" = String, Path, pattern = "^[1-9][0-9]{0,17}$", description = "The entry's id.")),
        responses((status = 200, description = "The entry.", body = Envelope<Entry>))
    )]
    fn get_entry(path: String) -> Entry = points.get_entry;
}

forward! {
    /// A uid's balance and the points expiring in the next 30 days. Scope `points:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/points/accounts/{uid}",
        tag = "points",
        operation_id = "get_account",
        params(("uid" = String, Path, min_length = 1, max_length = 128, description = "The merchant's end-user id (1–128 printable characters).")),
        responses((status = 200, description = "The account (balance 0 for an unknown uid).", body = Envelope<Account>))
    )]
    fn get_account(path: String) -> Account = points.get_account;
}

forward! {
    /// All of the merchant's accounts, by uid or top holders first, with an optional uid prefix. Scope `points:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/points/accounts",
        tag = "points",
        operation_id = "list_accounts",
        params(AccountsQuery),
        responses((status = 200, description = "One page of accounts.", body = Envelope<Page<AccountSummary>>))
    )]
    fn list_accounts(query: AccountsQuery) -> Page<AccountSummary> = points.list_accounts;
}

forward! {
    /// A uid's entries, newest first. Scope `points:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/points/accounts/{uid}/entries",
        tag = "points",
        operation_id = "list_entries",
        params(("uid" = String, Path, min_length = 1, max_length = 128, description = "The merchant's end-user id."), EntriesQuery),
        responses((status = 200, description = "One page of entries.", body = Envelope<Page<Entry>>))
    )]
    fn list_entries(path: String, query: EntriesQuery) -> Page<Entry> = points.list_entries;
}

forward! {
    /// Apply up to 1,000 earn / spend / adjust / hold / capture / void operations. Scope `points:write`. Always 200 when the batch was accepted;
    /// each result carries its own `code`.
    #[utoipa::path(
        post,
        path = "/api/v1/points/batch",
        tag = "points",
        operation_id = "batch",
        request_body = BatchBody,
        responses((status = 200, description = "Per-operation results.", body = Envelope<BatchResults>))
    )]
    fn batch(body: BatchBody) -> BatchResults = points.batch;
}

forward! {
    /// Convert a money amount to points with the rule in effect; writes nothing. Scope `points:read`.
    #[utoipa::path(
        post,
        path = "/api/v1/points/calculate",
        tag = "points",
        operation_id = "calculate",
        request_body = CalculateBody,
        responses((status = 200, description = "The calculation.", body = Envelope<Calculation>))
    )]
    fn calculate(body: CalculateBody) -> Calculation = points.calculate;
}
