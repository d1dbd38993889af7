//! SQL for a merchant's `rules` and `rule_versions`. Table names are unqualified: every function runs inside a
//! tenant transaction whose `search_path` is the merchant's schema alone.
//!
//! `rules` has one row per code holding `latest_version`; bumping it with `INSERT .. ON CONFLICT DO UPDATE` both
//! numbers the next version and row-locks the code until commit, so concurrent writers of one code get distinct,
//! ordered versions. Versions are immutable except that ending one sets its `effective_to`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::{GenericClient, Row};

use crate::domain::rules::{NewRuleVersion, RuleVersion};
use crate::store::sql::params;

const COLUMNS: &str = "v.code, v.version, v.currency, v.unit_amount, v.points_per_unit, v.rounding, v.min_amount, \
                       v.max_points, v.points_ttl_days, v.effective_from, v.effective_to, v.created_at";

/// "Version `v` is in effect at `$2`": `effective_from` inclusive, `effective_to` exclusive.
const IN_EFFECT_AT_2: &str =
    "v.effective_from <= $2 AND (v.effective_to IS NULL OR v.effective_to > $2)";

impl RuleVersion {
    fn from_row(row: &Row) -> RuleVersion {
        from_columns!(row => RuleVersion {
            code, version, currency, unit_amount, points_per_unit, rounding, min_amount, max_points,
            points_ttl_days, effective_from, effective_to, created_at
        })
    }
}

/// Numbers and inserts one new version per element of `versions` (each code at most once), in one statement.
/// Codes are locked in code order, so two batches touching the same codes cannot deadlock. Rows come back in
/// no particular order.
pub async fn insert_versions(
    client: &impl GenericClient,
    versions: &[NewRuleVersion],
) -> Result<Vec<RuleVersion>, tokio_postgres::Error> {
    let codes: Vec<&str> = versions
        .iter()
        .map(|version| version.code.as_str())
        .collect();
    let currencies: Vec<&str> = versions
        .iter()
        .map(|version| version.terms.currency.code())
        .collect();
    let unit_amounts: Vec<Decimal> = versions
        .iter()
        .map(|version| version.terms.unit_amount)
        .collect();
    let points_per_unit: Vec<i64> = versions
        .iter()
        .map(|version| version.terms.points_per_unit)
        .collect();
    let roundings: Vec<&str> = versions
        .iter()
        .map(|version| version.terms.rounding.as_str())
        .collect();
    let min_amounts: Vec<Option<Decimal>> = versions
        .iter()
        .map(|version| version.terms.min_amount)
        .collect();
    let max_points: Vec<Option<i64>> = versions
        .iter()
        .map(|version| version.terms.max_points)
        .collect();
    let ttl_days: Vec<Option<i32>> = versions
        .iter()
        .map(|version| version.terms.points_ttl_days)
        .collect();
    let effective_from: Vec<DateTime<Utc>> = versions
        .iter()
        .map(|version| version.effective_from)
        .collect();
    let effective_to: Vec<Option<DateTime<Utc>>> = versions
        .iter()
        .map(|version| version.effective_to)
        .collect();
    let sql = format!(
        "WITH input AS ( \
             SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::int8[], $5::text[], $6::numeric[], \
                                  $7::int8[], $8::int4[], $9::timestamptz[], $10::timestamptz[]) \
                 AS input (code, currency, unit_amount, points_per_unit, rounding, min_amount, max_points, \
                           points_ttl_days, effective_from, effective_to) \
         ), numbered AS ( \
             INSERT INTO rules AS r (code, latest_version) SELECT code, 1 FROM input ORDER BY code \
             ON CONFLICT (code) DO UPDATE SET latest_version = r.latest_version + 1 \
             RETURNING r.code, r.latest_version \
         ) \
         INSERT INTO rule_versions AS v (code, version, currency, unit_amount, points_per_unit, rounding, min_amount, \
                                         max_points, points_ttl_days, effective_from, effective_to) \
         SELECT input.code, numbered.latest_version, input.currency, input.unit_amount, input.points_per_unit, \
                input.rounding, input.min_amount, input.max_points, input.points_ttl_days, input.effective_from, \
                input.effective_to \
         FROM input JOIN numbered ON numbered.code = input.code \
         RETURNING {COLUMNS}"
    );
    let rows = client
        .query_typed(
            &sql,
            &params![
                &codes,
                &currencies,
                &unit_amounts,
                &points_per_unit,
                &roundings,
                &min_amounts,
                &max_points,
                &ttl_days,
                &effective_from,
                &effective_to,
            ],
        )
        .await?;
    Ok(rows.iter().map(RuleVersion::from_row).collect())
}

