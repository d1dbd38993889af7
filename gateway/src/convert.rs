//! Small proto ⇄ JSON conversions shared by the resource modules: timestamps, `metadata`, page tokens.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

/// A proto timestamp as a UTC time; `None` when absent or out of chrono's range.
pub fn from_timestamp(timestamp: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let timestamp = timestamp?;
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    DateTime::from_timestamp(timestamp.seconds, nanos)
}

/// A UTC time as a proto timestamp.
pub fn to_timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// An optional UTC time as an optional proto timestamp.
pub fn to_timestamp_opt(time: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    time.map(to_timestamp)
}

/// A request's `metadata` object, converted to the proto `Struct` while the body is parsed, so a number a `Struct`
/// cannot hold exactly (an integer beyond ±2^53) is a 400 naming the field, like any other bad body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata(pub prost_types::Struct);

impl<'de> serde::Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Metadata, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        points_api::metadata::to_struct(&object)
            .map(Metadata)
            .map_err(serde::de::Error::custom)
    }
}

/// The REST `metadata` object of an entry's proto `Struct` (`{}` when absent).
///
/// The server stores only JSON objects whose numbers are finite, so a failure means a server bug: it is logged and
/// shown as `{}` rather than failing a read of an otherwise good entry.
pub fn metadata_object(
    metadata: Option<&prost_types::Struct>,
) -> serde_json::Map<String, serde_json::Value> {
    match metadata.map(points_api::metadata::from_struct) {
        None => serde_json::Map::new(),
        Some(Ok(object)) => object,
        Some(Err(error)) => {
            tracing::warn!(%error, "entry metadata from the points service is not a JSON object");
            serde_json::Map::new()
        }
    }
}

/// The REST `next_page_token`: `None` (null) on the last page, where the proto has an empty string.
pub fn next_page_token(token: String) -> Option<String> {
    if token.is_empty() { None } else { Some(token) }
}

/// Deserializes an optional RFC 3339 time from a query string.
///
/// A `+` in a query string decodes to a space, so `2025-01-01T00:00:00+01:00` sent unencoded arrives as
/// `2025-01-01T00:00:00 01:00`; the space is put back before parsing so the obvious URL works.
pub fn deserialize_query_time<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: Deserializer<'de>,
{
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let parsed = DateTime::parse_from_rfc3339(&text).or_else(|error| {
        if text.contains(' ') {
            DateTime::parse_from_rfc3339(&text.replace(' ', "+"))
        } else {
            Err(error)
        }
    });
    parsed
        .map(|time| Some(time.with_timezone(&Utc)))
        .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let time = DateTime::parse_from_rfc3339("2025-03-04T05:06:07.123456789Z")
            .expect("valid")
            .to_utc();
        assert_eq!(from_timestamp(Some(to_timestamp(time))), Some(time));
        assert_eq!(from_timestamp(None), None);
        assert_eq!(
            from_timestamp(Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1
            })),
            None
        );
    }

    #[test]
    fn metadata_is_an_object_both_ways() {
        let object = serde_json::json!({"store": "north", "n": 12});
        let Metadata(proto) = serde_json::from_value(object.clone()).expect("an object");
        assert_eq!(
            serde_json::Value::Object(metadata_object(Some(&proto))),
            object
        );
        assert!(metadata_object(None).is_empty());
        assert!(serde_json::from_value::<Metadata>(serde_json::json!([1])).is_err());
        let inexact =
            serde_json::from_value::<Metadata>(serde_json::json!({"n": 9007199254740993u64}));
        assert!(inexact.expect_err("refused").to_string().contains("2^53"));
    }
}
