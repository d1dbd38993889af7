//! Holds (SPEC §12): points reserved for a later capture or void.

use chrono::{DateTime, Duration, Utc};

use crate::error::{ServiceError, ServiceResult};

/// How long a hold lasts when the request names no `expires_at`.
pub const HOLD_TTL_DEFAULT_MINUTES: i64 = 15;
/// The latest a hold may expire, from its creation.
pub const HOLD_TTL_MAX_DAYS: i64 = 30;

/// Where a hold stands. `Active` is the only state that reserves points and the only one a hold leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    Active,
    Captured,
    Voided,
    Expired,
}

impl HoldStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::Captured => "captured",
            HoldStatus::Voided => "voided",
            HoldStatus::Expired => "expired",
        }
    }

    pub const ALL: [HoldStatus; 4] = [
        HoldStatus::Active,
        HoldStatus::Captured,
        HoldStatus::Voided,
        HoldStatus::Expired,
    ];

    /// The status named `name` exactly.
    pub fn from_name(name: &str) -> Option<HoldStatus> {
        HoldStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
    }
}

/// A hold as stored (SPEC §12 shape).
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub hold_id: i64,
    pub uid: String,
    pub points: i64,
    pub captured_points: i64,
    pub status: HoldStatus,
    pub expires_at: DateTime<Utc>,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub metadata: serde_json::Value,
    pub idempotency_key: String,
    pub capture_entry_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl Hold {
    /// The hold as a reader at `now` sees it: an active hold past its expiry is expired already (closed when it
    /// expired), even before the sweeper writes so.
    pub fn as_of(mut self, now: DateTime<Utc>) -> Hold {
        if self.status == HoldStatus::Active && self.expires_at <= now {
            self.status = HoldStatus::Expired;
            self.closed_at = Some(self.expires_at);
        }
        self
    }
}

/// Parses a hold id: a positive integer written as the API writes it ([`super::parse_record_id`]).
pub fn parse_hold_id(value: &str) -> ServiceResult<i64> {
    super::parse_record_id(value)
        .ok_or_else(|| ServiceError::invalid("hold_id must be a positive integer"))
}

/// The expiry of a new hold created at `now`: the one asked for, after `now` and at most 30 days ahead, or 15
/// minutes from now.
pub fn hold_expiry(
    requested: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> ServiceResult<DateTime<Utc>> {
    let Some(at) = requested else {
        return Ok(now + Duration::minutes(HOLD_TTL_DEFAULT_MINUTES));
    };
    if at <= now {
        return Err(ServiceError::invalid("expires_at must be in the future"));
    }
    if at > now + Duration::days(HOLD_TTL_MAX_DAYS) {
        return Err(ServiceError::invalid(format!(
            "expires_at must be at most {HOLD_TTL_MAX_DAYS} days ahead"
        )));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_active_hold_past_its_expiry_reads_as_expired_at_its_expiry() {
        let now = Utc::now();
        let hold = Hold {
            hold_id: 1,
            uid: "u".into(),
            points: 5,
            captured_points: 0,
            status: HoldStatus::Active,
            expires_at: now - Duration::seconds(1),
            reference: None,
            description: None,
            metadata: serde_json::json!({}),
            idempotency_key: "k".into(),
            capture_entry_id: None,
            created_at: now - Duration::minutes(1),
            closed_at: None,
        };
        let read = hold.clone().as_of(now);
        assert_eq!(read.status, HoldStatus::Expired);
        assert_eq!(read.closed_at, Some(hold.expires_at));
        let earlier = hold.clone().as_of(now - Duration::minutes(1));
        assert_eq!(earlier.status, HoldStatus::Active);
    }

    #[test]
    fn hold_expiry_defaults_to_15_minutes_and_is_bounded_by_30_days() {
        let now = Utc::now();
        assert_eq!(
            hold_expiry(None, now).expect("default"),
            now + Duration::minutes(15)
        );
        assert!(hold_expiry(Some(now), now).is_err());
        assert!(hold_expiry(Some(now + Duration::days(31)), now).is_err());
        let inside = now + Duration::days(30);
        assert_eq!(hold_expiry(Some(inside), now).expect("30 days"), inside);
        for bad in ["0", "-1", "x", "", "07", "+7"] {
            assert!(parse_hold_id(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_hold_id("42").expect("id"), 42);
    }
}
