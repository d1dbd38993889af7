//! SQL of holds (SPEC §12). Runs inside a tenant transaction; whoever changes a hold holds its uid's account lock
//! (the sweeper excepted: it only closes holds that already count as expired, which changes no sum).

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Type};

use std::error::Error;

use crate::domain::holds::{Hold, HoldStatus};
use crate::store::sql::params;

const HOLD_COLUMNS: &str = "hold_id, uid, points, captured_points, status, expires_at, reference, description, \
    metadata, idempotency_key, capture_entry_id, created_at, closed_at";

impl Hold {
    /// The hold of a row that has every hold column by name.
    pub fn from_row(row: &Row) -> Hold {
        from_columns!(row => Hold {
            hold_id, uid, points, captured_points, status, expires_at, reference, description, metadata,
            idempotency_key, capture_entry_id, created_at, closed_at
        })
    }
}

/// A hold status is stored as its name (`holds.status`, checked by the table's constraint).
impl<'a> FromSql<'a> for HoldStatus {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<HoldStatus, Box<dyn Error + Sync + Send>> {
        let name = <&str as FromSql>::from_sql(ty, raw)?;
        HoldStatus::from_name(name).ok_or_else(|| format!("unknown hold status {name:?}").into())
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// A hold to create.
#[derive(Debug, Clone)]
pub struct NewHold<'a> {
    pub uid: &'a str,
    pub points: i64,
    pub expires_at: DateTime<Utc>,
    pub reference: Option<&'a str>,
    pub description: Option<&'a str>,
    pub metadata: &'a serde_json::Value,
    pub idempotency_key: &'a str,
}

pub async fn insert_hold(
    client: &Transaction<'_>,
    hold: &NewHold<'_>,
) -> Result<Hold, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO holds (uid, points, expires_at, reference, description, metadata, idempotency_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {HOLD_COLUMNS}"
    );
    let row = client
        .query_typed_one(
            &sql,
            &params![
                &hold.uid,
                &hold.points,
                &hold.expires_at,
                &hold.reference,
                &hold.description,
                hold.metadata,
                &hold.idempotency_key,
            ],
        )
        .await?;
    Ok(Hold::from_row(&row))
}

/// A hold by id; `for_update` locks its row until the transaction ends.
pub async fn get_hold(
    client: &Transaction<'_>,
    hold_id: i64,
    for_update: bool,
) -> Result<Option<Hold>, tokio_postgres::Error> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {HOLD_COLUMNS} FROM holds WHERE hold_id = $1{lock}");
    Ok(client
        .query_typed_opt(&sql, &params![&hold_id])
        .await?
        .as_ref()
        .map(Hold::from_row))
}

/// The uids of the given holds (unknown ids are left out). A hold's uid never changes, so no lock is needed.
pub async fn uids_of(
    client: &Transaction<'_>,
    hold_ids: &[i64],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let sql = "SELECT DISTINCT uid FROM holds WHERE hold_id = ANY($1)";
    Ok(client
        .query_typed(sql, &params![&hold_ids])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Points reserved by a uid's holds that are active and unexpired at `now`.
pub async fn held_points(
    client: &Transaction<'_>,
    uid: &str,
    now: DateTime<Utc>,
) -> Result<i64, tokio_postgres::Error> {
    let sql = "SELECT coalesce(sum(points), 0)::bigint FROM holds \
             WHERE uid = $1 AND status = 'active' AND expires_at > $2";
    Ok(client
        .query_typed_one(sql, &params![&uid, &now])
        .await?
        .get(0))
}

/// Closes an active hold as captured (with the spend entry and the points taken) or voided.
pub async fn close_hold(
    client: &Transaction<'_>,
    hold_id: i64,
    status: HoldStatus,
    captured: Option<(i64, i64)>,
    now: DateTime<Utc>,
) -> Result<Hold, tokio_postgres::Error> {
    let (capture_entry_id, captured_points) = captured.unzip();
    let sql = format!(
        "UPDATE holds SET status = $2, capture_entry_id = $3::bigint, captured_points = coalesce($4::bigint, 0), \
             closed_at = $5 WHERE hold_id = $1 AND status = 'active' RETURNING {HOLD_COLUMNS}"
    );
    let row = client
        .query_typed_one(
            &sql,
            &params![
                &hold_id,
                &status.as_str(),
                &capture_entry_id,
                &captured_points,
                &now,
            ],
        )
        .await?;
    Ok(Hold::from_row(&row))
}

/// One page of a uid's holds, newest first, after `(created_at, hold_id)`.
pub async fn list_holds(
    client: &Transaction<'_>,
    uid: &str,
    before: Option<(DateTime<Utc>, i64)>,
    limit: i64,
) -> Result<Vec<Hold>, tokio_postgres::Error> {
    let (before_at, before_id) = before.unzip();
    let sql = format!(
        "SELECT {HOLD_COLUMNS} FROM holds WHERE uid = $1 \
             AND ($2::timestamptz IS NULL OR (created_at, hold_id) < ($2, $3)) \
             ORDER BY created_at DESC, hold_id DESC LIMIT $4"
    );
    let rows = client
        .query_typed(&sql, &params![&uid, &before_at, &before_id, &limit])
        .await?;
    Ok(rows.iter().map(Hold::from_row).collect())
}

/// Closes up to `limit` holds that expired by now (status `expired`, closed when they expired), skipping rows
/// another transaction holds: safe with several instances sweeping at once. Returns (hold id, points) of each.
pub async fn close_expired_holds(
    client: &Transaction<'_>,
    limit: i64,
) -> Result<Vec<(i64, i64)>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "UPDATE holds SET status = 'expired', closed_at = expires_at WHERE hold_id IN \
             (SELECT hold_id FROM holds WHERE status = 'active' AND expires_at <= now() \
              ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING hold_id, points",
            &params![&limit],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}
