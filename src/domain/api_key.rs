//! The API key format (SPEC §4): `lp_live_` or `lp_test_`, 30 random base62 characters (≈178 bits), and a
//! 6-character checksum, so a mistyped or truncated key is refused without a database query.
//! At rest a key is only its keyed blake3 hash, its display prefix and its last four characters.

use chrono::{DateTime, Utc};
use rand::Rng;
use uuid::Uuid;

use crate::{
    config::KeyEnvironment,
    error::{ServiceError, ServiceResult},
};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const LIVE_PREFIX: &str = "lp_live_";
const TEST_PREFIX: &str = "lp_test_";
const RANDOM_LENGTH: usize = 30;
const CHECKSUM_LENGTH: usize = 6;
/// Total length of a key.
pub const KEY_LENGTH: usize = LIVE_PREFIX.len() + RANDOM_LENGTH + CHECKSUM_LENGTH;
/// How many random characters the display prefix shows after `lp_live_`.
const DISPLAY_RANDOM_CHARS: usize = 4;

/// A well-formed key plaintext. Its `Debug` never shows the secret part.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyPlaintext(String);

impl std::fmt::Debug for ApiKeyPlaintext {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "ApiKeyPlaintext({}…)", self.display_prefix())
    }
}

impl ApiKeyPlaintext {
    /// A new random key.
    pub fn generate(environment: KeyEnvironment) -> ApiKeyPlaintext {
        let prefix = match environment {
            KeyEnvironment::Live => LIVE_PREFIX,
            KeyEnvironment::Test => TEST_PREFIX,
        };
        let mut rng = rand::rng();
        let random: String = (0..RANDOM_LENGTH)
            .map(|_| BASE62[rng.random_range(0..62)] as char)
            .collect();
        let checksum = checksum(prefix, &random);
        ApiKeyPlaintext(format!("{prefix}{random}{checksum}"))
    }

    /// Checks the format and checksum; no database involved.
    pub fn parse(value: &str) -> ServiceResult<ApiKeyPlaintext> {
        let malformed = || ServiceError::unauthenticated("malformed API key");
        if value.len() != KEY_LENGTH || !value.is_ascii() {
            return Err(malformed());
        }
        let prefix = &value[..LIVE_PREFIX.len()];
        if prefix != LIVE_PREFIX && prefix != TEST_PREFIX {
            return Err(malformed());
        }
        let random = &value[LIVE_PREFIX.len()..LIVE_PREFIX.len() + RANDOM_LENGTH];
        let given_checksum = &value[LIVE_PREFIX.len() + RANDOM_LENGTH..];
        if !random
            .bytes()
            .chain(given_checksum.bytes())
            .all(|b| b.is_ascii_alphanumeric())
        {
            return Err(malformed());
        }
        if checksum(prefix, random) != given_checksum {
            return Err(malformed());
        }
        Ok(ApiKeyPlaintext(value.to_owned()))
    }

    /// The plaintext, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// E.g. `lp_live_AbCd`: enough to recognise a key in a list, never enough to use it.
    pub fn display_prefix(&self) -> &str {
        &self.0[..LIVE_PREFIX.len() + DISPLAY_RANDOM_CHARS]
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
}

fn checksum(prefix: &str, random: &str) -> String {
    let digest = blake3::hash(format!("{prefix}{random}").as_bytes());
    let mut value = u64::from_le_bytes(digest.as_bytes()[..8].try_into().unwrap_or([0; 8]));
    (0..CHECKSUM_LENGTH)
        .map(|_| {
            let digit = BASE62[(value % 62) as usize] as char;
            value /= 62;
            digit
        })
        .collect()
}

/// Hashes keys with blake3 in keyed mode, the key derived from the configured secret: a database dump alone
/// does not let anyone check guesses.
#[derive(Clone)]
pub struct KeyHasher {
    key: [u8; 32],
}

impl KeyHasher {
    pub fn new(secret: &str) -> KeyHasher {
        KeyHasher {
            key: blake3::derive_key("points.v1 api key hash 2026-11", secret.as_bytes()),
        }
    }

    pub fn hash(&self, plaintext: &ApiKeyPlaintext) -> [u8; 32] {
        *blake3::keyed_hash(&self.key, plaintext.0.as_bytes()).as_bytes()
    }
}

/// An API key as the API shows it: no secret in it, only its display prefix and last 4 characters.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub key_id: Uuid,
    pub merchant_id: Option<Uuid>,
    pub name: String,
    pub prefix: String,
    pub last4: String,
    pub scopes: Vec<String>,
    pub status: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_a_changed_character_does_not() {
        for environment in [KeyEnvironment::Live, KeyEnvironment::Test] {
            let key = ApiKeyPlaintext::generate(environment);
            assert_eq!(ApiKeyPlaintext::parse(key.expose()), Ok(key.clone()));
            let mut bytes = key.expose().as_bytes().to_vec();
            bytes[12] = if bytes[12] == b'a' { b'b' } else { b'a' };
            let altered = String::from_utf8(bytes).expect("ascii");
            assert!(ApiKeyPlaintext::parse(&altered).is_err());
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        let key = ApiKeyPlaintext::generate(KeyEnvironment::Live);
        for bad in [
            "",
            "lp_live_",
            &key.expose()[1..],
            &format!("{}x", key.expose()),
            &key.expose().replace("lp_live_", "sk_live_"),
        ] {
            assert!(ApiKeyPlaintext::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let key = ApiKeyPlaintext::generate(KeyEnvironment::Live);
        assert!(!format!("{key:?}").contains(key.expose()));
        assert_eq!(key.display_prefix().len(), 12);
        assert_eq!(key.last4().len(), 4);
    }

    #[test]
    fn the_hash_depends_on_the_secret() {
        let key = ApiKeyPlaintext::generate(KeyEnvironment::Live);
        assert_ne!(
            KeyHasher::new("a".repeat(32).as_str()).hash(&key),
            KeyHasher::new("b".repeat(32).as_str()).hash(&key)
        );
    }
}
