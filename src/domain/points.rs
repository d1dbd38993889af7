//! Ledger input types, each parsed once at the edge.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::error::{ServiceError, ServiceResult};

/// The largest number of points one operation may move. Far above any real use, far below i64 overflow even
/// when many operations pile up on one account (the balance itself is also checked).
pub const POINTS_PER_OPERATION_MAX: i64 = 1_000_000_000_000_000;
/// SPEC §5: metadata is a JSON object of at most 4 KiB.
pub const METADATA_BYTES_MAX: usize = 4096;
const UID_LENGTH_MAX: usize = 128;
const IDEMPOTENCY_KEY_LENGTH_MAX: usize = 128;
const REFERENCE_LENGTH_MAX: usize = 128;
const DESCRIPTION_LENGTH_MAX: usize = 500;

/// The merchant's own end-user id: 1–128 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(String);

impl Uid {
    pub fn parse(value: &str) -> ServiceResult<Uid> {
        bounded_printable("uid", value, UID_LENGTH_MAX).map(Uid)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A positive number of points, at most [`POINTS_PER_OPERATION_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Points(i64);

impl Points {
    pub fn parse(field: &str, value: i64) -> ServiceResult<Points> {
        if value <= 0 {
            return Err(ServiceError::invalid(format!(
                "{field} must be greater than 0"
            )));
        }
        if value > POINTS_PER_OPERATION_MAX {
            return Err(ServiceError::invalid(format!(
                "{field} must be at most {POINTS_PER_OPERATION_MAX}"
            )));
        }
        Ok(Points(value))
    }
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A non-zero signed adjustment within the per-operation bound.
pub fn parse_delta(value: i64) -> ServiceResult<i64> {
    if value == 0 {
        return Err(ServiceError::invalid("delta must not be 0"));
    }
    Points::parse("delta", value.checked_abs().unwrap_or(i64::MAX))?;
    Ok(value)
}

/// 1–128 printable characters, unique per merchant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> ServiceResult<IdempotencyKey> {
        bounded_printable("idempotency_key", value, IDEMPOTENCY_KEY_LENGTH_MAX).map(IdempotencyKey)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Optional merchant reference (≤ 128) and description (≤ 500).
pub fn parse_reference(value: Option<&str>) -> ServiceResult<Option<String>> {
    value
        .map(|value| bounded_printable("reference", value, REFERENCE_LENGTH_MAX))
        .transpose()
}

pub fn parse_description(field: &str, value: Option<&str>) -> ServiceResult<Option<String>> {
    value
        .map(|value| bounded_text(field, value, DESCRIPTION_LENGTH_MAX))
        .transpose()
}

/// A JSON object of at most 4 KiB (as JSON text); absent means `{}`.
pub fn parse_metadata(
    value: Option<serde_json::Map<String, serde_json::Value>>,
) -> ServiceResult<serde_json::Value> {
    let object = serde_json::Value::Object(value.unwrap_or_default());
    let text = object.to_string();
    if text.len() > METADATA_BYTES_MAX {
        return Err(ServiceError::invalid(format!(
            "metadata must be at most {METADATA_BYTES_MAX} bytes"
        )));
    }
    // PostgreSQL jsonb refuses \u0000 in strings; refuse it here with a clear message instead of a 500.
    if text.contains("\\u0000") {
        return Err(ServiceError::invalid("metadata must not contain \\u0000"));
    }
    Ok(object)
}

/// The kind of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Earn,
    Spend,
    Adjust,
    Reverse,
    Expire,
}

impl EntryKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            EntryKind::Earn => "earn",
            EntryKind::Spend => "spend",
            EntryKind::Adjust => "adjust",
            EntryKind::Reverse => "reverse",
            EntryKind::Expire => "expire",
        }
    }

    pub const ALL: [EntryKind; 5] = [
        EntryKind::Earn,
        EntryKind::Spend,
        EntryKind::Adjust,
        EntryKind::Reverse,
        EntryKind::Expire,
    ];

    /// The kind named `name` exactly.
    pub fn from_name(name: &str) -> Option<EntryKind> {
        EntryKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    pub fn parse(value: &str) -> ServiceResult<EntryKind> {
        EntryKind::from_name(value).ok_or_else(|| {
            ServiceError::invalid("kind must be one of earn, spend, adjust, reverse, expire")
        })
    }
}

/// `value` when it is 1..=`length_max` characters without control characters (NUL included: PostgreSQL text
/// cannot hold it).
pub fn bounded_printable(field: &str, value: &str, length_max: usize) -> ServiceResult<String> {
    let length = value.chars().count();
    if length == 0 || length > length_max {
        return Err(ServiceError::invalid(format!(
            "{field} must be 1 to {length_max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(format!(
            "{field} must be printable characters"
        )));
    }
    Ok(value.to_owned())
}

fn bounded_text(field: &str, value: &str, length_max: usize) -> ServiceResult<String> {
    if value.chars().count() > length_max {
        return Err(ServiceError::invalid(format!(
            "{field} must be at most {length_max} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
        || value.contains('\0')
    {
        return Err(ServiceError::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value.to_owned())
}

/// A ledger entry (SPEC §11).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub entry_id: i64,
    pub uid: String,
    pub kind: EntryKind,
    pub delta: i64,
    pub balance_after: i64,
    pub idempotency_key: Option<String>,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub metadata: serde_json::Value,
    pub rule_code: Option<String>,
    pub rule_version: Option<i32>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub reverses_entry_id: Option<i64>,
    pub lot_id: Option<i64>,
    /// For the spend entry of a capture: its hold.
    pub hold_id: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ledger_inputs_are_refused_with_the_field_named() {
        for (result, field) in [
            (Uid::parse("").map(drop), "uid"),
            (Uid::parse(&"u".repeat(129)).map(drop), "uid"),
            (Uid::parse("a\u{7}b").map(drop), "uid"),
            (Points::parse("points", 0).map(drop), "points"),
            (Points::parse("points", -5).map(drop), "points"),
            (Points::parse("points", i64::MAX).map(drop), "points"),
            (parse_delta(0).map(drop), "delta"),
            (parse_delta(i64::MIN).map(drop), "delta"),
            (IdempotencyKey::parse("").map(drop), "idempotency_key"),
            (
                parse_metadata(Some(object(serde_json::json!({"a": "x".repeat(5000)})))).map(drop),
                "metadata",
            ),
            (
                parse_metadata(Some(object(serde_json::json!({"a": "nul \u{0} here"})))).map(drop),
                "metadata",
            ),
        ] {
            let error = result.expect_err(field);
            assert!(error.message.contains(field), "{error:?}");
        }
        assert_eq!(Uid::parse("user 42").expect("uid").as_str(), "user 42");
        assert_eq!(parse_metadata(None).expect("empty"), serde_json::json!({}));
    }

    fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().expect("an object")
    }
}
