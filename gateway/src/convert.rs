//! Small proto ⇄ JSON conversions shared by the resource modules: timestamps, `metadata_json`, page tokens.

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

/// The proto `metadata_json` string of a REST `metadata` object.
pub fn metadata_to_json(
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
) -> Option<String> {
    metadata.map(|object| serde_json::Value::Object(object).to_string())
}

/// The REST `metadata` object of a proto `metadata_json` string (`{}` when empty).
///
/// The server stores only JSON objects, so anything else means a server bug: it is logged and shown as `{}` rather
/// than failing a read of an otherwise good entry.
pub fn metadata_from_json(metadata_json: &str) -> serde_json::Map<String, serde_json::Value> {
    if metadata_json.trim().is_empty() {
        return serde_json::Map::new();
    }
    match serde_json::from_str::<serde_json::Value>(metadata_json) {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(_) | Err(_) => {
            tracing::warn!("entry metadata_json from the points service is not a JSON object");
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
        let mut object = serde_json::Map::new();
        object.insert("order".to_owned(), serde_json::json!(42));
        let text = metadata_to_json(Some(object.clone())).expect("some");
        assert_eq!(metadata_from_json(&text), object);
        assert!(metadata_from_json("").is_empty());
        assert!(metadata_from_json("[1]").is_empty());
    }
}
