//! SQL of the points ledger. Every function runs inside a tenant transaction (search path = the merchant's
//! schema), so table names are unqualified; the caller has locked the account row before anything that changes it.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use rust_decimal::Decimal;
use tokio_postgres::Row;

use std::error::Error;

use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::domain::points::{Entry, EntryKind};
use crate::store::sql::{Param, params};

const ENTRY_COLUMNS: &str = "entry_id, uid, kind, delta, balance_after, idempotency_key, reference, description, \
    metadata, rule_code, rule_version, amount, currency, reverses_entry_id, lot_id, hold_id, expires_at, created_at";

impl Entry {
    /// The entry of a row that has every entry column by name.
    pub fn from_row(row: &Row) -> Entry {
        from_columns!(row => Entry {
            entry_id, uid, kind, delta, balance_after, idempotency_key, reference, description,
            metadata, rule_code, rule_version, amount, currency, reverses_entry_id, lot_id,
            hold_id, expires_at, created_at
        })
    }
}

/// An entry to append.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub uid: &'a str,
    pub kind: EntryKind,
    pub delta: i64,
    pub balance_after: i64,
    pub idempotency_key: Option<&'a str>,
    pub reference: Option<&'a str>,
    pub description: Option<&'a str>,
    pub metadata: Option<&'a serde_json::Value>,
    pub rule_code: Option<&'a str>,
    pub rule_version: Option<i32>,
    pub amount: Option<Decimal>,
    pub currency: Option<&'a str>,
    pub reverses_entry_id: Option<i64>,
    pub lot_id: Option<i64>,
    pub hold_id: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl NewEntry<'static> {
    /// An entry of `kind` with every other field empty (the writer fills uid and balance).
    pub fn of(kind: EntryKind) -> NewEntry<'static> {
        NewEntry {
            uid: "",
            kind,
            delta: 0,
            balance_after: 0,
            idempotency_key: None,
            reference: None,
            description: None,
            metadata: None,
            rule_code: None,
            rule_version: None,
            amount: None,
            currency: None,
            reverses_entry_id: None,
            lot_id: None,
            hold_id: None,
            expires_at: None,
        }
    }
}