/// The version of `code` in effect at `at`: the highest-numbered one whose validity contains `at`.
pub async fn version_at(
    client: &impl GenericClient,
    code: &str,
    at: DateTime<Utc>,
) -> Result<Option<RuleVersion>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rule_versions v WHERE v.code = $1 AND {IN_EFFECT_AT_2} ORDER BY v.version DESC LIMIT 1"
    );
    Ok(client
        .query_typed_opt(&sql, &params![&code, &at])
        .await?
        .as_ref()
        .map(RuleVersion::from_row))
}

/// Whether any version of `code` was ever created.
pub async fn code_exists(
    client: &impl GenericClient,
    code: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_typed_opt("SELECT 1 FROM rules WHERE code = $1", &params![&code])
        .await?
        .is_some())
}

/// Versions of `code`, newest first, below version `before` when given.
pub async fn list_versions(
    client: &impl GenericClient,
    code: &str,
    before: Option<i32>,
    limit: i64,
) -> Result<Vec<RuleVersion>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rule_versions v WHERE v.code = $1 AND ($2::int4 IS NULL OR v.version < $2) \
         ORDER BY v.version DESC LIMIT $3"
    );
    let rows = client
        .query_typed(&sql, &params![&code, &before, &limit])
        .await?;
    Ok(rows.iter().map(RuleVersion::from_row).collect())
}

/// The version in effect at `at` of every code that has one, by code, after the code `after` when given.
pub async fn list_in_effect(
    client: &impl GenericClient,
    at: DateTime<Utc>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<RuleVersion>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rules r CROSS JOIN LATERAL ( \
             SELECT {COLUMNS} FROM rule_versions v WHERE v.code = r.code AND {IN_EFFECT_AT_2} \
             ORDER BY v.version DESC LIMIT 1 \
         ) v \
         WHERE ($1::text IS NULL OR r.code > $1) ORDER BY r.code LIMIT $3"
    );
    let rows = client
        .query_typed(&sql, &params![&after, &at, &limit])
        .await?;
    Ok(rows.iter().map(RuleVersion::from_row).collect())
}

/// Locks every code's `rules` row in code order, so a `replace` sync sees a stable set of codes and a concurrent
/// PutRule on a code it ends waits for it instead of slipping a version in between.
pub async fn lock_all_codes(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    client
        .query_typed(
            "SELECT code FROM rules ORDER BY code FOR UPDATE",
            &params![],
        )
        .await?;
    Ok(())
}

/// Ends, at `now`, every version not ended by then of each code not in `keep`, and returns those codes (sorted).
///
/// A version already ending at or before `now`, or already withdrawn, is left alone (an end is never moved later);
/// one that started ends at `now`; one scheduled to start later gets the empty validity
/// `[effective_from, effective_from)`, i.e. it is withdrawn before it applies (see migration V2).
pub async fn end_codes_except(
    client: &impl GenericClient,
    keep: &[&str],
    now: DateTime<Utc>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "WITH ended AS ( \
                 UPDATE rule_versions v SET effective_to = GREATEST(v.effective_from, $2) \
                 WHERE v.code <> ALL($1::text[]) \
                   AND (v.effective_to IS NULL OR (v.effective_to > $2 AND v.effective_to > v.effective_from)) \
                 RETURNING v.code \
             ) \
             SELECT DISTINCT code FROM ended ORDER BY code", &params![&keep, &now])
        .await?;
    Ok(rows.iter().map(|row| row.get("code")).collect())
}
