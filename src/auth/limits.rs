//! Rate limits per API key and per merchant (SPEC §14): token buckets (GCRA, `governor`) kept in memory, per
//! instance. Each call of an authenticated key takes one token from its key's bucket and one from its merchant's
//! (an admin key acting without `x-merchant-id` has only its key's). An empty bucket refuses the call with
//! `RATE_LIMITED` and the time until the next token (`Retry-After` over REST, `google.rpc.RetryInfo` over gRPC).
//! Every answered call carries the IETF `RateLimit-Policy` / `RateLimit` fields of its key's bucket as response
//! metadata, which the gateway passes on as HTTP headers.
//!
//! The defaults (SPEC: generous enough for the load generator) are far above what one instance serves, so they only
//! stop a runaway client; with several instances each holds its own buckets, so a key's effective limit is the
//! per-instance limit times the number of instances behind the balancer.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::{StateInformationMiddleware, StateSnapshot};
use governor::{Quota, RateLimiter};
use uuid::Uuid;

use crate::call::AuthContext;
use crate::error::{ErrorCode, ServiceError};

/// Response metadata keys (IETF draft-ietf-httpapi-ratelimit-headers, and the seconds a limited client should wait,
/// which the gateway sends as `Retry-After`).
pub use points_api::headers::{
    RATE_LIMIT as RATE_LIMIT_HEADER, RATE_LIMIT_POLICY as RATE_LIMIT_POLICY_HEADER,
    RETRY_AFTER as RETRY_AFTER_HEADER,
};

/// One bucket's size: `per_second` tokens a second, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Limit {
    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

type Limiter = RateLimiter<
    Uuid,
    governor::state::keyed::DefaultKeyedStateStore<Uuid>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// The buckets of every key and merchant this instance has seen.
pub struct RateLimits {
    key: Limit,
    merchant: Limit,
    per_key: Limiter,
    per_merchant: Limiter,
    clock: DefaultClock,
}

/// What a caller may still do, for the `RateLimit` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    /// `"key";q=<burst>;w=1` — the policy of the key's bucket.
    pub policy: String,
    /// `"key";r=<remaining>;t=<seconds until full>`.
    pub state: String,
}

/// A refused call: the error and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub error: ServiceError,
    pub retry_after: Duration,
}

impl RateLimits {
    pub fn new(key: Limit, merchant: Limit) -> RateLimits {
        RateLimits {
            key,
            merchant,
            per_key: RateLimiter::dashmap(key.quota()).with_middleware(),
            per_merchant: RateLimiter::dashmap(merchant.quota()).with_middleware(),
            clock: DefaultClock::default(),
        }
    }

    /// Takes a token for the call from its key's bucket and its merchant's.
    pub fn check(&self, auth: &AuthContext) -> Result<Allowance, Limited> {
        let key_state = self
            .per_key
            .check_key(&auth.key_id)
            .map_err(|not_until| self.limited(auth, "API key", not_until))?;
        if let Some(merchant) = &auth.merchant {
            self.per_merchant
                .check_key(&merchant.merchant_id)
                .map_err(|not_until| self.limited(auth, "merchant", not_until))?;
        }
        Ok(self.allowance(&key_state))
    }

    fn limited(
        &self,
        auth: &AuthContext,
        what: &str,
        not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>,
    ) -> Limited {
        let wait = not_until.wait_time_from(self.clock.now());
        let (label, limit) = if what == "merchant" {
            ("merchant", self.merchant)
        } else {
            ("key", self.key)
        };
        let merchant = auth
            .owner()
            .map_or_else(|| "platform".to_owned(), |id| id.to_string());
        metrics::counter!("rate_limited_calls_total", "limit" => label, "merchant_id" => merchant)
            .increment(1);
        Limited {
            error: ServiceError::new(
                ErrorCode::RateLimited,
                format!(
                    "rate limit of this {what} exceeded ({} calls per second, bursts of {}); retry in {} ms",
                    limit.per_second,
                    limit.burst,
                    wait.as_millis().max(1)
                ),
            ),
            retry_after: wait,
        }
    }

    fn allowance(&self, state: &StateSnapshot) -> Allowance {
        let burst = self.key.burst.get();
        let remaining = state.remaining_burst_capacity();
        // Tokens come back at `per_second`; the bucket is full again after (burst - remaining) of them.
        let refill_seconds = u64::from(burst.saturating_sub(remaining))
            .div_ceil(u64::from(self.key.per_second.get()));
        Allowance {
            policy: format!("\"key\";q={burst};w=1"),
            state: format!("\"key\";r={remaining};t={refill_seconds}"),
        }
    }

    /// Forgets the buckets that are full again (they hold no information), so the maps do not grow with every key
    /// and merchant ever seen.
    pub fn shrink(&self) {
        self.per_key.retain_recent();
        self.per_merchant.retain_recent();
        self.per_key.shrink_to_fit();
        self.per_merchant.shrink_to_fit();
    }
}

/// `Retry-After` in whole seconds, rounded up (at least 1).
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Scope;

    fn limit(per_second: u32, burst: u32) -> Limit {
        Limit {
            per_second: NonZeroU32::new(per_second).expect("non-zero"),
            burst: NonZeroU32::new(burst).expect("non-zero"),
        }
    }

    fn caller(key_id: Uuid, merchant_id: Option<Uuid>) -> AuthContext {
        AuthContext {
            key_id,
            key_prefix: "lp_live_Abcd".to_owned(),
            scopes: vec![Scope::PointsRead],
            merchant: merchant_id.map(|merchant_id| super::super::MerchantContext {
                merchant_id,
                schema: crate::tenancy::TenantSchema::for_merchant(merchant_id),
            }),
        }
    }

    #[test]
    fn a_key_past_its_burst_is_limited_and_another_key_is_not() {
        let limits = RateLimits::new(limit(1, 3), limit(1000, 1000));
        let merchant = Uuid::new_v4();
        let (first, second) = (
            caller(Uuid::new_v4(), Some(merchant)),
            caller(Uuid::new_v4(), Some(merchant)),
        );
        let allowances: Vec<Allowance> = (0..3)
            .map(|_| limits.check(&first).expect("within the burst"))
            .collect();
        assert_eq!(allowances[0].policy, "\"key\";q=3;w=1");
        assert_eq!(allowances[2].state, "\"key\";r=0;t=3");
        let limited = limits.check(&first).expect_err("past the burst");
        assert_eq!(limited.error.code, ErrorCode::RateLimited);
        assert!(limited.retry_after <= Duration::from_secs(1));
        assert_eq!(retry_after_seconds(limited.retry_after), 1);
        assert!(limits.check(&second).is_ok());
    }

    #[test]
    fn a_merchant_past_its_limit_limits_all_its_keys() {
        let limits = RateLimits::new(limit(1000, 1000), limit(1, 2));
        let merchant = Uuid::new_v4();
        assert!(
            limits
                .check(&caller(Uuid::new_v4(), Some(merchant)))
                .is_ok()
        );
        assert!(
            limits
                .check(&caller(Uuid::new_v4(), Some(merchant)))
                .is_ok()
        );
        let limited = limits
            .check(&caller(Uuid::new_v4(), Some(merchant)))
            .expect_err("merchant bucket empty");
        assert!(limited.error.message.contains("merchant"));
        // Another merchant, and a platform call without one, are not affected.
        assert!(
            limits
                .check(&caller(Uuid::new_v4(), Some(Uuid::new_v4())))
                .is_ok()
        );
        assert!(limits.check(&caller(Uuid::new_v4(), None)).is_ok());
    }
}
