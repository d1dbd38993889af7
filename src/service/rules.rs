//! Conversion rules (SPEC §6): versioned money → points rates, their history, batch sync, and the conversion the
//! ledger runs inside its own transaction.
//!
//! Versions are immutable: a change is a new version (1, 2, 3… per code), and the only update ever made to a stored
//! version is ending it, i.e. setting its `effective_to` (a `replace` sync does that; an end is never moved later).
//! The version in effect at a time `t` is the highest-numbered one with `effective_from <= t` and
//! (`effective_to` absent or `effective_to > t`): `effective_from` is inclusive, `effective_to` exclusive.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;

use super::Services;
use crate::call::CallContext;
use crate::{
    domain::{
        money::{Currency, Money, ZeroAmount},
        rules::{
            self as domain, Rounding, RuleCode, RuleInput, RuleTerms, RuleVersion, SyncMode,
            truncate_to_micros,
        },
    },
    error::{ErrorCode, ServiceError, ServiceResult},
    pagination::{PageRequest, finish_page},
    store, tenancy,
};

/// Most rules one batch sync may carry (SPEC §5's batch limit).
pub const SYNC_RULES_MAX: usize = 1_000;

/// The result of converting money to points with the rule version in effect.
///
/// `amount` has exactly the currency's decimals. An amount below `min_amount` converts to 0 points (not an error):
/// callers that must not write a zero-point entry check `points == 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub points: i64,
    pub rule_code: String,
    pub rule_version: i32,
    pub amount: Decimal,
    pub currency: String,
    pub unit_amount: Decimal,
    pub points_per_unit: i64,
    pub rounding: String,
    /// `amount / unit_amount × points_per_unit` before rounding; see [`domain::Calculation::raw_points`].
    pub raw_points: Decimal,
    pub capped: bool,
    pub max_points: Option<i64>,
    pub min_amount: Option<Decimal>,
    pub points_ttl_days: Option<i32>,
}

/// Converts `amount` in `currency` to points with the version of `rule_code` (default `default`) in effect at `at`.
///
/// Runs on the caller's tenant transaction (`client`), so the ledger's earn-by-amount sees the same rules its entry
/// commits with. Errors: malformed amount, currency or code, too many decimals for the currency, or a result above
/// `i64::MAX` → INVALID_ARGUMENT; no version in effect at `at`, or a version for another currency →
/// NO_APPLICABLE_RULE.
pub async fn convert(
    client: &impl tokio_postgres::GenericClient,
    amount: &str,
    currency: &str,
    rule_code: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<Conversion> {
    let currency = Currency::parse(currency)?;
    let money = Money::parse("amount", amount, &currency, ZeroAmount::Refused)?;
    let code = RuleCode::parse_or_default(rule_code)?;
    let at = truncate_to_micros(at);
    let row = store::rules::version_at(client, code.as_str(), at)
        .await?
        .ok_or_else(|| {
            ServiceError::new(
                ErrorCode::NoApplicableRule,
                format!(
                    "no version of rule {:?} is in effect at {} (create one with PUT /api/v1/rules/{})",
                    code.as_str(),
                    at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    code.as_str()
                ),
            )
        })?;
    if row.currency != currency.code() {
        return Err(ServiceError::new(
            ErrorCode::NoApplicableRule,
            format!(
                "rule {:?} version {} converts {}, not {}",
                row.code,
                row.version,
                row.currency,
                currency.code()
            ),
        ));
    }
    let terms = terms_of(&row)?;
    let calculation = domain::calculate(money.amount(), &terms)?;
    Ok(Conversion {
        points: calculation.points,
        rule_code: row.code,
        rule_version: row.version,
        amount: money.amount(),
        currency: row.currency,
        unit_amount: row.unit_amount,
        points_per_unit: row.points_per_unit,
        rounding: row.rounding,
        raw_points: calculation.raw_points,
        capped: calculation.capped,
        max_points: row.max_points,
        min_amount: row.min_amount,
        points_ttl_days: row.points_ttl_days,
    })
}

/// The terms of a stored version. The table's CHECKs make a failure here a corrupted row, hence INTERNAL.
fn terms_of(row: &RuleVersion) -> ServiceResult<RuleTerms> {
    let currency =
        Currency::parse(&row.currency).map_err(|error| ServiceError::internal(&error))?;
    let rounding =
        Rounding::parse(&row.rounding).map_err(|error| ServiceError::internal(&error))?;
    Ok(RuleTerms {
        currency,
        unit_amount: row.unit_amount,
        points_per_unit: row.points_per_unit,
        rounding,
        min_amount: row.min_amount,
        max_points: row.max_points,
        points_ttl_days: row.points_ttl_days,
    })
}

/// Real-time calculation (`Calculate`): [`convert`] in a read-only unit of work, at `at` (default now). The call's
/// audit notes get the amount, currency, rule and points.
pub async fn calculate(
    services: &Services,
    call: &CallContext,
    amount: &str,
    currency: &str,
    rule_code: Option<&str>,
    at: Option<DateTime<Utc>>,
) -> ServiceResult<Conversion> {
    let schema = &call.auth.merchant()?.schema;
    let mut client = services.pool.get().await?;
    let transaction = tenancy::begin_tenant_transaction(&mut client, schema).await?;
    let conversion = convert(
        &*transaction,
        amount,
        currency,
        rule_code,
        at.unwrap_or_else(Utc::now),
    )
    .await?;
    transaction.commit().await?;
    let mut notes = call.notes();
    notes.amount = Some(conversion.amount);
    notes.currency = Some(conversion.currency.clone());
    notes.rule_code = Some(conversion.rule_code.clone());
    notes.rule_version = Some(conversion.rule_version);
    notes.points = Some(conversion.points);
    Ok(conversion)
}

/// Creates the next version of `input.code` (`PutRule`), with its audit record in the same transaction.
pub async fn put(
    services: &Services,
    call: &CallContext,
    input: &RuleInput,
) -> ServiceResult<RuleVersion> {
    let schema = &call.auth.merchant()?.schema;
    let version = input.parse(Utc::now())?;
    let mut client = services.pool.get().await?;
    let transaction = tenancy::begin_tenant_transaction(&mut client, schema).await?;
    let row = store::rules::insert_versions(&*transaction, std::slice::from_ref(&version))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ServiceError::internal(&MissingInsertedVersion(version.code.as_str().to_owned()))
        })?;
    {
        let mut notes = call.notes();
        notes.rule_code = Some(row.code.clone());
        notes.rule_version = Some(row.version);
    }
    crate::audit::record_in_transaction(&transaction, call).await?;
    transaction.commit().await?;
    Ok(row)
}

