//! Domain types, parsed once at the edge ("parse, don't validate"): a value of these types is always valid.

pub mod api_key;
pub mod holds;
pub mod money;
pub mod points;
pub mod rules;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{ServiceError, ServiceResult};

/// What a key may do (SPEC §4), named once in the contract crate.
pub use points_api::Scope;

/// Parses one scope name.
pub fn parse_scope(value: &str) -> ServiceResult<Scope> {
    Scope::from_name(value).ok_or_else(|| ServiceError::invalid(format!("unknown scope {value:?}")))
}

/// Parses a requested scope list: non-empty, known, de-duplicated and sorted.
pub fn parse_scopes(values: &[String]) -> ServiceResult<Vec<Scope>> {
    if values.is_empty() {
        return Err(ServiceError::invalid("scopes must not be empty"));
    }
    if values.len() > 16 {
        return Err(ServiceError::invalid("at most 16 scopes"));
    }
    let mut scopes = values
        .iter()
        .map(|value| parse_scope(value))
        .collect::<ServiceResult<Vec<_>>>()?;
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// A merchant's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MerchantStatus {
    Active,
    Suspended,
}

impl MerchantStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            MerchantStatus::Active => "active",
            MerchantStatus::Suspended => "suspended",
        }
    }

    pub fn parse(value: &str) -> ServiceResult<MerchantStatus> {
        match value {
            "active" => Ok(MerchantStatus::Active),
            "suspended" => Ok(MerchantStatus::Suspended),
            other => Err(ServiceError::invalid(format!(
                "status must be active or suspended, not {other:?}"
            ))),
        }
    }
}

/// A merchant slug: `[a-z0-9-]{3,40}`, starting and ending with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn parse(value: &str) -> ServiceResult<Slug> {
        let valid_chars = value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let valid_ends = !value.starts_with('-') && !value.ends_with('-');
        if !(3..=40).contains(&value.len()) || !valid_chars || !valid_ends {
            return Err(ServiceError::invalid(
                "slug must be 3 to 40 characters of a-z, 0-9 and '-', not starting or ending with '-'",
            ));
        }
        Ok(Slug(value.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A bounded, trimmed, non-empty display name without control characters.
pub fn parse_name(field: &str, value: &str, length_max: usize) -> ServiceResult<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > length_max {
        return Err(ServiceError::invalid(format!(
            "{field} must be 1 to {length_max} characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ServiceError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// The most digits a record id (entry, audit record) is written with: ids stay far below 10^18.
pub const RECORD_ID_DIGITS_MAX: usize = 18;

/// Parses a record id as the API writes it: a positive decimal without sign or leading zeros (`^[1-9][0-9]{0,17}$`),
/// so that one record has one spelling and the OpenAPI pattern states exactly what is accepted.
pub fn parse_record_id(value: &str) -> Option<i64> {
    let canonical = !value.is_empty()
        && value.len() <= RECORD_ID_DIGITS_MAX
        && !value.starts_with('0')
        && value.bytes().all(|byte| byte.is_ascii_digit());
    canonical.then(|| value.parse::<i64>().ok()).flatten()
}

/// Parses an id that must be a UUID; a malformed one is simply not found.
pub fn parse_uuid(field: &str, value: &str) -> ServiceResult<uuid::Uuid> {
    uuid::Uuid::parse_str(value)
        .map_err(|_| ServiceError::invalid(format!("{field} must be a UUID")))
}

/// A merchant.
#[derive(Debug, Clone)]
pub struct Merchant {
    pub merchant_id: Uuid,
    pub slug: String,
    pub name: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_unknown_ones_are_refused() {
        for scope in std::iter::once(Scope::Admin).chain(Scope::MERCHANT) {
            assert_eq!(parse_scope(scope.as_str()), Ok(scope));
        }
        assert!(parse_scope("points:*").is_err());
        assert!(parse_scopes(&[]).is_err());
    }

    #[test]
    fn slugs_are_bounded() {
        for bad in ["ab", "-abc", "abc-", "ABC", "a b c", &"a".repeat(41)] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
        assert!(Slug::parse("shop-1").is_ok());
    }
}
