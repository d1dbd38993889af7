//! Page sizes and opaque page tokens (SPEC §8: `page_size` default 50, max 500).
//!
//! A token is the hex of `<list name>|<cursor>` followed by the hex of its keyed blake3 MAC (SPEC §14: sealed).
//! Opaque to clients, and checked on the way back in: a forged, altered or truncated token, or one from another
//! list, is a clear INVALID_ARGUMENT and never reaches a query — so no crafted cursor (a time before 4713 BC, say)
//! can turn into a database error. The MAC key is derived from `POINTS_KEY_HASH_SECRET`, so every instance of a
//! deployment accepts the tokens of the others; without it (unit tests) a random per-process key is used.

use std::sync::OnceLock;

use crate::error::{ServiceError, ServiceResult};

pub const PAGE_SIZE_DEFAULT: i64 = 50;
pub const PAGE_SIZE_MAX: i64 = 500;
const PAGE_TOKEN_LENGTH_MAX: usize = 1024;
/// Hex characters of the MAC at the end of a token.
const MAC_HEX_LENGTH: usize = 64;
/// Separates the MAC key from every other key derived from the same secret.
const TOKEN_KEY_CONTEXT: &str = "points.v1 page token MAC 2026-12";

static TOKEN_KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Sets the page-token MAC key from the deployment's secret; the first call wins (one key per process).
pub fn set_token_secret(secret: &str) {
    let _ = TOKEN_KEY.set(blake3::derive_key(TOKEN_KEY_CONTEXT, secret.as_bytes()));
}

fn token_key() -> &'static [u8; 32] {
    TOKEN_KEY.get_or_init(rand::random)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    // Hex is ASCII; checking that first also keeps the two-byte slices on character boundaries (a multi-byte
    // character in a client's token would otherwise panic the slicing).
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// A parsed page request: how many rows, and where the previous page stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: i64,
    pub cursor: Option<String>,
}

impl PageRequest {
    /// `list` names the listing, so tokens are not interchangeable between listings.
    pub fn parse(list: &str, page_size: i32, page_token: &str) -> ServiceResult<PageRequest> {
        let size = match i64::from(page_size) {
            0 => PAGE_SIZE_DEFAULT,
            size if (1..=PAGE_SIZE_MAX).contains(&size) => size,
            _ => {
                return Err(ServiceError::invalid(format!(
                    "page_size must be between 1 and {PAGE_SIZE_MAX}"
                )));
            }
        };
        if page_token.is_empty() {
            return Ok(PageRequest { size, cursor: None });
        }
        let invalid = || ServiceError::invalid("invalid page_token");
        if page_token.len() > PAGE_TOKEN_LENGTH_MAX
            || page_token.len() <= MAC_HEX_LENGTH
            || !page_token.is_ascii()
        {
            return Err(invalid());
        }
        let (payload_hex, mac_hex) = page_token.split_at(page_token.len() - MAC_HEX_LENGTH);
        let payload = unhex(payload_hex).ok_or_else(invalid)?;
        let mac: [u8; 32] = unhex(mac_hex)
            .and_then(|mac| mac.try_into().ok())
            .ok_or_else(invalid)?;
        // blake3::Hash compares in constant time.
        if blake3::keyed_hash(token_key(), &payload) != blake3::Hash::from_bytes(mac) {
            return Err(invalid());
        }
        let text = String::from_utf8(payload).map_err(|_| invalid())?;
        let cursor = text
            .strip_prefix(list)
            .and_then(|rest| rest.strip_prefix('|'))
            .ok_or_else(invalid)?;
        Ok(PageRequest {
            size,
            cursor: Some(cursor.to_owned()),
        })
    }

    /// Where the previous page of a list ordered by `(time, id)` stopped ([`time_id_cursor`]), with its id
    /// parsed by `parse_id`; None on the first page.
    pub fn time_id_position<T>(
        &self,
        parse_id: impl FnOnce(&str) -> ServiceResult<T>,
    ) -> ServiceResult<Option<(chrono::DateTime<chrono::Utc>, T)>> {
        let Some(cursor) = &self.cursor else {
            return Ok(None);
        };
        let (at, id) = parse_time_id_cursor(cursor)?;
        Ok(Some((at, parse_id(&id)?)))
    }

