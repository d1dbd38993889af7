//! SQL for the audit tables: `audit_records` and `audit_chain_head` in each merchant schema,
//! `public.platform_audit_records` and `public.platform_audit_chain_head` for the platform.
//!
//! Writers, the sealer and the verifier name tables schema-qualified ([`Tables`]), so they work on any connection
//! whatever its search path (a mutation's record is written from a transaction on `public` tables as well as from
//! a tenant transaction). That SQL text differs per tenant, so it is never `prepare_cached` (the statement cache
//! would grow with the number of tenants); the hot insert uses `query_typed`, one round trip without a prepare.
//! The list and get queries run in a tenant transaction with unqualified names and are cached.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::{GenericClient, Row, types::Type};
use uuid::Uuid;

use crate::store::sql::{Typed, param, params};
use crate::{
    call::{Chain, NewRecord, StoredRecord},
    tenancy::TenantSchema,
};

/// The schema-qualified tables of one chain.
pub struct Tables {
    pub records: String,
    pub head: String,
    /// Where the last good verification ended.
    pub verification: String,
}

impl Tables {
    pub fn of(chain: &Chain) -> Tables {
        match chain {
            Chain::Platform => Tables {
                records: "public.platform_audit_records".to_owned(),
                head: "public.platform_audit_chain_head".to_owned(),
                verification: "public.platform_audit_verification".to_owned(),
            },
            Chain::Merchant(schema) => Tables {
                records: format!("{}.audit_records", schema.quoted()),
                head: format!("{}.audit_chain_head", schema.quoted()),
                verification: format!("{}.audit_verification", schema.quoted()),
            },
        }
    }
}

/// The records table as list and get name it: unqualified inside a tenant transaction (so the statement is the
/// same for every tenant and can be cached), qualified for the platform.
pub fn read_table(chain: &Chain) -> &'static str {
    match chain {
        Chain::Platform => "public.platform_audit_records",
        Chain::Merchant(_) => "audit_records",
    }
}

/// Every column of a record; `amount` as text so its canonical form is the database's exact decimal.
const RECORD_COLUMNS: &str = "audit_id, occurred_at, merchant_id, key_id, key_prefix, transport, method, request_id, \
    request_digest, outcome_code, outcome, latency_us, entry_ids, entries_digest, uid, amount::text AS amount, \
    currency, rule_code, rule_version, points, seq, record_hash, sealed_at";

impl StoredRecord {
    fn from_row(row: &Row) -> StoredRecord {
        from_columns!(row => StoredRecord {
            audit_id, occurred_at, merchant_id, key_id, key_prefix, transport, method, request_id,
            request_digest, outcome_code, outcome, latency_us, entry_ids, entries_digest, uid,
            amount, currency, rule_code, rule_version, points, seq, record_hash, sealed_at
        })
    }
}

/// A ledger entry's fields as the entries digest covers them (numbers and JSON as the database's text).
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntryFacts {
    pub entry_id: i64,
    pub uid: String,
    pub kind: String,
    pub delta: i64,
    pub balance_after: i64,
    pub idempotency_key: Option<String>,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub metadata: String,
    pub rule_code: Option<String>,
    pub rule_version: Option<i32>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub reverses_entry_id: Option<i64>,
    pub lot_id: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The entries with these ids in the merchant's ledger (missing ids are simply absent).
pub async fn ledger_entries(
    client: &impl GenericClient,
    schema: &TenantSchema,
    entry_ids: &[i64],
) -> Result<Vec<LedgerEntryFacts>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT entry_id, uid, kind, delta, balance_after, idempotency_key, reference, description, \
         metadata::text AS metadata, rule_code, rule_version, amount::text AS amount, currency, reverses_entry_id, \
         lot_id, expires_at, created_at FROM {}.entries WHERE entry_id = ANY($1)",
        schema.quoted()
    );
    let rows = client
        .query_typed(&sql, &[(&entry_ids, Type::INT8_ARRAY)])
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            from_columns!(row => LedgerEntryFacts {
                entry_id, uid, kind, delta, balance_after, idempotency_key, reference, description,
                metadata, rule_code, rule_version, amount, currency, reverses_entry_id, lot_id,
                expires_at, created_at
            })
        })
        .collect())
}

