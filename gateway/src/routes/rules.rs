//! Conversion rules: effective-dated, immutable versions per code; single put and atomic batch sync.

use super::prelude::*;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rules, sync_rules))
        .routes(routes!(get_rule, put_rule))
        .routes(routes!(list_rule_versions))
}

/// One immutable version of a conversion rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleVersion {
    /// The rule's code, `[a-z0-9_-]{1,40}`.
    #[schema(example = "default")]
    pub code: String,
    /// 1, 2, 3… per code.
    #[schema(example = 3)]
    pub version: i32,
    /// ISO-4217 currency.
    #[schema(example = "EUR")]
    pub currency: String,
    /// Money per step (decimal string).
    #[schema(example = "1.00")]
    pub unit_amount: String,
    /// Points per step.
    #[schema(example = 10, minimum = 1)]
    pub points_per_unit: i64,
    /// "floor", "round" (half away from zero) or "ceil".
    #[schema(example = "floor")]
    pub rounding: String,
    /// Amounts below this earn nothing.
    #[schema(example = "5.00")]
    pub min_amount: Option<String>,
    /// Cap on points per transaction.
    #[schema(example = 1000, minimum = 1)]
    pub max_points: Option<i64>,
    /// How long earned points live; null for forever.
    #[schema(example = 365, minimum = 1, maximum = 36500)]
    pub points_ttl_days: Option<i32>,
    /// Start of validity.
    pub effective_from: Option<DateTime<Utc>>,
    /// End of validity; null for open-ended.
    pub effective_to: Option<DateTime<Utc>>,
    /// When the version was created.
    pub created_at: Option<DateTime<Utc>>,
}

impl From<pb::RuleVersion> for RuleVersion {
    fn from(version: pb::RuleVersion) -> RuleVersion {
        RuleVersion {
            code: version.code,
            version: version.version,
            currency: version.currency,
            unit_amount: version.unit_amount,
            points_per_unit: version.points_per_unit,
            rounding: version.rounding,
            min_amount: version.min_amount,
            max_points: version.max_points,
            points_ttl_days: version.points_ttl_days,
            effective_from: from_timestamp(version.effective_from),
            effective_to: from_timestamp(version.effective_to),
            created_at: from_timestamp(version.created_at),
        }
    }
}

/// How a converted amount is rounded to whole points.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    /// Towards zero.
    Floor,
    /// Half away from zero.
    Round,
    /// Away from zero.
    Ceil,
}

impl Rounding {
    fn as_str(self) -> &'static str {
        match self {
            Rounding::Floor => "floor",
            Rounding::Round => "round",
            Rounding::Ceil => "ceil",
        }
    }
}

/// A new version of the rule named in the path.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRuleBody {
    /// ISO-4217 currency.
    #[schema(example = "EUR", pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Money per step (decimal string > 0).
    #[schema(
        example = "1.00",
        pattern = "^([1-9][0-9]{0,25}(\\.[0-9]{1,2})?|0\\.(0[1-9]|[1-9][0-9]?))$"
    )]
    pub unit_amount: String,
    /// Points per step.
    #[schema(example = 10, minimum = 1)]
    pub points_per_unit: i64,
    /// Rounding of the converted amount.
    pub rounding: Rounding,
    /// Amounts below this earn nothing.
    #[schema(example = "5.00", pattern = "^(0|[1-9][0-9]{0,25})(\\.[0-9]{1,2})?$")]
    pub min_amount: Option<String>,
    /// Cap on points per transaction.
    #[schema(example = 1000, minimum = 1)]
    pub max_points: Option<i64>,
    /// How long earned points live.
    #[schema(example = 365, minimum = 1, maximum = 36500)]
    pub points_ttl_days: Option<i32>,
    /// Start of validity (default now).
    pub effective_from: Option<DateTime<Utc>>,
    /// End of validity (default open-ended).
    pub effective_to: Option<DateTime<Utc>>,
}

