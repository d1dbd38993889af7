//! `points.v1.RuleService`, and [`calculate_response`] behind `PointsService.Calculate`.
//!
//! Money leaves as decimal strings with exactly the currency's decimals (`1.00` EUR, `100` JPY).

use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use super::{Handlers, handle, parse_timestamp, timestamp, timestamp_opt};
use crate::{
    call::CallContext,
    domain::{
        money::{Currency, format_amount},
        rules::{RuleInput, RuleVersion},
    },
    error::ServiceResult,
    pb::{self, rule_service_server::RuleService},
    service::{Services, rules},
};

/// A money amount as the API shows it: with the currency's decimals.
fn money_text(amount: Decimal, currency: &str) -> String {
    // Stored currencies passed the same check on the way in; 0 padding is the harmless fallback.
    let decimals = Currency::parse(currency).map_or(0, |currency| currency.minor_units());
    format_amount(amount, decimals)
}

/// A stored version as the API shows it.
pub fn rule_version_message(row: RuleVersion) -> pb::RuleVersion {
    pb::RuleVersion {
        unit_amount: money_text(row.unit_amount, &row.currency),
        min_amount: row
            .min_amount
            .map(|amount| money_text(amount, &row.currency)),
        code: row.code,
        version: row.version,
        currency: row.currency,
        points_per_unit: row.points_per_unit,
        rounding: row.rounding,
        max_points: row.max_points,
        points_ttl_days: row.points_ttl_days,
        effective_from: Some(timestamp(row.effective_from)),
        effective_to: timestamp_opt(row.effective_to),
        created_at: Some(timestamp(row.created_at)),
    }
}

/// The unchecked input of one rule; `field_prefix` (e.g. `rules[3].`) names its timestamps in errors.
fn rule_input(field_prefix: &str, request: pb::PutRuleRequest) -> ServiceResult<RuleInput> {
    Ok(RuleInput {
        effective_from: parse_timestamp(
            &format!("{field_prefix}effective_from"),
            request.effective_from,
        )?,
        effective_to: parse_timestamp(
            &format!("{field_prefix}effective_to"),
            request.effective_to,
        )?,
        code: request.code,
        currency: request.currency,
        unit_amount: request.unit_amount,
        points_per_unit: request.points_per_unit,
        rounding: request.rounding,
        min_amount: request.min_amount,
        max_points: request.max_points,
        points_ttl_days: request.points_ttl_days,
    })
}

/// `PointsService.Calculate`: amount + currency (+ rule code, default `default`, + `at`, default now) → points and
/// the breakdown a merchant shows its customer. An amount below the rule's `min_amount` gives 0 points (the
/// response carries `min_amount`); no rule in effect or another currency → NO_APPLICABLE_RULE.
pub async fn calculate_response(
    services: &Services,
    call: &CallContext,
    request: pb::CalculateRequest,
) -> ServiceResult<pb::CalculateResponse> {
    let at = parse_timestamp("at", request.at)?;
    let conversion = rules::calculate(
        services,
        call,
        &request.amount,
        &request.currency,
        request.rule_code.as_deref(),
        at,
    )
    .await?;
    Ok(pb::CalculateResponse {
        points: conversion.points,
        amount: money_text(conversion.amount, &conversion.currency),
        unit_amount: money_text(conversion.unit_amount, &conversion.currency),
        min_amount: conversion
            .min_amount
            .map(|amount| money_text(amount, &conversion.currency)),
        rule_code: conversion.rule_code,
        rule_version: conversion.rule_version,
        currency: conversion.currency,
        points_per_unit: conversion.points_per_unit,
        rounding: conversion.rounding,
        raw_points: conversion.raw_points.to_string(),
        capped: conversion.capped,
        max_points: conversion.max_points,
        points_ttl_days: conversion.points_ttl_days,
    })
}

#[tonic::async_trait]
impl RuleService for Handlers {
    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        handle(request, |call, message| async move {
            let (rows, next_page_token) = rules::list(
                &self.services,
                &call,
                message.page_size,
                &message.page_token,
            )
            .await?;
            Ok(pb::ListRulesResponse {
                items: rows.into_iter().map(rule_version_message).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn get_rule(
        &self,
        request: Request<pb::GetRuleRequest>,
    ) -> Result<Response<pb::RuleVersion>, Status> {
        handle(request, |call, message| async move {
            let at = parse_timestamp("at", message.at)?;
            Ok(rule_version_message(
                rules::get(&self.services, &call, &message.code, at).await?,
            ))
        })
        .await
    }

    async fn put_rule(
        &self,
        request: Request<pb::PutRuleRequest>,
    ) -> Result<Response<pb::RuleVersion>, Status> {
        handle(request, |call, message| async move {
            let input = rule_input("", message)?;
            Ok(rule_version_message(
                rules::put(&self.services, &call, &input).await?,
            ))
        })
        .await
    }

    async fn list_rule_versions(
        &self,
        request: Request<pb::ListRuleVersionsRequest>,
    ) -> Result<Response<pb::ListRuleVersionsResponse>, Status> {
        handle(request, |call, message| async move {
            let (rows, next_page_token) = rules::list_versions(
                &self.services,
                &call,
                &message.code,
                message.page_size,
                &message.page_token,
            )
            .await?;
            Ok(pb::ListRuleVersionsResponse {
                items: rows.into_iter().map(rule_version_message).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn sync_rules(
        &self,
        request: Request<pb::SyncRulesRequest>,
    ) -> Result<Response<pb::SyncRulesResponse>, Status> {
        handle(request, |call, message| async move {
            // The size limit is checked before the inputs are converted, so an oversized batch costs nothing.
            if message.rules.len() > rules::SYNC_RULES_MAX {
                return Err(crate::error::ServiceError::invalid(format!(
                    "at most {} rules per sync, got {}",
                    rules::SYNC_RULES_MAX,
                    message.rules.len()
                )));
            }
            let inputs = message
                .rules
                .into_iter()
                .enumerate()
                .map(|(index, rule)| rule_input(&format!("rules[{index}]."), rule))
                .collect::<ServiceResult<Vec<_>>>()?;
            let outcome = rules::sync(&self.services, &call, &message.mode, &inputs).await?;
            Ok(pb::SyncRulesResponse {
                created: outcome
                    .created
                    .into_iter()
                    .map(rule_version_message)
                    .collect(),
                ended: outcome.ended,
            })
        })
        .await
    }
}