/// The columns a writer sets; `entries_digest`, `seq`, `record_hash` and `sealed_at` are set by sealing.
const INSERT_COLUMNS: &str = "occurred_at, merchant_id, key_id, key_prefix, transport, method, request_id, \
    request_digest, outcome_code, outcome, latency_us, entry_ids, uid, amount, currency, rule_code, rule_version, \
    points";

/// Inserts one unsealed record and returns its id (the in-transaction path: one round trip, no prepare).
pub async fn insert_one(
    client: &impl GenericClient,
    record: &NewRecord,
) -> Result<i64, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO {} ({INSERT_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING audit_id",
        Tables::of(&record.chain).records
    );
    let row = client
        .query_typed_one(
            &sql,
            &[
                (&record.occurred_at, Type::TIMESTAMPTZ),
                (&record.merchant_id, Type::UUID),
                (&record.key_id, Type::UUID),
                (&record.key_prefix, Type::TEXT),
                (&record.transport.as_str(), Type::TEXT),
                (&record.method, Type::TEXT),
                (&record.request_id, Type::TEXT),
                (&record.request_digest, Type::TEXT),
                (&record.outcome.code(), Type::INT4),
                (&record.outcome.name(), Type::TEXT),
                (&record.latency_us, Type::INT8),
                (&record.entry_ids, Type::INT8_ARRAY),
                (&record.uid, Type::TEXT),
                (&record.amount, Type::NUMERIC),
                (&record.currency, Type::TEXT),
                (&record.rule_code, Type::TEXT),
                (&record.rule_version, Type::INT4),
                (&record.points, Type::INT8),
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// Inserts a batch of unsealed records of one chain in one statement. A record with `unless_committed` is skipped
/// when that in-transaction record exists. Returns how many were inserted.
pub async fn insert_batch(
    client: &impl GenericClient,
    chain: &Chain,
    records: &[NewRecord],
) -> Result<u64, tokio_postgres::Error> {
    let table = Tables::of(chain).records;
    let sql = format!(
        "INSERT INTO {table} ({INSERT_COLUMNS}) \
         SELECT r.occurred_at, r.merchant_id, r.key_id, r.key_prefix, r.transport, r.method, r.request_id, \
                r.request_digest, r.outcome_code, r.outcome, r.latency_us, r.entry_ids::bigint[], r.uid, r.amount, \
                r.currency, r.rule_code, r.rule_version, r.points \
         FROM unnest($1::timestamptz[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], \
                     $8::text[], $9::int4[], $10::text[], $11::int8[], $12::text[], $13::text[], $14::numeric[], \
                     $15::text[], $16::text[], $17::int4[], $18::int8[], $19::int8[]) \
              AS r(occurred_at, merchant_id, key_id, key_prefix, transport, method, request_id, request_digest, \
                   outcome_code, outcome, latency_us, entry_ids, uid, amount, currency, rule_code, rule_version, \
                   points, unless_committed) \
         WHERE r.unless_committed IS NULL \
            OR NOT EXISTS (SELECT 1 FROM {table} t WHERE t.audit_id = r.unless_committed)"
    );
    let occurred_at: Vec<DateTime<Utc>> = records.iter().map(|r| r.occurred_at).collect();
    let merchant_id: Vec<Option<Uuid>> = records.iter().map(|r| r.merchant_id).collect();
    let key_id: Vec<Option<Uuid>> = records.iter().map(|r| r.key_id).collect();
    let key_prefix: Vec<Option<&str>> = records.iter().map(|r| r.key_prefix.as_deref()).collect();
    let transport: Vec<&str> = records.iter().map(|r| r.transport.as_str()).collect();
    let method: Vec<&str> = records.iter().map(|r| r.method.as_str()).collect();
    let request_id: Vec<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    let request_digest: Vec<&str> = records.iter().map(|r| r.request_digest.as_str()).collect();
    let outcome_code: Vec<i32> = records.iter().map(|r| r.outcome.code()).collect();
    let outcome: Vec<&str> = records.iter().map(|r| r.outcome.name()).collect();
    let latency_us: Vec<i64> = records.iter().map(|r| r.latency_us).collect();
    // unnest cannot zip arrays of arrays, so entry ids travel as array literals.
    let entry_ids: Vec<String> = records
        .iter()
        .map(|r| array_literal(&r.entry_ids))
        .collect();
    let uid: Vec<Option<&str>> = records.iter().map(|r| r.uid.as_deref()).collect();
    let amount: Vec<Option<Decimal>> = records.iter().map(|r| r.amount).collect();
    let currency: Vec<Option<&str>> = records.iter().map(|r| r.currency.as_deref()).collect();
    let rule_code: Vec<Option<&str>> = records.iter().map(|r| r.rule_code.as_deref()).collect();
    let rule_version: Vec<Option<i32>> = records.iter().map(|r| r.rule_version).collect();
    let points: Vec<Option<i64>> = records.iter().map(|r| r.points).collect();
    let unless_committed: Vec<Option<i64>> = records.iter().map(|r| r.unless_committed).collect();
    let params = params![
        &occurred_at,
        &merchant_id,
        &key_id,
        &key_prefix,
        &transport,
        &method,
        &request_id,
        &request_digest,
        &outcome_code,
        &outcome,
        &latency_us,
        &entry_ids,
        &uid,
        &amount,
        &currency,
        &rule_code,
        &rule_version,
        &points,
        &unless_committed,
    ];
    client.execute_typed(&sql, &params).await
}

fn array_literal(values: &[i64]) -> String {
    let items: Vec<String> = values.iter().map(i64::to_string).collect();
    format!("{{{}}}", items.join(","))
}

/// The head of a chain: the last sealed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub last_seq: i64,
    pub last_audit_id: Option<i64>,
    pub last_hash: Vec<u8>,
}

/// Locks the chain head for sealing. With `wait` false, returns None at once when another sealer holds it.
pub async fn lock_head(
    client: &impl GenericClient,
    chain: &Chain,
    wait: bool,
) -> Result<Option<ChainHead>, tokio_postgres::Error> {
    let lock = if wait {
        "FOR UPDATE"
    } else {
        "FOR UPDATE SKIP LOCKED"
    };
    select_head(client, chain, lock).await
}

/// Reads the chain head without locking it. None when the head row is missing (itself a sign of tampering).
pub async fn read_head(
    client: &impl GenericClient,
    chain: &Chain,
) -> Result<Option<ChainHead>, tokio_postgres::Error> {
    select_head(client, chain, "").await
}

async fn select_head(
    client: &impl GenericClient,
    chain: &Chain,
    lock: &str,
) -> Result<Option<ChainHead>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT last_seq, last_audit_id, last_hash FROM {} {lock}",
        Tables::of(chain).head
    );
    let row = client.query_typed_opt(&sql, &params![]).await?;
    Ok(row.map(|row| ChainHead {
        last_seq: row.get(0),
        last_audit_id: row.get(1),
        last_hash: row.get(2),
    }))
}

