//! The points liability report (SPEC §13) and the roll-up that makes it cheap.
//!
//! # The roll-up: exact although entries commit out of order
//! A report must answer in milliseconds on millions of entries, so movements are kept as totals per quarter hour
//! (`liability_periods`). Keeping them up to date on every write would mean one totals row that all of a
//! merchant's writes update — a lock every write waits on. Instead a background roller adds entries to the totals
//! *after* they commit, and a report adds the short live tail the roller has not reached yet.
//!
//! The roller cannot remember "every entry up to id N": ids are taken when a transaction inserts, and
//! transactions commit in another order, so an entry with a smaller id can appear after a larger one was rolled
//! up. It remembers a **transaction horizon** instead. Every entry carries the id of the transaction that wrote
//! it (`entries.xid`, a column default). A snapshot's `xmin` is the oldest transaction still running when it was
//! taken: every transaction below it has finished, so its entries are all visible and no entry of it can appear
//! later. One roll-up statement, in one snapshot, adds the entries with `horizon <= xid < xmin` and moves the
//! horizon to `xmin`. So at any snapshot, the totals hold exactly the entries below the horizon, and the entries
//! visible at or above it are the tail — a report reads both in one repeatable-read snapshot, and their sum is
//! every entry of that snapshot, no more, no less. A long-running transaction anywhere in the cluster holds the
//! horizon back; the tail then grows, reports get slower, and they stay exact.
//!
//! One roller per tenant at a time (the position row's lock, taken with SKIP LOCKED, also across instances);
//! writers never touch that row. Instances roll up the tenants they wrote to every
//! [`ROLLUP_INTERVAL`](run_liability_roller) and every healthy tenant at start and every minute.
//!
//! # Buckets and time zones
//! Quarter hours, not days: a day in any time zone in use today starts on a UTC quarter hour, so per-quarter-hour
//! totals can be bucketed by day, week or month in the zone the report asks for. A zone whose boundaries do not
//! fall on quarter hours is refused. `from` is rounded down and `to` rounded up to bucket boundaries.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Services;
use crate::call::CallContext;
use crate::{
    error::{ServiceError, ServiceResult},
    store::{self, reports::Movements},
    tenancy::{TenantSchema, begin_tenant_snapshot, begin_tenant_transaction},
};

/// The longest time zone name accepted (IANA names are far shorter).
const TZ_LENGTH_MAX: usize = 64;
/// The most buckets one report returns.
pub const BUCKETS_MAX: usize = 1000;
/// The widest range accepted before computing boundaries (keeps the boundary query small).
const RANGE_DAYS_MAX: i64 = 366 * 100;
/// What the roll-up's grain demands of report boundaries.
const QUARTER_HOUR_SECONDS: i64 = 900;
/// The default range: the last 30 days, today included.
const DEFAULT_RANGE_DAYS: i64 = 29;

/// A report's bucket length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
    Month,
}

impl Bucket {
    /// Parses `day`, `week` or `month`; empty means `day`.
    pub fn parse(value: &str) -> ServiceResult<Bucket> {
        match value {
            "" | "day" => Ok(Bucket::Day),
            "week" => Ok(Bucket::Week),
            "month" => Ok(Bucket::Month),
            _ => Err(ServiceError::invalid(
                "bucket must be \"day\", \"week\" or \"month\"",
            )),
        }
    }

    /// The name, which is also PostgreSQL's `date_trunc` field and interval unit.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
        }
    }
}

/// A time zone name as PostgreSQL knows it (checked by PostgreSQL when the report runs).
fn parse_tz(value: &str) -> ServiceResult<&str> {
    if value.is_empty() {
        return Ok("UTC");
    }
    let well_formed = value.len() <= TZ_LENGTH_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'+' | b'-'));
    if well_formed {
        Ok(value)
    } else {
        Err(ServiceError::invalid(format!(
            "tz must be an IANA time zone name such as \"Europe/Paris\" (at most {TZ_LENGTH_MAX} characters)"
        )))
    }
}

/// A report request, as received.
#[derive(Debug, Default)]
pub struct LiabilityQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub bucket: String,
    pub tz: String,
}

/// One bucket of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketFigures {
    pub start: DateTime<Utc>,
    pub movements: Movements,
    /// The outstanding total at the end of the bucket.
    pub outstanding: i64,
}

/// The outstanding total by the ledger against the sum of balances, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciliation {
    pub closing_outstanding: i64,
    pub sum_of_balances: i64,
    pub as_of: DateTime<Utc>,
}

impl Reconciliation {
    pub fn ok(&self) -> bool {
        self.closing_outstanding == self.sum_of_balances
    }
}

/// One merchant's closing figure in the platform report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantClosing {
    pub merchant_id: Uuid,
    pub slug: String,
    pub closing_outstanding: i64,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiabilityReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket: Bucket,
    pub tz: String,
    pub opening_outstanding: i64,
    pub closing_outstanding: i64,
    pub buckets: Vec<BucketFigures>,
    pub reconciliation: Reconciliation,
    /// Filled for the platform report only.
    pub merchants: Vec<MerchantClosing>,
}