impl PutRuleBody {
    fn into_proto(self, code: String) -> pb::PutRuleRequest {
        pb::PutRuleRequest {
            code,
            currency: self.currency,
            unit_amount: self.unit_amount,
            points_per_unit: self.points_per_unit,
            rounding: self.rounding.as_str().to_owned(),
            min_amount: self.min_amount,
            max_points: self.max_points,
            points_ttl_days: self.points_ttl_days,
            effective_from: to_timestamp_opt(self.effective_from),
            effective_to: to_timestamp_opt(self.effective_to),
        }
    }
}

/// One rule of a batch sync: a new version of `code`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRuleBody {
    /// The rule's code, `[a-z0-9_-]{1,40}`.
    #[schema(example = "default", pattern = "^[a-z0-9_-]{1,40}$")]
    pub code: String,
    /// ISO-4217 currency.
    #[schema(example = "EUR", pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Money per step (decimal string > 0).
    #[schema(
        example = "1.00",
        pattern = "^([1-9][0-9]{0,25}(\\.[0-9]{1,2})?|0\\.(0[1-9]|[1-9][0-9]?))$"
    )]
    pub unit_amount: String,
    /// Points per step.
    #[schema(example = 10, minimum = 1)]
    pub points_per_unit: i64,
    /// Rounding of the converted amount.
    pub rounding: Rounding,
    /// Amounts below this earn nothing.
    #[schema(example = "5.00", pattern = "^(0|[1-9][0-9]{0,25})(\\.[0-9]{1,2})?$")]
    pub min_amount: Option<String>,
    /// Cap on points per transaction.
    #[schema(example = 1000, minimum = 1)]
    pub max_points: Option<i64>,
    /// How long earned points live.
    #[schema(example = 365, minimum = 1, maximum = 36500)]
    pub points_ttl_days: Option<i32>,
    /// Start of validity (default now).
    pub effective_from: Option<DateTime<Utc>>,
    /// End of validity (default open-ended).
    pub effective_to: Option<DateTime<Utc>>,
}

impl From<SyncRuleBody> for pb::PutRuleRequest {
    fn from(rule: SyncRuleBody) -> pb::PutRuleRequest {
        let SyncRuleBody {
            code,
            currency,
            unit_amount,
            points_per_unit,
            rounding,
            min_amount,
            max_points,
            points_ttl_days,
            effective_from,
            effective_to,
        } = rule;
        PutRuleBody {
            currency,
            unit_amount,
            points_per_unit,
            rounding,
            min_amount,
            max_points,
            points_ttl_days,
            effective_from,
            effective_to,
        }
        .into_proto(code)
    }
}

/// How a batch sync treats codes absent from the list.
#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Leave them alone.
    #[default]
    Upsert,
    /// End them (set `effective_to`).
    Replace,
}

impl SyncMode {
    fn as_str(self) -> &'static str {
        match self {
            SyncMode::Upsert => "upsert",
            SyncMode::Replace => "replace",
        }
    }
}

/// Upserts many rules in one atomic call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRulesBody {
    /// "upsert" (default) or "replace".
    #[serde(default)]
    pub mode: SyncMode,
    /// At most 1,000 rules, each code once.
    #[schema(max_items = 1000)]
    pub rules: Vec<SyncRuleBody>,
}

/// What a batch sync did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncResult {
    /// The versions created by this call.
    pub created: Vec<RuleVersion>,
    /// Codes whose current version was ended by `replace`.
    #[schema(example = json!(["summer-2024"]))]
    pub ended: Vec<String>,
}

/// `?at=` of a rule lookup.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RuleAtQuery {
    /// Return the version in effect at this time (RFC 3339; default now).
    #[serde(default, deserialize_with = "deserialize_query_time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<DateTime<Utc>>,
}

reply_from!(RuleVersion => pb::RuleVersion);
reply_page!(RuleVersion => pb::ListRulesResponse, RuleVersion => pb::ListRuleVersionsResponse);
super::page_request!(PageQuery => pb::ListRulesRequest);

impl From<SyncRulesBody> for pb::SyncRulesRequest {
    fn from(body: SyncRulesBody) -> pb::SyncRulesRequest {
        pb::SyncRulesRequest {
            mode: body.mode.as_str().to_owned(),
            rules: body
                .rules
                .into_iter()
                .map(pb::PutRuleRequest::from)
                .collect(),
        }
    }
}

