//! SQL of the liability report: the roll-up of entries into quarter-hour movement totals, and the report's reads.
//! Every function runs inside a tenant transaction (search path = the merchant's schema).
//!
//! The roll-up remembers a transaction horizon, not an entry id, because entries commit out of id order; see
//! [`crate::service::reports`] for why that makes it exact.

use crate::store::sql::params;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// The movement columns of one entry, in the order of [`Movements`]: magnitudes (never negative) by kind and sign.
/// Shared by the roll-up and the live tail so both classify an entry the same way.
const MOVEMENT_SUMS: &str = "\
    coalesce(sum(delta) FILTER (WHERE kind = 'earn'), 0)::bigint, \
    coalesce(-sum(delta) FILTER (WHERE kind = 'spend'), 0)::bigint, \
    coalesce(-sum(delta) FILTER (WHERE kind = 'expire'), 0)::bigint, \
    coalesce(sum(delta) FILTER (WHERE kind = 'adjust' AND delta > 0), 0)::bigint, \
    coalesce(-sum(delta) FILTER (WHERE kind = 'adjust' AND delta < 0), 0)::bigint, \
    coalesce(sum(delta) FILTER (WHERE kind = 'reverse' AND delta > 0), 0)::bigint, \
    coalesce(-sum(delta) FILTER (WHERE kind = 'reverse' AND delta < 0), 0)::bigint";

/// Quarter hours (UTC) are the roll-up's grain; report boundaries must fall on them.
const PERIOD: &str = "date_bin('15 minutes', created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')";

/// What happened to points in some span of time. All figures are magnitudes (≥ 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Movements {
    pub issued: i64,
    pub redeemed: i64,
    pub expired: i64,
    pub adjusted_in: i64,
    pub adjusted_out: i64,
    pub reversed_in: i64,
    pub reversed_out: i64,
}

impl Movements {
    /// The change of the outstanding total.
    pub fn net(&self) -> i64 {
        self.issued - self.redeemed - self.expired + self.adjusted_in - self.adjusted_out
            + self.reversed_in
            - self.reversed_out
    }

    /// Both added together.
    pub fn plus(&self, other: &Movements) -> Movements {
        Movements {
            issued: self.issued + other.issued,
            redeemed: self.redeemed + other.redeemed,
            expired: self.expired + other.expired,
            adjusted_in: self.adjusted_in + other.adjusted_in,
            adjusted_out: self.adjusted_out + other.adjusted_out,
            reversed_in: self.reversed_in + other.reversed_in,
            reversed_out: self.reversed_out + other.reversed_out,
        }
    }

    fn from_row(row: &tokio_postgres::Row, first: usize) -> Movements {
        Movements {
            issued: row.get(first),
            redeemed: row.get(first + 1),
            expired: row.get(first + 2),
            adjusted_in: row.get(first + 3),
            adjusted_out: row.get(first + 4),
            reversed_in: row.get(first + 5),
            reversed_out: row.get(first + 6),
        }
    }
}

/// Locks the roll-up position; None when another roller holds it (it is doing the work).
pub async fn try_lock_rollup(client: &Transaction<'_>) -> Result<bool, tokio_postgres::Error> {
    let sql = "SELECT 1 FROM liability_rollup_state FOR UPDATE SKIP LOCKED";
    Ok(client.query_typed_opt(sql, &params![]).await?.is_some())
}

/// Adds the entries of every transaction that finished since the last roll-up to the quarter-hour totals and
/// moves the horizon, in one statement — one snapshot — so the horizon and the entries read agree. The caller
/// holds the position's lock ([`try_lock_rollup`]), taken in an earlier statement, so this statement's snapshot
/// sees the latest position. Returns the number of entries rolled up.
pub async fn roll_up(client: &Transaction<'_>) -> Result<i64, tokio_postgres::Error> {
    let sql = format!(
        "WITH bounds AS ( \
                 SELECT horizon AS since, pg_snapshot_xmin(pg_current_snapshot()) AS until \
                 FROM liability_rollup_state), \
             moved AS ( \
                 SELECT {PERIOD} AS period_start, {MOVEMENT_SUMS}, sum(delta)::bigint AS net, count(*) AS entries \
                 FROM entries, bounds WHERE xid >= bounds.since AND xid < bounds.until GROUP BY 1), \
             added AS ( \
                 INSERT INTO liability_periods AS p (period_start, issued, redeemed, expired, adjusted_in, \
                     adjusted_out, reversed_in, reversed_out, net, entries) \
                 SELECT * FROM moved \
                 ON CONFLICT (period_start) DO UPDATE SET issued = p.issued + excluded.issued, \
                     redeemed = p.redeemed + excluded.redeemed, expired = p.expired + excluded.expired, \
                     adjusted_in = p.adjusted_in + excluded.adjusted_in, \
                     adjusted_out = p.adjusted_out + excluded.adjusted_out, \
                     reversed_in = p.reversed_in + excluded.reversed_in, \
                     reversed_out = p.reversed_out + excluded.reversed_out, \
                     net = p.net + excluded.net, entries = p.entries + excluded.entries) \
             UPDATE liability_rollup_state SET horizon = greatest(horizon, (SELECT until FROM bounds)), \
                 rolled_net = rolled_net + coalesce((SELECT sum(net) FROM moved), 0), \
                 rolled_entries = rolled_entries + coalesce((SELECT sum(entries) FROM moved), 0), \
                 rolled_at = now() \
             RETURNING coalesce((SELECT sum(entries) FROM moved), 0)::bigint"
    );
    Ok(client.query_typed_one(&sql, &params![]).await?.get(0))
}