pub async fn advance_head(
    client: &impl GenericClient,
    chain: &Chain,
    head: &ChainHead,
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "UPDATE {} SET last_seq = $1, last_audit_id = $2, last_hash = $3, updated_at = now()",
        Tables::of(chain).head
    );
    client
        .execute_typed(
            &sql,
            &params![&head.last_seq, &head.last_audit_id, &head.last_hash],
        )
        .await?;
    Ok(())
}

/// Where the last good verification of a chain ended: the last record it checked (its seq and stored hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPosition {
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// The remembered verified position of a chain, if a verification ever completed.
pub async fn verified_position(
    client: &impl GenericClient,
    chain: &Chain,
) -> Result<Option<VerifiedPosition>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT verified_seq, verified_hash FROM {}",
        Tables::of(chain).verification
    );
    Ok(client
        .query_typed_opt(&sql, &params![])
        .await?
        .map(|row| VerifiedPosition {
            seq: row.get(0),
            hash: row.get(1),
        }))
}

/// Remembers that the chain is good up to `position`. Never moves the position backwards: two verifications
/// finishing in the wrong order keep the further one.
pub async fn remember_verified_position(
    client: &impl GenericClient,
    chain: &Chain,
    position: &VerifiedPosition,
) -> Result<(), tokio_postgres::Error> {
    let table = Tables::of(chain).verification;
    let chain_name = match chain {
        Chain::Platform => "platform",
        Chain::Merchant(_) => "merchant",
    };
    let sql = format!(
        "INSERT INTO {table} AS verification (chain, verified_seq, verified_hash, verified_at) \
         VALUES ($1, $2, $3, now()) ON CONFLICT (chain) DO UPDATE \
         SET verified_seq = excluded.verified_seq, verified_hash = excluded.verified_hash, \
         verified_at = excluded.verified_at \
         WHERE verification.verified_seq <= excluded.verified_seq"
    );
    client
        .execute_typed(&sql, &params![&chain_name, &position.seq, &position.hash])
        .await?;
    Ok(())
}