impl Reply<pb::SyncRulesResponse> for SyncResult {
    fn reply(response: pb::SyncRulesResponse) -> Result<SyncResult, ApiError> {
        Ok(SyncResult {
            created: response
                .created
                .into_iter()
                .map(RuleVersion::from)
                .collect(),
            ended: response.ended,
        })
    }
}

impl From<With<String, RuleAtQuery>> for pb::GetRuleRequest {
    fn from(With(code, query): With<String, RuleAtQuery>) -> pb::GetRuleRequest {
        pb::GetRuleRequest {
            code,
            at: to_timestamp_opt(query.at),
        }
    }
}

impl From<With<String, PutRuleBody>> for pb::PutRuleRequest {
    fn from(With(code, body): With<String, PutRuleBody>) -> pb::PutRuleRequest {
        body.into_proto(code)
    }
}

impl TryFrom<With<String, PageQuery>> for pb::ListRuleVersionsRequest {
    type Error = ApiError;

    fn try_from(
        With(code, query): With<String, PageQuery>,
    ) -> Result<pb::ListRuleVersionsRequest, ApiError> {
        Ok(pb::ListRuleVersionsRequest {
            code,
            page_size: page_size(query.page_size)?,
            page_token: query.page_token.unwrap_or_default(),
        })
    }
}

forward! {
    /// The current version of every rule in effect now. Scope `rules:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/rules",
        tag = "rules",
        operation_id = "list_rules",
        params(PageQuery),
        responses((status = 200, description = "One page of rules.", body = Envelope<Page<RuleVersion>>))
    )]
    fn list_rules(query: PageQuery) -> Page<RuleVersion> = rules.list_rules;
}

forward! {
    /// Upsert many rules atomically; `replace` also ends every code absent from the list. Scope `rules:write`.
    #[utoipa::path(
        put,
        path = "/api/v1/rules",
        tag = "rules",
        operation_id = "sync_rules",
        request_body = SyncRulesBody,
        responses((status = 200, description = "The versions created and the codes ended.", body = Envelope<SyncResult>))
    )]
    fn sync_rules(body: SyncRulesBody) -> SyncResult = rules.sync_rules;
}

forward! {
    /// The version of a rule in effect now, or at `at`. Scope `rules:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/rules/{code}",
        tag = "rules",
        operation_id = "get_rule",
        params(("code" = String, Path, pattern = "^[a-z0-9_-]{1,40}$", description = "The rule's code."), RuleAtQuery),
        responses((status = 200, description = "The rule version.", body = Envelope<RuleVersion>))
    )]
    fn get_rule(path: String, query: RuleAtQuery) -> RuleVersion = rules.get_rule;
}

forward! {
    /// Create the next version of a rule. Scope `rules:write`. Answers 200 (PUT never answers 201 here).
    #[utoipa::path(
        put,
        path = "/api/v1/rules/{code}",
        tag = "rules",
        operation_id = "put_rule",
        params(("code" = String, Path, pattern = "^[a-z0-9_-]{1,40}$", description = "The rule's code, `[a-z0-9_-]{1,40}`.")),
        request_body = PutRuleBody,
        responses((status = 200, description = "The version created.", body = Envelope<RuleVersion>))
    )]
    fn put_rule(path: String, body: PutRuleBody) -> RuleVersion = rules.put_rule;
}

forward! {
    /// Every version of a rule, newest first. Scope `rules:read`.
    #[utoipa::path(
        get,
        path = "/api/v1/rules/{code}/versions",
        tag = "rules",
        operation_id = "list_rule_versions",
        params(("code" = String, Path, pattern = "^[a-z0-9_-]{1,40}$", description = "The rule's code."), PageQuery),
        responses((status = 200, description = "One page of versions.", body = Envelope<Page<RuleVersion>>))
    )]
    fn list_rule_versions(path: String, query: PageQuery) -> Page<RuleVersion> = rules.list_rule_versions;
}
