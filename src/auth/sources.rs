//! What one client address may cost us when its calls are refused (SPEC §14).
//!
//! * **Failed authentication is limited per address**: each failure takes a token from the address's bucket
//!   ([`FAILURES_PER_SECOND`], bursts of [`FAILURE_BURST`]). Once it is empty, the address's calls may no longer make
//!   the authenticator look a key up in the database: a key already in the cache still works, any other is refused
//!   with `RATE_LIMITED` at once. (Repeats of one unknown key cost nothing anyway: the authenticator remembers unknown
//!   key hashes for a while.)
//! * **Refusals are recorded within a budget**: the first [`RECORDED_PER_MINUTE`] refused calls of an address in a
//!   minute get their own audit record; the rest are only counted, and every minute each address's count becomes one
//!   platform audit record (`system/RefusedCallsSummary`, the count in `points`). So a flood adds at most
//!   `RECORDED_PER_MINUTE + 1` rows per address per minute, however fast it is.
//!
//! The address is the TCP peer's; for calls the REST gateway makes on a client's behalf it is the client's
//! address, which the gateway sends as `x-points-client-addr` and which is believed only from a loopback peer
//! (the in-process gateway, or one beside the server).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Failed authentications an address may cause per second, and at once.
pub const FAILURES_PER_SECOND: u32 = 20;
pub const FAILURE_BURST: u32 = 40;
/// Refused calls of one address recorded one by one per minute; the rest are summarised.
pub const RECORDED_PER_MINUTE: u32 = 10;
/// How a client address travels from the gateway.
pub use points_api::headers::CLIENT_ADDR as CLIENT_ADDR_HEADER;
/// Bound on the addresses tracked; at the bound the oldest information is dropped (a fresh minute).
const SOURCES_MAX: usize = 100_000;

/// Per-address refusal budget of the current minute.
#[derive(Debug, Clone, Copy)]
struct Budget {
    minute_started: Instant,
    recorded: u32,
    summarised: u64,
}

/// The per-address state.
pub struct Sources {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    blocked_until: Mutex<HashMap<IpAddr, Instant>>,
    budgets: Mutex<HashMap<IpAddr, Budget>>,
    clock: DefaultClock,
}

impl Default for Sources {
    fn default() -> Self {
        Sources::new()
    }
}

/// Whether a refused call gets its own audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    /// Within the address's budget: record it.
    Record,
    /// Over it: counted into the address's summary.
    Summarised,
}

impl Sources {
    pub fn new() -> Sources {
        let quota =
            Quota::per_second(NonZeroU32::new(FAILURES_PER_SECOND).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(FAILURE_BURST).unwrap_or(NonZeroU32::MIN));
        Sources {
            failures: RateLimiter::dashmap(quota),
            blocked_until: Mutex::default(),
            budgets: Mutex::default(),
            clock: DefaultClock::default(),
        }
    }

    /// How long `address` may not cause key lookups any more; None when it may.
    pub fn blocked_for(&self, address: IpAddr) -> Option<Duration> {
        let blocked = self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
        let until = *blocked.get(&address)?;
        until.checked_duration_since(Instant::now())
    }

    /// Notes a failed authentication of `address`; past its limit, the address is blocked for the bucket's wait.
    pub fn failed(&self, address: IpAddr) {
        if let Err(not_until) = self.failures.check_key(&address) {
            let wait = not_until.wait_time_from(self.clock.now());
            let mut blocked = self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
            if blocked.len() >= SOURCES_MAX {
                blocked.clear();
            }
            blocked.insert(address, Instant::now() + wait);
            metrics::counter!("auth_failures_limited_total").increment(1);
        }
    }

    /// Takes one refusal of `address` from its recording budget.
    pub fn refusal(&self, address: IpAddr) -> Recording {
        let now = Instant::now();
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        if budgets.len() >= SOURCES_MAX && !budgets.contains_key(&address) {
            // Too many addresses at once: keep the counts (they are summarised), forget the least useful state.
            budgets.retain(|_, budget| budget.summarised > 0);
        }
        let budget = budgets.entry(address).or_insert(Budget {
            minute_started: now,
            recorded: 0,
            summarised: 0,
        });
        if now.duration_since(budget.minute_started) >= Duration::from_secs(60)
            && budget.summarised == 0
        {
            budget.minute_started = now;
            budget.recorded = 0;
        }
        if budget.recorded < RECORDED_PER_MINUTE {
            budget.recorded += 1;
            Recording::Record
        } else {
            budget.summarised += 1;
            metrics::counter!("refused_calls_summarised_total").increment(1);
            Recording::Summarised
        }
    }

    /// Counts `count` refused calls of `address` straight into its summary (refusals a gateway could only count).
    pub fn add_summarised(&self, address: IpAddr, count: u64) {
        if count == 0 {
            return;
        }
        let now = Instant::now();
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        let budget = budgets.entry(address).or_insert(Budget {
            minute_started: now,
            recorded: RECORDED_PER_MINUTE,
            summarised: 0,
        });
        budget.summarised = budget.summarised.saturating_add(count);
        metrics::counter!("refused_calls_summarised_total").increment(count);
    }

    /// The summaries due: every address with refusals counted over its budget, with the count; their minute starts
    /// anew. Called every minute by the summary writer.
    pub fn take_summaries(&self) -> Vec<(IpAddr, u64)> {
        let now = Instant::now();
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        budgets.retain(|address, budget| {
            if budget.summarised > 0 {
                due.push((*address, budget.summarised));
            }
            // Addresses quiet for a minute hold nothing worth keeping.
            now.duration_since(budget.minute_started) < Duration::from_secs(60)
                && budget.summarised == 0
        });
        let mut blocked = self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
        blocked.retain(|_, until| *until > now);
        self.failures.retain_recent();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_past_its_failure_burst_is_blocked_and_others_are_not() {
        let sources = Sources::new();
        let attacker: IpAddr = "10.0.0.1".parse().expect("ip");
        let bystander: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..FAILURE_BURST {
            sources.failed(attacker);
        }
        assert_eq!(sources.blocked_for(attacker), None, "the burst is allowed");
        sources.failed(attacker);
        assert!(sources.blocked_for(attacker).is_some());
        assert_eq!(sources.blocked_for(bystander), None);
    }

    #[test]
    fn refusals_past_the_budget_are_summarised_once() {
        let sources = Sources::new();
        let address: IpAddr = "10.0.0.3".parse().expect("ip");
        let recorded = (0..1000)
            .filter(|_| sources.refusal(address) == Recording::Record)
            .count();
        assert_eq!(recorded, RECORDED_PER_MINUTE as usize);
        assert_eq!(
            sources.take_summaries(),
            vec![(address, 1000 - u64::from(RECORDED_PER_MINUTE))]
        );
        assert_eq!(sources.take_summaries(), vec![]);
    }
}