/// Committed unsealed records in id order, at most `limit`.
pub async fn unsealed(
    client: &impl GenericClient,
    chain: &Chain,
    limit: i64,
) -> Result<Vec<StoredRecord>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM {} WHERE seq IS NULL ORDER BY audit_id LIMIT $1",
        Tables::of(chain).records
    );
    Ok(client
        .query_typed(&sql, &params![&limit])
        .await?
        .iter()
        .map(StoredRecord::from_row)
        .collect())
}

/// True when the chain has unsealed records.
pub async fn has_unsealed(
    client: &impl GenericClient,
    chain: &Chain,
) -> Result<bool, tokio_postgres::Error> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE seq IS NULL)",
        Tables::of(chain).records
    );
    Ok(client.query_typed_one(&sql, &params![]).await?.get(0))
}

/// One record's seal.
pub struct Seal {
    pub audit_id: i64,
    pub seq: i64,
    pub record_hash: Vec<u8>,
    pub entries_digest: Option<String>,
}

/// Seals records: sets each one's `seq`, `record_hash` and `entries_digest`, and the common `sealed_at`. Only
/// unsealed records are touched; returns the rows updated.
pub async fn apply_seals(
    client: &impl GenericClient,
    chain: &Chain,
    seals: &[Seal],
    sealed_at: DateTime<Utc>,
) -> Result<u64, tokio_postgres::Error> {
    let sql = format!(
        "UPDATE {} t SET seq = s.seq, record_hash = s.record_hash, entries_digest = s.entries_digest, \
         sealed_at = $5 \
         FROM unnest($1::int8[], $2::int8[], $3::bytea[], $4::text[]) AS s(audit_id, seq, record_hash, entries_digest) \
         WHERE t.audit_id = s.audit_id AND t.seq IS NULL",
        Tables::of(chain).records
    );
    let audit_ids: Vec<i64> = seals.iter().map(|seal| seal.audit_id).collect();
    let seqs: Vec<i64> = seals.iter().map(|seal| seal.seq).collect();
    let hashes: Vec<&[u8]> = seals
        .iter()
        .map(|seal| seal.record_hash.as_slice())
        .collect();
    let digests: Vec<Option<&str>> = seals
        .iter()
        .map(|seal| seal.entries_digest.as_deref())
        .collect();
    client
        .execute_typed(
            &sql,
            &params![&audit_ids, &seqs, &hashes, &digests, &sealed_at],
        )
        .await
}

/// Where a record stands in the chain: None when it does not exist, `Some(None)` while it is unsealed.
pub async fn seq_of(
    client: &impl GenericClient,
    chain: &Chain,
    audit_id: i64,
) -> Result<Option<Option<i64>>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT seq FROM {} WHERE audit_id = $1",
        Tables::of(chain).records
    );
    Ok(client
        .query_typed_opt(&sql, &params![&audit_id])
        .await?
        .map(|row| row.get(0)))
}

/// The stored hash of the record at `seq`, if it exists.
pub async fn hash_at(
    client: &impl GenericClient,
    chain: &Chain,
    seq: i64,
) -> Result<Option<Option<Vec<u8>>>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT record_hash FROM {} WHERE seq = $1",
        Tables::of(chain).records
    );
    Ok(client
        .query_typed_opt(&sql, &params![&seq])
        .await?
        .map(|row| row.get(0)))
}