/// An INSERT .. RETURNING that returned no row for a code it was given: a bug, reported as INTERNAL.
#[derive(Debug, thiserror::Error)]
#[error("inserting a version of rule {0:?} returned no row")]
struct MissingInsertedVersion(String);

/// The version of `code` in effect at `at` (default now); NOT_FOUND when there is none.
pub async fn get(
    services: &Services,
    call: &CallContext,
    code: &str,
    at: Option<DateTime<Utc>>,
) -> ServiceResult<RuleVersion> {
    let schema = &call.auth.merchant()?.schema;
    let code = RuleCode::parse(code)?;
    let at = truncate_to_micros(at.unwrap_or_else(Utc::now));
    let mut client = services.pool.get().await?;
    let transaction = tenancy::begin_tenant_transaction(&mut client, schema).await?;
    let row = store::rules::version_at(&*transaction, code.as_str(), at).await?;
    transaction.commit().await?;
    row.ok_or_else(|| {
        ServiceError::not_found(format!(
            "no version of rule {:?} is in effect at {}",
            code.as_str(),
            at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        ))
    })
}

/// The versions of `code`, newest first; NOT_FOUND for a code that never had one.
pub async fn list_versions(
    services: &Services,
    call: &CallContext,
    code: &str,
    page_size: i32,
    page_token: &str,
) -> ServiceResult<(Vec<RuleVersion>, String)> {
    let schema = &call.auth.merchant()?.schema;
    let code = RuleCode::parse(code)?;
    // The code is part of the list name, so a token of one code's history is refused for another's.
    let list = format!("rule-versions/{}", code.as_str());
    let page = PageRequest::parse(&list, page_size, page_token)?;
    let before = page
        .cursor
        .as_deref()
        .map(|cursor| {
            cursor
                .parse::<i32>()
                .map_err(|_| ServiceError::invalid("invalid page_token"))
        })
        .transpose()?;
    let mut client = services.pool.get().await?;
    let transaction = tenancy::begin_tenant_transaction(&mut client, schema).await?;
    let rows =
        store::rules::list_versions(&*transaction, code.as_str(), before, page.fetch_limit())
            .await?;
    if rows.is_empty()
        && before.is_none()
        && !store::rules::code_exists(&*transaction, code.as_str()).await?
    {
        return Err(ServiceError::not_found(format!(
            "rule {:?} not found",
            code.as_str()
        )));
    }
    transaction.commit().await?;
    Ok(finish_page(&list, rows, &page, |row| {
        row.version.to_string()
    }))
}

