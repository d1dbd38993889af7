//! Page sizes and opaque page tokens (SPEC §8: `page_size` default 50, max 500).
//!
//! A token is the hex of `<list name>|<cursor>`: opaque to clients, checked on the way back in so a token from one
//! list cannot be replayed against another, and a garbled one is a clear INVALID_ARGUMENT.

use crate::error::{ServiceError, ServiceResult};

pub const PAGE_SIZE_DEFAULT: i64 = 50;
pub const PAGE_SIZE_MAX: i64 = 500;
const PAGE_TOKEN_LENGTH_MAX: usize = 1024;

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
        // Hex is ASCII; checking that first also keeps the two-byte slices below on character boundaries (a
        // multi-byte character in a client's token would otherwise panic the slicing).
        if page_token.len() > PAGE_TOKEN_LENGTH_MAX
            || !page_token.len().is_multiple_of(2)
            || !page_token.is_ascii()
        {
            return Err(invalid());
        }
        let bytes = (0..page_token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&page_token[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let cursor = text
            .strip_prefix(list)
            .and_then(|rest| rest.strip_prefix('|'))
            .ok_or_else(invalid)?;
        Ok(PageRequest {
            size,
            cursor: Some(cursor.to_owned()),
        })
    }

    /// Rows to fetch: one more than the page, to know whether a next page exists.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }
}

/// Makes the token for the page after `cursor`.
pub fn encode_token(list: &str, cursor: &str) -> String {
    format!("{list}|{cursor}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    let at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
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