/// One tenant's raw figures over the report's buckets.
struct TenantFigures {
    opening: i64,
    movements: Vec<Movements>,
    outstanding_now: i64,
    sum_of_balances: i64,
}

/// The liability report of the caller's merchant, or of the whole platform for an admin without `x-merchant-id`.
pub async fn liability(
    services: &Services,
    call: &CallContext,
    query: LiabilityQuery,
) -> ServiceResult<LiabilityReport> {
    let bucket = Bucket::parse(&query.bucket)?;
    let tz = parse_tz(&query.tz)?.to_owned();
    let now = Utc::now();
    let to = query.to.unwrap_or(now);
    let from = query
        .from
        .unwrap_or_else(|| to - chrono::Duration::days(DEFAULT_RANGE_DAYS));
    if from >= to {
        return Err(ServiceError::invalid("from must be before to"));
    }
    if (to - from).num_days() > RANGE_DAYS_MAX {
        return Err(ServiceError::invalid(
            "the report range is too long: at most 100 years",
        ));
    }
    let boundaries = boundaries(services, from, to, bucket, &tz).await?;
    let merchants = match &call.auth.merchant {
        Some(merchant) => vec![(merchant.merchant_id, None)],
        None => platform_merchants(services).await?,
    };
    let bucket_count = boundaries.len() - 1;
    let mut total = TenantFigures {
        opening: 0,
        movements: vec![Movements::default(); bucket_count],
        outstanding_now: 0,
        sum_of_balances: 0,
    };
    let mut closings = Vec::new();
    for (merchant_id, slug) in merchants {
        let figures = tenant_figures(services, merchant_id, &boundaries, bucket, &tz).await?;
        let closing = figures.opening + figures.movements.iter().map(Movements::net).sum::<i64>();
        total.opening += figures.opening;
        for (sum, movements) in total.movements.iter_mut().zip(&figures.movements) {
            *sum = sum.plus(movements);
        }
        total.outstanding_now += figures.outstanding_now;
        total.sum_of_balances += figures.sum_of_balances;
        if let Some(slug) = slug {
            closings.push(MerchantClosing {
                merchant_id,
                slug,
                closing_outstanding: closing,
            });
        }
    }
    let mut outstanding = total.opening;
    let buckets = boundaries
        .iter()
        .zip(total.movements)
        .map(|(start, movements)| {
            outstanding += movements.net();
            BucketFigures {
                start: *start,
                movements,
                outstanding,
            }
        })
        .collect();
    Ok(LiabilityReport {
        from: boundaries[0],
        to: boundaries[bucket_count],
        bucket,
        tz,
        opening_outstanding: total.opening,
        closing_outstanding: outstanding,
        buckets,
        reconciliation: Reconciliation {
            closing_outstanding: total.outstanding_now,
            sum_of_balances: total.sum_of_balances,
            as_of: now,
        },
        merchants: closings,
    })
}

/// The bucket boundaries (starts, then the end of the last bucket), checked against the limits.
async fn boundaries(
    services: &Services,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
    tz: &str,
) -> ServiceResult<Vec<DateTime<Utc>>> {
    let client = services.pool.get().await?;
    let boundaries = store::reports::bucket_boundaries(&**client, from, to, bucket.as_str(), tz)
        .await
        .map_err(|error| {
            if error.code() == Some(&SqlState::INVALID_PARAMETER_VALUE) {
                ServiceError::invalid(format!("unknown time zone \"{tz}\""))
            } else {
                error.into()
            }
        })?;
    if boundaries.len() < 2 {
        return Err(ServiceError::invalid("the report range is empty"));
    }
    if boundaries.len() - 1 > BUCKETS_MAX {
        return Err(ServiceError::invalid(format!(
            "the report would have {} buckets; at most {BUCKETS_MAX}: use a longer bucket or a shorter range",
            boundaries.len() - 1
        )));
    }
    let on_quarter_hour = |at: &DateTime<Utc>| {
        at.timestamp() % QUARTER_HOUR_SECONDS == 0 && at.timestamp_subsec_nanos() == 0
    };
    if !boundaries.iter().all(on_quarter_hour) {
        return Err(ServiceError::invalid(format!(
            "the time zone \"{tz}\" does not start its days on a UTC quarter hour in this range"
        )));
    }
    Ok(boundaries)
}

/// Every healthy merchant with its slug, for the platform report.
async fn platform_merchants(services: &Services) -> ServiceResult<Vec<(Uuid, Option<String>)>> {
    let client = services.pool.get().await?;
    let version_latest = store::migrations::tenant_version_latest();
    Ok(
        store::reports::healthy_merchant_slugs(&**client, version_latest)
            .await?
            .into_iter()
            .map(|(merchant_id, slug)| (merchant_id, Some(slug)))
            .collect(),
    )
}

