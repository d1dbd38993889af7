//! Reports: the points liability (SPEC §13).

use super::prelude::*;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(liability_report))
}

/// A report's bucket length.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// Calendar days.
    Day,
    /// ISO weeks, from Monday.
    Week,
    /// Calendar months.
    Month,
}

impl Bucket {
    fn as_str(self) -> &'static str {
        match self {
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
        }
    }
}

/// The range, bucket and time zone of a liability report.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LiabilityQuery {
    /// Start (RFC 3339), rounded down to its bucket's start; default 29 days before `to`.
    #[serde(default, deserialize_with = "deserialize_query_time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<DateTime<Utc>>,
    /// End (RFC 3339, exclusive), rounded up to a bucket boundary; default now (so the current bucket is the
    /// last one).
    #[serde(default, deserialize_with = "deserialize_query_time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<DateTime<Utc>>,
    /// `day` (default), `week` or `month`.
    pub bucket: Option<Bucket>,
    /// IANA time zone of the bucket boundaries (default `UTC`, also when empty), e.g. `Europe/Paris`.
    #[param(
        min_length = 0,
        max_length = 64,
        pattern = "^[A-Za-z0-9/_+-]*$",
        example = "Europe/Paris"
    )]
    pub tz: Option<String>,
}

/// Movements of one bucket and the outstanding total at its end. Movement figures are magnitudes (≥ 0).
#[derive(Debug, Serialize, ToSchema)]
pub struct LiabilityBucket {
    /// The bucket's start.
    pub start: DateTime<Utc>,
    /// Points credited by earns.
    #[schema(example = 1200)]
    pub issued: i64,
    /// Points debited by spends.
    #[schema(example = 300)]
    pub redeemed: i64,
    /// Points written off by expiry.
    #[schema(example = 0)]
    pub expired: i64,
    /// Positive adjustments.
    #[schema(example = 10)]
    pub adjusted_in: i64,
    /// Negative adjustments.
    #[schema(example = 0)]
    pub adjusted_out: i64,
    /// Reversals that credit points back (of a spend).
    #[schema(example = 50)]
    pub reversed_in: i64,
    /// Reversals that take points back (of an earn).
    #[schema(example = 0)]
    pub reversed_out: i64,
    /// Total balance at the end of the bucket.
    #[schema(example = 45210)]
    pub outstanding: i64,
}

impl TryFrom<pb::LiabilityBucket> for LiabilityBucket {
    type Error = ApiError;

    fn try_from(bucket: pb::LiabilityBucket) -> Result<LiabilityBucket, ApiError> {
        Ok(LiabilityBucket {
            start: required(from_timestamp(bucket.start), "bucket start")?,
            issued: bucket.issued,
            redeemed: bucket.redeemed,
            expired: bucket.expired,
            adjusted_in: bucket.adjusted_in,
            adjusted_out: bucket.adjusted_out,
            reversed_in: bucket.reversed_in,
            reversed_out: bucket.reversed_out,
            outstanding: bucket.outstanding,
        })
    }
}

/// The outstanding total by the ledger's movements against the sum of account balances, read at one instant.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reconciliation {
    /// Outstanding points by the ledger, as of `as_of`.
    #[schema(example = 45210)]
    pub closing_outstanding: i64,
    /// The sum of every account's balance at the same instant.
    #[schema(example = 45210)]
    pub sum_of_balances: i64,
    /// True when both agree.
    #[schema(example = true)]
    pub ok: bool,
    /// When both were read.
    pub as_of: DateTime<Utc>,
}

/// One merchant's closing figure in the platform report.
#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantLiability {
    /// The merchant.
    pub merchant_id: String,
    /// Its slug.
    #[schema(example = "coffee-corner")]
    pub slug: String,
    /// Its outstanding points at the report's end.
    #[schema(example = 45210)]
    pub closing_outstanding: i64,
}

/// The points liability over a range: opening + Σ movements = closing.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiabilityReport {
    /// Start of the first bucket.
    pub from: DateTime<Utc>,
    /// End of the last bucket (exclusive).
    pub to: DateTime<Utc>,
    /// The bucket length.
    pub bucket: Bucket,
    /// The time zone of the bucket boundaries.
    #[schema(example = "UTC")]
    pub tz: String,
    /// Outstanding points at `from`.
    #[schema(example = 40000)]
    pub opening_outstanding: i64,
    /// Outstanding points at `to`.
    #[schema(example = 45210)]
    pub closing_outstanding: i64,
    /// Every bucket of the range, oldest first (buckets without movements included).
    pub buckets: Vec<LiabilityBucket>,
    /// The check of the ledger against the balances.
    pub reconciliation: Reconciliation,
    /// The platform report only (an admin key without `x-merchant-id`): each merchant's closing figure; empty
    /// otherwise.
    pub merchants: Vec<MerchantLiability>,
}

impl From<LiabilityQuery> for pb::LiabilityReportRequest {
    fn from(query: LiabilityQuery) -> pb::LiabilityReportRequest {
        pb::LiabilityReportRequest {
            from: to_timestamp_opt(query.from),
            to: to_timestamp_opt(query.to),
            bucket: query
                .bucket
                .map(Bucket::as_str)
                .unwrap_or_default()
                .to_owned(),
            tz: query.tz.unwrap_or_default(),
        }
    }
}

impl Reply<pb::LiabilityReport> for LiabilityReport {
    fn reply(report: pb::LiabilityReport) -> Result<LiabilityReport, ApiError> {
        let bucket = match report.bucket.as_str() {
            "week" => Bucket::Week,
            "month" => Bucket::Month,
            _ => Bucket::Day,
        };
        let reconciliation = required(report.reconciliation, "reconciliation")?;
        Ok(LiabilityReport {
            from: required(from_timestamp(report.from), "from")?,
            to: required(from_timestamp(report.to), "to")?,
            bucket,
            tz: report.tz,
            opening_outstanding: report.opening_outstanding,
            closing_outstanding: report.closing_outstanding,
            buckets: report
                .buckets
                .into_iter()
                .map(LiabilityBucket::try_from)
                .collect::<Result<_, _>>()?,
            reconciliation: Reconciliation {
                closing_outstanding: reconciliation.closing_outstanding,
                sum_of_balances: reconciliation.sum_of_balances,
                ok: reconciliation.ok,
                as_of: required(from_timestamp(reconciliation.as_of), "as_of")?,
            },
            merchants: report
                .merchants
                .into_iter()
                .map(|merchant| MerchantLiability {
                    merchant_id: merchant.merchant_id,
                    slug: merchant.slug,
                    closing_outstanding: merchant.closing_outstanding,
                })
                .collect(),
        })
    }
}

forward! {
    /// The points liability: per-bucket issued, redeemed, expired, adjusted and reversed points, the outstanding
    /// total at each bucket's end, and the reconciliation against the sum of balances. An admin key without
    /// `x-merchant-id` gets the platform total and each merchant's closing figure. Scope `points:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/reports/liability",
        tag = "reports",
        operation_id = "get_liability_report",
        params(LiabilityQuery),
        responses((status = 200, description = "The report.", body = Envelope<LiabilityReport>))
    )]
    fn liability_report(query: LiabilityQuery) -> LiabilityReport = reports.get_liability_report;
}