/// The version in effect now of every code that has one, by code.
pub async fn list(
    services: &Services,
    call: &CallContext,
    page_size: i32,
    page_token: &str,
) -> ServiceResult<(Vec<RuleVersion>, String)> {
    const LIST: &str = "rules";
    let schema = &call.auth.merchant()?.schema;
    let page = PageRequest::parse(LIST, page_size, page_token)?;
    let after = page
        .cursor
        .as_deref()
        .map(RuleCode::parse)
        .transpose()
        .map_err(|_| ServiceError::invalid("invalid page_token"))?;
    let mut client = services.pool.get().await?;
    let transaction = tenancy::begin_tenant_transaction(&mut client, schema).await?;
    let now = truncate_to_micros(Utc::now());
    let rows = store::rules::list_in_effect(
        &*transaction,
        now,
        after.as_ref().map(RuleCode::as_str),
        page.fetch_limit(),
    )
    .await?;
    transaction.commit().await?;
    Ok(finish_page(LIST, rows, &page, |row| row.code.clone()))
}

/// What a batch sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The versions created, in the order of the request.
    pub created: Vec<RuleVersion>,
    /// Codes ended by `replace`, sorted.
    pub ended: Vec<String>,
}

/// Creates a new version of every rule in `inputs` in one transaction (`SyncRules`); in `replace` mode also ends
/// every code absent from `inputs`. All rules are checked before anything is written, so one invalid rule changes
/// nothing. A `replace` with an empty list ends every code.
pub async fn sync(
    services: &Services,
    call: &CallContext,
    mode: &str,
    inputs: &[RuleInput],
) -> ServiceResult<SyncOutcome> {
    let schema = &call.auth.merchant()?.schema;
    let mode = SyncMode::parse(mode)?;
    if inputs.len() > SYNC_RULES_MAX {
        return Err(ServiceError::invalid(format!(
            "at most {SYNC_RULES_MAX} rules per sync, got {}",
            inputs.len()
        )));
    }
    let now = truncate_to_micros(Utc::now());
    let mut seen = HashSet::with_capacity(inputs.len());
    let mut versions = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        let version = input
            .parse(now)
            .map_err(|error| ServiceError::invalid(format!("rules[{index}]: {}", error.message)))?;
        if !seen.insert(version.code.clone()) {
            return Err(ServiceError::invalid(format!(
                "rules[{index}]: code {:?} appears more than once",
                version.code.as_str()
            )));
        }
        versions.push(version);
    }
    let mut client = services.pool.get().await?;
    let transaction = tenancy::begin_tenant_transaction(&mut client, schema).await?;
    let ended = match mode {
        SyncMode::Upsert => Vec::new(),
        SyncMode::Replace => {
            store::rules::lock_all_codes(&*transaction).await?;
            let keep: Vec<&str> = versions
                .iter()
                .map(|version| version.code.as_str())
                .collect();
            store::rules::end_codes_except(&*transaction, &keep, now).await?
        }
    };
    let created = if versions.is_empty() {
        Vec::new()
    } else {
        store::rules::insert_versions(&*transaction, &versions).await?
    };
    let created = in_request_order(&versions, created)?;
    crate::audit::record_in_transaction(&transaction, call).await?;
    transaction.commit().await?;
    Ok(SyncOutcome { created, ended })
}

/// Puts the inserted rows (returned in no particular order) back in the order of the request.
fn in_request_order(
    versions: &[domain::NewRuleVersion],
    rows: Vec<RuleVersion>,
) -> ServiceResult<Vec<RuleVersion>> {
    let mut by_code: HashMap<String, RuleVersion> = rows
        .into_iter()
        .map(|row| (row.code.clone(), row))
        .collect();
    versions
        .iter()
        .map(|version| {
            by_code.remove(version.code.as_str()).ok_or_else(|| {
                ServiceError::internal(&MissingInsertedVersion(version.code.as_str().to_owned()))
            })
        })
        .collect()
}
