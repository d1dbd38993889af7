//! Placeholder until the rules branch merges: the conversion interface the ledger calls.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::error::{ErrorCode, ServiceError, ServiceResult};

/// The result of converting money to points with the rule version in effect.
pub struct Conversion {
    pub points: i64,
    pub rule_code: String,
    pub rule_version: i32,
    pub amount: Decimal,
    pub currency: String,
    pub points_ttl_days: Option<i32>,
}

pub async fn convert(
    _client: &tokio_postgres::Transaction<'_>,
    _amount: &str,
    _currency: &str,
    _rule_code: Option<&str>,
    _at: DateTime<Utc>,
) -> ServiceResult<Conversion> {
    Err(ServiceError::new(ErrorCode::NoApplicableRule, "no rule in effect"))
}