/// Sealed records with `from_seq <= seq <= to_seq`, in chain order, at most `limit`.
pub async fn sealed_range(
    client: &impl GenericClient,
    chain: &Chain,
    from_seq: i64,
    to_seq: i64,
    limit: i64,
) -> Result<Vec<StoredRecord>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM {} WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        Tables::of(chain).records
    );
    Ok(client
        .query_typed(&sql, &params![&from_seq, &to_seq, &limit])
        .await?
        .iter()
        .map(StoredRecord::from_row)
        .collect())
}

/// The first record sealed after `seq`, by chain order.
pub async fn first_sealed_after(
    client: &impl GenericClient,
    chain: &Chain,
    seq: i64,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT audit_id FROM {} WHERE seq > $1 ORDER BY seq LIMIT 1",
        Tables::of(chain).records
    );
    Ok(client
        .query_typed_opt(&sql, &params![&seq])
        .await?
        .map(|row| row.get(0)))
}

/// Merchants whose schema is fully migrated (the sealer's start-up sweep visits them).
pub async fn healthy_merchants(
    client: &impl GenericClient,
    version_latest: i32,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "SELECT merchant_id FROM public.tenant_migrations WHERE error IS NULL AND version >= $1 ORDER BY merchant_id", &params![&version_latest])
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Filters of the audit list; all optional.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub method: Option<String>,
    pub outcome_code: Option<i32>,
    pub key_id: Option<Uuid>,
    pub uid: Option<String>,
    /// Records strictly older than this `(occurred_at, audit_id)`: the page cursor.
    pub before: Option<(DateTime<Utc>, i64)>,
}

fn push_condition<'a>(
    conditions: &mut Vec<String>,
    params: &mut Vec<Typed<'a>>,
    test: &str,
    value: Typed<'a>,
) {
    params.push(value);
    conditions.push(format!("{test} ${}", params.len()));
}

/// Records matching `filter`, newest first. The WHERE clause names only the filters given, so each combination
/// gets a plan that can use the matching index.
pub async fn list(
    client: &deadpool_postgres::Transaction<'_>,
    chain: &Chain,
    filter: &ListFilter,
    limit: i64,
) -> Result<Vec<StoredRecord>, tokio_postgres::Error> {
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Typed<'_>> = Vec::new();
    if let Some(from) = &filter.from {
        push_condition(&mut conditions, &mut params, "occurred_at >=", param(from));
    }
    if let Some(to) = &filter.to {
        push_condition(&mut conditions, &mut params, "occurred_at <", param(to));
    }
    if let Some(method) = &filter.method {
        push_condition(&mut conditions, &mut params, "method =", param(method));
    }
    if let Some(outcome_code) = &filter.outcome_code {
        push_condition(
            &mut conditions,
            &mut params,
            "outcome_code =",
            param(outcome_code),
        );
    }
    if let Some(key_id) = &filter.key_id {
        push_condition(&mut conditions, &mut params, "key_id =", param(key_id));
    }
    if let Some(uid) = &filter.uid {
        push_condition(&mut conditions, &mut params, "uid =", param(uid));
    }
    if let Some((occurred_at, audit_id)) = &filter.before {
        params.push(param(occurred_at));
        params.push(param(audit_id));
        conditions.push(format!(
            "(occurred_at, audit_id) < (${}, ${})",
            params.len() - 1,
            params.len()
        ));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM {} {where_clause} ORDER BY occurred_at DESC, audit_id DESC LIMIT ${}",
        read_table(chain),
        params.len() + 1
    );
    params.push(param(&limit));
    Ok(client
        .query_typed(&sql, &params)
        .await?
        .iter()
        .map(StoredRecord::from_row)
        .collect())
}

pub async fn get(
    client: &deadpool_postgres::Transaction<'_>,
    chain: &Chain,
    audit_id: i64,
) -> Result<Option<StoredRecord>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM {} WHERE audit_id = $1",
        read_table(chain)
    );
    Ok(client
        .query_typed_opt(&sql, &params![&audit_id])
        .await?
        .as_ref()
        .map(StoredRecord::from_row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_travel_as_array_literals() {
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(array_literal(&[1, -2, 30]), "{1,-2,30}");
    }
}