/// The report's bucket boundaries: the starts of every bucket covering `[from, to)`, in the time zone, with
/// `from` rounded down and `to` rounded up to bucket boundaries; the last element is the end of the last bucket.
/// Errors with SQLSTATE 22023 for an unknown time zone.
pub async fn bucket_boundaries(
    client: &impl GenericClient,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: &str,
    tz: &str,
) -> Result<Vec<DateTime<Utc>>, tokio_postgres::Error> {
    let sql = "WITH step AS (SELECT ('1 ' || $3::text)::interval AS length), \
             bounds AS ( \
                 SELECT date_trunc($3, $1::timestamptz, $4) AS low, \
                        CASE WHEN date_trunc($3, $2::timestamptz, $4) = $2::timestamptz THEN $2::timestamptz \
                             ELSE (date_trunc($3, $2::timestamptz, $4) AT TIME ZONE $4 + step.length) AT TIME ZONE $4 \
                        END AS high \
                 FROM step) \
             SELECT local_start AT TIME ZONE $4 \
             FROM bounds, step, generate_series(low AT TIME ZONE $4, high AT TIME ZONE $4, step.length) AS local_start \
             ORDER BY 1";
    Ok(client
        .query_typed(sql, &params![&from, &to, &bucket, &tz])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The roll-up's horizon: entries of transactions at or above it are the live tail.
///
/// Reports put it into their SQL as a literal rather than a parameter: with a parameter (or a subquery) the planner
/// must guess that a third of all entries lie above it and scans the whole table, while with the value it sees
/// from the statistics that the tail is a sliver and uses the `xid` index — 1 ms instead of 70 on a million entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon(u64);

/// Reads the horizon (in the report's snapshot, so it agrees with the totals read next).
pub async fn horizon(client: &Transaction<'_>) -> Result<Horizon, tokio_postgres::Error> {
    let sql = "SELECT horizon::text FROM liability_rollup_state";
    let text: String = client.query_typed_one(sql, &params![]).await?.get(0);
    // xid8 prints as an unsigned decimal; anything else would be a corrupt row, read as "everything is tail".
    Ok(Horizon(text.parse().unwrap_or(0)))
}

/// Movements per bucket within `[from, to)` (both on quarter hours): the rolled-up quarter hours plus the live
/// tail of entries past the horizon. Buckets without movements are absent.
pub async fn movements_by_bucket(
    client: &Transaction<'_>,
    horizon: Horizon,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: &str,
    tz: &str,
) -> Result<Vec<(DateTime<Utc>, Movements)>, tokio_postgres::Error> {
    let horizon = horizon.0;
    let sql = format!(
        "WITH quarter_hours AS ( \
                 SELECT period_start, issued, redeemed, expired, adjusted_in, adjusted_out, reversed_in, reversed_out \
                 FROM liability_periods WHERE period_start >= $1 AND period_start < $2 \
                 UNION ALL \
                 SELECT {PERIOD}, {MOVEMENT_SUMS} FROM entries \
                 WHERE xid >= '{horizon}'::xid8 AND created_at >= $1 AND created_at < $2 \
                 GROUP BY 1) \
             SELECT date_trunc($3, period_start, $4), sum(issued)::bigint, sum(redeemed)::bigint, \
                 sum(expired)::bigint, sum(adjusted_in)::bigint, sum(adjusted_out)::bigint, \
                 sum(reversed_in)::bigint, sum(reversed_out)::bigint \
             FROM quarter_hours GROUP BY 1 ORDER BY 1"
    );
    Ok(client
        .query_typed(&sql, &params![&from, &to, &bucket, &tz])
        .await?
        .iter()
        .map(|row| (row.get(0), Movements::from_row(row, 1)))
        .collect())
}

/// Totals of one tenant at one instant (the transaction's snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Σ delta of every entry created before `from`.
    pub outstanding_before: i64,
    /// Σ delta of every entry.
    pub outstanding_now: i64,
    /// Σ of every account's stored balance.
    pub sum_of_balances: i64,
}

/// The outstanding total before `from` and now, and the sum of balances. Reads the roll-up's running total and
/// subtracts the quarter hours from `from` on, so the cost follows the report's range, not the ledger's age.
pub async fn totals(
    client: &Transaction<'_>,
    horizon: Horizon,
    from: DateTime<Utc>,
) -> Result<Totals, tokio_postgres::Error> {
    let horizon = horizon.0;
    let sql = format!(
        "WITH tail AS ( \
                 SELECT coalesce(sum(delta), 0)::bigint AS net, \
                        coalesce(sum(delta) FILTER (WHERE created_at < $1), 0)::bigint AS net_before \
                 FROM entries WHERE xid >= '{horizon}'::xid8) \
             SELECT s.rolled_net - coalesce((SELECT sum(net) FROM liability_periods WHERE period_start >= $1), 0)::bigint \
                        + tail.net_before, \
                    s.rolled_net + tail.net, \
                    (SELECT coalesce(sum(balance), 0) FROM accounts)::bigint \
             FROM liability_rollup_state s, tail"
    );
    let row = client.query_typed_one(&sql, &params![&from]).await?;
    Ok(Totals {
        outstanding_before: row.get(0),
        outstanding_now: row.get(1),
        sum_of_balances: row.get(2),
    })
}

/// Every merchant whose schema is migrated and healthy, with its slug, by slug.
pub async fn healthy_merchant_slugs(
    client: &impl GenericClient,
    version_latest: i32,
) -> Result<Vec<(Uuid, String)>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT m.merchant_id, m.slug FROM public.merchants m \
             JOIN public.tenant_migrations t ON t.merchant_id = m.merchant_id \
             WHERE t.error IS NULL AND t.version >= $1 ORDER BY m.slug",
            &params![&version_latest],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}