    /// Rows to fetch: one more than the page, to know whether a next page exists.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }
}

/// Makes the token for the page after `cursor`.
pub fn encode_token(list: &str, cursor: &str) -> String {
    let payload = format!("{list}|{cursor}");
    let mac = blake3::keyed_hash(token_key(), payload.as_bytes());
    hex(payload.as_bytes()) + &hex(mac.as_bytes())
}

/// Cuts `rows` (fetched with [`PageRequest::fetch_limit`]) to the page and returns the next token, if any.
pub fn finish_page<T>(
    list: &str,
    mut rows: Vec<T>,
    page: &PageRequest,
    cursor_of: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    let has_more = rows.len() as i64 > page.size;
    rows.truncate(page.size as usize);
    let token = match (has_more, rows.last()) {
        (true, Some(last)) => encode_token(list, &cursor_of(last)),
        _ => String::new(),
    };
    (rows, token)
}

/// A `(timestamp, id)` cursor as text, for lists ordered by creation time.
pub fn time_id_cursor(at: chrono::DateTime<chrono::Utc>, id: &str) -> String {
    format!("{}/{id}", at.timestamp_micros())
}

/// Parses a [`time_id_cursor`].
pub fn parse_time_id_cursor(
    cursor: &str,
) -> ServiceResult<(chrono::DateTime<chrono::Utc>, String)> {
    let invalid = || ServiceError::invalid("invalid page_token");
    let (micros, id) = cursor.split_once('/').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    // Cursors are times the service itself wrote; anything outside years 1..=9999 is not one (and PostgreSQL
    // could not compare it).
    let at = chrono::DateTime::from_timestamp_micros(micros)
        .filter(|at| (1..=9999).contains(&chrono::Datelike::year(at)))
        .ok_or_else(invalid)?;
    Ok((at, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_list() {
        let token = encode_token("merchants", "123/abc");
        let page = PageRequest::parse("merchants", 10, &token).expect("parse");
        assert_eq!(page.cursor.as_deref(), Some("123/abc"));
        assert!(PageRequest::parse("keys", 10, &token).is_err());
        assert!(PageRequest::parse("merchants", 10, "zz").is_err());
        assert!(PageRequest::parse("merchants", 10, "abc").is_err());
    }

    #[test]
    fn forged_altered_or_truncated_tokens_are_refused() {
        let token = encode_token("audit-logs", "1700000000000000/5");
        // An unsealed token of the old form, a forged cursor with a made-up MAC, a flipped bit, a cut MAC.
        let unsealed: String = "audit-logs|-99999999999999999/1"
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        let forged = format!("{unsealed}{}", "0".repeat(MAC_HEX_LENGTH));
        let mut flipped = token.clone().into_bytes();
        flipped[0] = if flipped[0] == b'6' { b'7' } else { b'6' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        for bad in [
            unsealed,
            forged,
            flipped,
            token[..token.len() - 2].to_owned(),
        ] {
            assert!(PageRequest::parse("audit-logs", 10, &bad).is_err(), "{bad}");
        }
        assert!(PageRequest::parse("audit-logs", 10, &token).is_ok());
    }

    #[test]
    fn cursor_times_outside_the_calendar_are_invalid() {
        assert!(parse_time_id_cursor("-8000000000000000000/1").is_err());
        assert!(parse_time_id_cursor("1700000000000000/1").is_ok());
    }

    #[test]
    fn tokens_with_multi_byte_characters_are_invalid_not_a_panic() {
        for token in ["é1", "aé", "ééé1", "0€0"] {
            assert!(
                PageRequest::parse("merchants", 10, token).is_err(),
                "{token}"
            );
        }
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(
            PageRequest::parse("x", 0, "").expect("default").size,
            PAGE_SIZE_DEFAULT
        );
        assert!(PageRequest::parse("x", 501, "").is_err());
        assert!(PageRequest::parse("x", -1, "").is_err());
    }
}