/// An entry kind is stored as its name (`entries.kind`, checked by the table's constraint).
impl<'a> FromSql<'a> for EntryKind {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<EntryKind, Box<dyn Error + Sync + Send>> {
        let name = <&str as FromSql>::from_sql(ty, raw)?;
        EntryKind::from_name(name).ok_or_else(|| format!("unknown entry kind {name:?}").into())
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

impl ToSql for EntryKind {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        self.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl Param for EntryKind {
    const TYPE: Type = Type::TEXT;
}

/// Creates the account if needed and locks its row until the transaction ends; returns the stored balance.
/// Every mutation of a uid starts here, which is what serializes concurrent requests on one uid.
pub async fn lock_account(
    client: &Transaction<'_>,
    uid: &str,
) -> Result<i64, tokio_postgres::Error> {
    let sql = "INSERT INTO accounts AS a (uid) VALUES ($1) ON CONFLICT (uid) DO UPDATE SET balance = a.balance RETURNING balance";
    Ok(client.query_typed_one(sql, &params![&uid]).await?.get(0))
}

/// Like [`lock_account`] but gives up (None) when another transaction holds the row: the sweeper's way to stay
/// out of the way of requests (a request expires its own lots anyway).
pub async fn try_lock_account(
    client: &Transaction<'_>,
    uid: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = client
        .query_typed_opt(
            "SELECT balance FROM accounts WHERE uid = $1 FOR UPDATE SKIP LOCKED",
            &params![&uid],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

pub async fn set_balance(
    client: &Transaction<'_>,
    uid: &str,
    balance: i64,
) -> Result<(), tokio_postgres::Error> {
    let sql = "UPDATE accounts SET balance = $2, updated_at = now() WHERE uid = $1";
    client.execute_typed(sql, &params![&uid, &balance]).await?;
    Ok(())
}

pub async fn insert_entry(
    client: &Transaction<'_>,
    entry: &NewEntry<'_>,
) -> Result<Entry, tokio_postgres::Error> {
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let sql = format!(
        "INSERT INTO entries (uid, kind, delta, balance_after, idempotency_key, reference, description, metadata, \
             rule_code, rule_version, amount, currency, reverses_entry_id, lot_id, expires_at, hold_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING {ENTRY_COLUMNS}"
    );
    let row = client
        .query_typed_one(
            &sql,
            &params![
                &entry.uid,
                &entry.kind,
                &entry.delta,
                &entry.balance_after,
                &entry.idempotency_key,
                &entry.reference,
                &entry.description,
                &entry.metadata.unwrap_or(&empty),
                &entry.rule_code,
                &entry.rule_version,
                &entry.amount,
                &entry.currency,
                &entry.reverses_entry_id,
                &entry.lot_id,
                &entry.expires_at,
                &entry.hold_id,
            ],
        )
        .await?;
    Ok(Entry::from_row(&row))
}

pub async fn get_entry(
    client: &Transaction<'_>,
    entry_id: i64,
) -> Result<Option<Entry>, tokio_postgres::Error> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE entry_id = $1");
    Ok(client
        .query_typed_opt(&sql, &params![&entry_id])
        .await?
        .as_ref()
        .map(Entry::from_row))
}

/// The reversal of an entry, if it has one.
pub async fn reversal_of(
    client: &Transaction<'_>,
    entry_id: i64,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = client
        .query_typed_opt(
            "SELECT entry_id FROM entries WHERE reverses_entry_id = $1",
            &params![&entry_id],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// Filters of a uid's entry list.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub kind: Option<EntryKind>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Continue after this `(created_at, entry_id)`, newest first.
    pub before: Option<(DateTime<Utc>, i64)>,
}

pub async fn list_entries(
    client: &Transaction<'_>,
    uid: &str,
    filter: &EntryFilter,
    limit: i64,
) -> Result<Vec<Entry>, tokio_postgres::Error> {
    let (before_at, before_id) = filter.before.unzip();
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM entries WHERE uid = $1 \
             AND ($2::text IS NULL OR kind = $2) \
             AND ($3::timestamptz IS NULL OR created_at >= $3) \
             AND ($4::timestamptz IS NULL OR created_at < $4) \
             AND ($5::timestamptz IS NULL OR (created_at, entry_id) < ($5, $6)) \
             ORDER BY created_at DESC, entry_id DESC LIMIT $7"
    );
    let rows = client
        .query_typed(
            &sql,
            &params![
                &uid,
                &filter.kind,
                &filter.from,
                &filter.to,
                &before_at,
                &before_id,
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(Entry::from_row).collect())
}

/// A lot: what remains of one credit.
#[derive(Debug, Clone, PartialEq)]
pub struct LotRow {
    pub lot_id: i64,
    pub entry_id: i64,
    pub points: i64,
    pub remaining: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

fn lot_from_row(row: &Row) -> LotRow {
    from_columns!(row => LotRow {
        lot_id, entry_id, points, remaining, expires_at
    })
}

pub async fn insert_lot(
    client: &Transaction<'_>,
    uid: &str,
    entry_id: i64,
    points: i64,
    expires_at: Option<DateTime<Utc>>,
) -> Result<i64, tokio_postgres::Error> {
    let sql = "INSERT INTO lots (uid, entry_id, points, remaining, expires_at) VALUES ($1, $2, $3, $3, $4) RETURNING lot_id";
    Ok(client
        .query_typed_one(sql, &params![&uid, &entry_id, &points, &expires_at])
        .await?
        .get(0))
}

/// The lot a credit entry created.
pub async fn lot_of_entry(
    client: &Transaction<'_>,
    entry_id: i64,
) -> Result<Option<LotRow>, tokio_postgres::Error> {
    let row = client
        .query_typed_opt("SELECT lot_id, entry_id, points, remaining, expires_at FROM lots WHERE entry_id = $1 FOR UPDATE", &params![&entry_id])
        .await?;
    Ok(row.as_ref().map(lot_from_row))
}

/// A uid's lots that have expired by `now` and still hold points, oldest expiry first.
pub async fn expired_lots(
    client: &Transaction<'_>,
    uid: &str,
    now: DateTime<Utc>,
) -> Result<Vec<LotRow>, tokio_postgres::Error> {
    let sql = "SELECT lot_id, entry_id, points, remaining, expires_at FROM lots \
         WHERE uid = $1 AND remaining > 0 AND expires_at <= $2 ORDER BY expires_at, lot_id FOR UPDATE";
    lots_of_uid(client, sql, uid, now).await
}

/// A uid's spendable lots in spending order: earliest expiry first, never-expiring last.
pub async fn spendable_lots(
    client: &Transaction<'_>,
    uid: &str,
    now: DateTime<Utc>,
) -> Result<Vec<LotRow>, tokio_postgres::Error> {
    let sql = "SELECT lot_id, entry_id, points, remaining, expires_at FROM lots \
         WHERE uid = $1 AND remaining > 0 AND (expires_at IS NULL OR expires_at > $2) \
         ORDER BY expires_at ASC NULLS LAST, lot_id FOR UPDATE";
    lots_of_uid(client, sql, uid, now).await
}

/// The lots `sql` selects for `$1` = uid and `$2` = now.
async fn lots_of_uid(
    client: &Transaction<'_>,
    sql: &str,
    uid: &str,
    now: DateTime<Utc>,
) -> Result<Vec<LotRow>, tokio_postgres::Error> {
    Ok(client
        .query_typed(sql, &params![&uid, &now])
        .await?
        .iter()
        .map(lot_from_row)
        .collect())
}

pub async fn set_lot_remaining(
    client: &Transaction<'_>,
    lot_id: i64,
    remaining: i64,
) -> Result<(), tokio_postgres::Error> {
    let sql = "UPDATE lots SET remaining = $2 WHERE lot_id = $1";
    client
        .execute_typed(sql, &params![&lot_id, &remaining])
        .await?;
    Ok(())
}

/// Records that debit `entry_id` took `points` from each lot.
pub async fn insert_consumptions(
    client: &Transaction<'_>,
    entry_id: i64,
    lot_ids: &[i64],
    points: &[i64],
) -> Result<(), tokio_postgres::Error> {
    let sql = "INSERT INTO lot_consumptions (entry_id, lot_id, points) SELECT $1, * FROM unnest($2::bigint[], $3::bigint[])";
    client
        .execute_typed(sql, &params![&entry_id, &lot_ids, &points])
        .await?;
    Ok(())
}

/// What a debit took, to give back on reversal: (lot, points).
pub async fn consumptions_of(
    client: &Transaction<'_>,
    entry_id: i64,
) -> Result<Vec<(i64, i64)>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT lot_id, points FROM lot_consumptions WHERE entry_id = $1 ORDER BY lot_id",
            &params![&entry_id],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Adds points back to a lot (a reversed debit).
pub async fn restore_lot(
    client: &Transaction<'_>,
    lot_id: i64,
    points: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute_typed(
            "UPDATE lots SET remaining = remaining + $2 WHERE lot_id = $1",
            &params![&lot_id, &points],
        )
        .await?;
    Ok(())
}

/// A stored idempotency record: the entry it wrote, the hold it concerned (hold operations), or both (a capture).
#[derive(Debug, Clone)]
pub struct IdempotencyRow {
    pub operation: String,
    pub request_digest: String,
    pub entry_id: Option<i64>,
    pub hold_id: Option<i64>,
}

pub async fn find_idempotency(
    client: &Transaction<'_>,
    key: &str,
) -> Result<Option<IdempotencyRow>, tokio_postgres::Error> {
    let sql = "SELECT operation, request_digest, entry_id, hold_id FROM idempotency_records WHERE idempotency_key = $1";
    Ok(client
        .query_typed_opt(sql, &params![&key])
        .await?
        .map(|row| IdempotencyRow {
            operation: row.get(0),
            request_digest: row.get(1),
            entry_id: row.get(2),
            hold_id: row.get(3),
        }))
}

/// The constraint a concurrent duplicate of an idempotency key violates.
pub const IDEMPOTENCY_CONSTRAINT: &str = "idempotency_records_pkey";

/// What an idempotency record points at: the entry written, the hold concerned, or both.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recorded {
    pub entry_id: Option<i64>,
    pub hold_id: Option<i64>,
}

pub async fn insert_idempotency(
    client: &Transaction<'_>,
    key: &str,
    operation: &str,
    request_digest: &str,
    recorded: Recorded,
) -> Result<(), tokio_postgres::Error> {
    let sql = "INSERT INTO idempotency_records (idempotency_key, operation, request_digest, entry_id, hold_id) VALUES ($1, $2, $3, $4, $5)";
    client
        .execute_typed(
            sql,
            &params![
                &key,
                &operation,
                &request_digest,
                &recorded.entry_id,
                &recorded.hold_id,
            ],
        )
        .await?;
    Ok(())
}

/// The balance as a reader sees it: stored balance minus points that expired but are not swept yet.
pub async fn current_balance(
    client: &Transaction<'_>,
    uid: &str,
) -> Result<i64, tokio_postgres::Error> {
    let sql = "SELECT coalesce((SELECT balance FROM accounts WHERE uid = $1), 0) \
             - coalesce((SELECT sum(remaining) FROM lots WHERE uid = $1 AND remaining > 0 AND expires_at <= now()), 0)::bigint";
    Ok(client.query_typed_one(sql, &params![&uid]).await?.get(0))
}

/// Points expiring in `(now, now + window]`, grouped by expiry time, soonest first.
pub async fn expiring(
    client: &Transaction<'_>,
    uid: &str,
    until: DateTime<Utc>,
) -> Result<Vec<(i64, DateTime<Utc>)>, tokio_postgres::Error> {
    let sql = "SELECT sum(remaining)::bigint, expires_at FROM lots WHERE uid = $1 AND remaining > 0 \
             AND expires_at > now() AND expires_at <= $2 GROUP BY expires_at ORDER BY expires_at LIMIT 100";
    Ok(client
        .query_typed(sql, &params![&uid, &until])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Uids that have expired lots with points left, for the sweeper.
pub async fn uids_with_expired_lots(
    client: &Transaction<'_>,
    limit: i64,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT DISTINCT uid FROM (SELECT uid FROM lots WHERE remaining > 0 AND expires_at <= now() \
             ORDER BY expires_at LIMIT $1) AS due", &params![&limit])
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// One account in the account list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummaryRow {
    pub uid: String,
    /// The balance a reader sees (expired but not yet swept points excluded).
    pub balance: i64,
    /// Points reserved by active, unexpired holds.
    pub held: i64,
    pub updated_at: DateTime<Utc>,
}

/// Where the previous page of the account list stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCursor {
    /// `order=uid`: the last uid.
    Uid(String),
    /// `order=balance_desc`: the last (stored balance, uid).
    Balance(i64, String),
}

/// One page of accounts whose uid lies in `[low, high)` in byte order (a uid prefix as a range; None = open),
/// by uid or by stored balance (largest first, ties by uid), after `cursor`. Each row comes with its stored
/// balance, the cursor of the balance order.
pub async fn list_accounts(
    client: &Transaction<'_>,
    low: Option<&str>,
    high: Option<&str>,
    by_balance: bool,
    cursor: Option<&AccountCursor>,
    limit: i64,
) -> Result<Vec<(AccountSummaryRow, i64)>, tokio_postgres::Error> {
    let (after_uid, after_balance) = match cursor {
        None => (None, None),
        Some(AccountCursor::Uid(uid)) => (Some(uid.as_str()), None),
        Some(AccountCursor::Balance(balance, uid)) => (Some(uid.as_str()), Some(*balance)),
    };
    // Both orders compare uids with COLLATE "C" (byte order), matching the index and the prefix range.
    let (page_condition, order) = if by_balance {
        (
            "($4::bigint IS NULL OR a.balance < $4 \
             OR (a.balance = $4 AND a.uid COLLATE \"C\" > $3::text COLLATE \"C\"))",
            "a.balance DESC, a.uid COLLATE \"C\"",
        )
    } else {
        (
            // $4 is always NULL in this order; naming it gives it a type.
            "$4::bigint IS NULL AND ($3::text IS NULL OR a.uid COLLATE \"C\" > $3::text COLLATE \"C\")",
            "a.uid COLLATE \"C\"",
        )
    };
    let sql = format!(
        "SELECT a.uid, a.balance - coalesce((SELECT sum(l.remaining) FROM lots l WHERE l.uid = a.uid \
             AND l.remaining > 0 AND l.expires_at <= now()), 0)::bigint AS balance, a.updated_at, a.balance AS stored, \
             coalesce((SELECT sum(h.points) FROM holds h WHERE h.uid = a.uid AND h.status = 'active' \
             AND h.expires_at > now()), 0)::bigint AS held \
         FROM accounts a \
         WHERE ($1::text IS NULL OR a.uid COLLATE \"C\" >= $1::text COLLATE \"C\") \
           AND ($2::text IS NULL OR a.uid COLLATE \"C\" < $2::text COLLATE \"C\") \
           AND {page_condition} \
         ORDER BY {order} LIMIT $5"
    );
    let rows = client
        .query_typed(
            &sql,
            &params![&low, &high, &after_uid, &after_balance, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                AccountSummaryRow {
                    uid: row.get(0),
                    balance: row.get(1),
                    held: row.get(4),
                    updated_at: row.get(2),
                },
                row.get(3),
            )
        })
        .collect())
}
