//! Metadata (SPEC §11: a JSON object of at most 4 KiB) travels over gRPC as a `google.protobuf.Struct`, so both
//! transports carry the same fields. These are the two conversions, JSON ⇄ `Struct`, written once for the server and
//! the gateway.
//!
//! A `Struct` number is a double. Integers within ±2^53 ([`EXACT_INTEGER_MAX`]) convert both ways exactly and come
//! back as JSON integers; a JSON integer beyond that has no exact double and is refused ([`MetadataError`]) rather
//! than silently rounded, as is a non-finite double sent over gRPC.

use std::collections::BTreeMap;

use prost_types::{ListValue, Struct, Value, value::Kind};
use serde_json::{Map, Number};

/// The largest integer magnitude a double holds exactly.
pub const EXACT_INTEGER_MAX: u64 = 1 << 53;

/// Why a metadata object cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataError {
    /// A JSON integer beyond ±2^53: a `Struct` would change it.
    InexactInteger(String),
    /// NaN or an infinity: JSON has no such number.
    NonFiniteNumber,
}

impl std::fmt::Display for MetadataError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetadataError::InexactInteger(number) => write!(
                formatter,
                "metadata number {number} is beyond ±2^53 and cannot be kept exactly; send it as a string"
            ),
            MetadataError::NonFiniteNumber => {
                formatter.write_str("metadata numbers must be finite")
            }
        }
    }
}

impl std::error::Error for MetadataError {}

/// A JSON object as a `Struct`; refuses an integer a double cannot hold exactly.
pub fn to_struct(object: &Map<String, serde_json::Value>) -> Result<Struct, MetadataError> {
    convert_object(object, Integers::Exact)
}

/// A JSON object as a `Struct`, an integer beyond ±2^53 rounded to the nearest double: for showing metadata that
/// was stored before it travelled as a `Struct`, where refusing would hide the whole object.
pub fn to_struct_rounding(object: &Map<String, serde_json::Value>) -> Struct {
    // Only inexact integers can fail, and rounding lets them through; serde_json numbers are always finite.
    convert_object(object, Integers::Rounded).unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Integers {
    Exact,
    Rounded,
}

fn convert_object(
    object: &Map<String, serde_json::Value>,
    integers: Integers,
) -> Result<Struct, MetadataError> {
    let fields = object
        .iter()
        .map(|(name, value)| Ok((name.clone(), to_value(value, integers)?)))
        .collect::<Result<BTreeMap<_, _>, MetadataError>>()?;
    Ok(Struct { fields })
}

fn to_value(value: &serde_json::Value, integers: Integers) -> Result<Value, MetadataError> {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(flag) => Kind::BoolValue(*flag),
        serde_json::Value::Number(number) => Kind::NumberValue(to_double(number, integers)?),
        serde_json::Value::String(text) => Kind::StringValue(text.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items
                .iter()
                .map(|item| to_value(item, integers))
                .collect::<Result<_, _>>()?,
        }),
        serde_json::Value::Object(object) => Kind::StructValue(convert_object(object, integers)?),
    };
    Ok(Value { kind: Some(kind) })
}

fn to_double(number: &Number, integers: Integers) -> Result<f64, MetadataError> {
    let exact = match (number.as_i64(), number.as_u64()) {
        (Some(integer), _) => integer.unsigned_abs() <= EXACT_INTEGER_MAX,
        (None, Some(_)) => false,
        (None, None) => true,
    };
    if !exact && integers == Integers::Exact {
        return Err(MetadataError::InexactInteger(number.to_string()));
    }
    number
        .as_f64()
        .filter(|double| double.is_finite())
        .ok_or(MetadataError::NonFiniteNumber)
}

/// A `Struct` as a JSON object.
pub fn from_struct(metadata: &Struct) -> Result<Map<String, serde_json::Value>, MetadataError> {
    metadata
        .fields
        .iter()
        .map(|(name, value)| Ok((name.clone(), from_value(value)?)))
        .collect()
}

fn from_value(value: &Value) -> Result<serde_json::Value, MetadataError> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(flag)) => serde_json::Value::Bool(*flag),
        Some(Kind::NumberValue(double)) => serde_json::Value::Number(from_double(*double)?),
        Some(Kind::StringValue(text)) => serde_json::Value::String(text.clone()),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(
            list.values
                .iter()
                .map(from_value)
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(object)) => serde_json::Value::Object(from_struct(object)?),
    })
}

/// An integral double within ±2^53 becomes a JSON integer (`12`, not `12.0`); any other finite double stays one.
fn from_double(double: f64) -> Result<Number, MetadataError> {
    if double.fract() == 0.0 && double.abs() <= EXACT_INTEGER_MAX as f64 {
        return Ok(Number::from(double as i64));
    }
    Number::from_f64(double).ok_or(MetadataError::NonFiniteNumber)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: serde_json::Value) -> Map<String, serde_json::Value> {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn json_round_trips_through_a_struct() {
        let original = object(json!({
            "store": "downtown", "items": [1, 2.5, "x", null, true], "nested": {"n": -9007199254740992i64},
            "zero": 0, "empty": {}
        }));
        let back = from_struct(&to_struct(&original).expect("converts")).expect("converts back");
        assert_eq!(back, original);
        assert_eq!(serde_json::to_string(&back["zero"]).expect("json"), "0");
    }

    #[test]
    fn integers_beyond_two_to_the_53_are_refused_not_rounded() {
        for value in [
            json!({"n": 9007199254740993u64}),
            json!({"n": -9007199254740993i64}),
            json!({"n": u64::MAX}),
        ] {
            assert!(matches!(
                to_struct(&object(value)),
                Err(MetadataError::InexactInteger(_))
            ));
        }
    }

    #[test]
    fn stored_integers_beyond_two_to_the_53_are_shown_rounded() {
        let shown = to_struct_rounding(&object(json!({"n": 9007199254740993u64, "s": "x"})));
        assert_eq!(
            from_struct(&shown).expect("converts back"),
            object(json!({"n": 9007199254740992u64, "s": "x"}))
        );
    }

    #[test]
    fn non_finite_doubles_are_refused() {
        let mut fields = BTreeMap::new();
        fields.insert(
            "n".to_owned(),
            Value {
                kind: Some(Kind::NumberValue(f64::NAN)),
            },
        );
        assert_eq!(
            from_struct(&Struct { fields }),
            Err(MetadataError::NonFiniteNumber)
        );
    }
}