/// One tenant's figures, all read in one snapshot so they agree with each other.
async fn tenant_figures(
    services: &Services,
    merchant_id: Uuid,
    boundaries: &[DateTime<Utc>],
    bucket: Bucket,
    tz: &str,
) -> ServiceResult<TenantFigures> {
    let schema = TenantSchema::for_merchant(merchant_id);
    let from = boundaries[0];
    let to = boundaries[boundaries.len() - 1];
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_snapshot(&mut client, &schema).await?;
    let horizon = store::reports::horizon(&transaction).await?;
    let totals = store::reports::totals(&transaction, horizon, from).await?;
    let by_bucket =
        store::reports::movements_by_bucket(&transaction, horizon, from, to, bucket.as_str(), tz)
            .await?;
    transaction.commit().await?;
    let mut movements = vec![Movements::default(); boundaries.len() - 1];
    for (start, figures) in by_bucket {
        // Both sides come from the same date_trunc in the same zone, so a bucket start is always a boundary.
        let index = boundaries.partition_point(|boundary| *boundary < start);
        match movements.get_mut(index) {
            Some(slot) if boundaries[index] == start => *slot = figures,
            _ => {
                tracing::error!(%merchant_id, %start, "liability bucket outside the report's boundaries");
                return Err(ServiceError::internal(&std::io::Error::other(
                    "liability bucket outside the boundaries",
                )));
            }
        }
    }
    Ok(TenantFigures {
        opening: totals.outstanding_before,
        movements,
        outstanding_now: totals.outstanding_now,
        sum_of_balances: totals.sum_of_balances,
    })
}

/// Rolls up one tenant's finished entries; returns how many were added (0 when another roller holds it).
pub async fn roll_up(services: &Services, merchant_id: Uuid) -> ServiceResult<i64> {
    let schema = TenantSchema::for_merchant(merchant_id);
    let mut client = services.pool.get().await?;
    let transaction = begin_tenant_transaction(&mut client, &schema).await?;
    if !store::reports::try_lock_rollup(&transaction).await? {
        return Ok(0);
    }
    let rolled = store::reports::roll_up(&transaction).await?;
    transaction.commit().await?;
    Ok(rolled)
}

/// The tenants this instance wrote entries to since the roller last looked.
#[derive(Debug, Default)]
pub struct RollupMarks(Mutex<HashSet<Uuid>>);

impl RollupMarks {
    /// Notes that `merchant_id` has new entries.
    pub fn mark(&self, merchant_id: Uuid) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(merchant_id);
    }

    fn take(&self) -> Vec<Uuid> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
        .into_iter()
        .collect()
    }
}

/// How often the marked tenants are rolled up: the bound on the live tail a report reads.
pub const ROLLUP_INTERVAL: Duration = Duration::from_secs(1);
/// How often every healthy tenant is rolled up, whoever wrote to it (another instance that stopped, say).
const ROLLUP_ALL_EVERY: u32 = 60;

/// Rolls up the marked tenants every [`ROLLUP_INTERVAL`], and every tenant at start and every minute, until
/// `shutdown`.
pub async fn run_liability_roller(services: Arc<Services>, shutdown: CancellationToken) {
    let mut ticks = crate::periodic::Ticks::new(ROLLUP_INTERVAL, &shutdown);
    let mut tick: u32 = 0;
    while ticks.next().await {
        let merchants = if tick.is_multiple_of(ROLLUP_ALL_EVERY) {
            match services.healthy_merchants().await {
                Ok(all) => all,
                Err(error) => {
                    tracing::warn!(%error, "liability roll-up skipped");
                    continue;
                }
            }
        } else {
            services.rollup_marks.take()
        };
        tick = tick.wrapping_add(1);
        for merchant_id in merchants {
            if shutdown.is_cancelled() {
                return;
            }
            match roll_up(&services, merchant_id).await {
                Ok(0) => {}
                Ok(rolled) => tracing::debug!(%merchant_id, rolled, "liability rolled up"),
                Err(error) => {
                    // Marked again so the next tick retries; the report stays exact meanwhile (longer tail).
                    services.rollup_marks.mark(merchant_id);
                    tracing::warn!(%merchant_id, %error, "liability roll-up failed for tenant");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_zones_are_parsed_strictly() {
        assert_eq!(Bucket::parse("").expect("default"), Bucket::Day);
        assert_eq!(Bucket::parse("month").expect("month"), Bucket::Month);
        assert!(Bucket::parse("Day").is_err());
        assert!(Bucket::parse("year").is_err());
        assert_eq!(parse_tz("").expect("default"), "UTC");
        assert_eq!(
            parse_tz("America/Argentina/Buenos_Aires").expect("iana"),
            "America/Argentina/Buenos_Aires"
        );
        for bad in ["Europe/Paris'", "a b", "\u{0}", &"x".repeat(65), "Zürich"] {
            assert!(parse_tz(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_net_change_counts_credits_in_and_debits_out() {
        let movements = Movements {
            issued: 100,
            redeemed: 30,
            expired: 5,
            adjusted_in: 7,
            adjusted_out: 2,
            reversed_in: 30,
            reversed_out: 10,
        };
        assert_eq!(movements.net(), 100 - 30 - 5 + 7 - 2 + 30 - 10);
        assert_eq!(movements.plus(&movements).net(), 2 * movements.net());
    }
}
