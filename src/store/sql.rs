//! How statements reach PostgreSQL: unnamed, each with its parameters' types, parsed, bound and executed in one
//! round trip (`query_typed`).
//!
//! No statement outlives its round trip, so nothing a statement leaves behind on a server connection is ever
//! needed again. That is what a transaction-mode pooler (pgbouncer) requires: it may hand each transaction, and
//! each statement outside one, to a different server connection, where a named prepared statement of another
//! client may already exist, or ours may not. It also saves the separate prepare round trip a `query(&str, ..)`
//! makes. The parameter types are those of the Rust values ([`Param`]); a statement whose columns expect another
//! type casts (`$1::bigint[]`). Result columns must be built-in types: decoding a custom type would make the client
//! prepare its own catalog query, which is a named statement again.
//!
//! [`params!`] turns `[&a, &b]` into the typed list: `client.query_typed(sql, &params![&a, &b])`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// One parameter and the type it is sent as.
pub type Typed<'a> = (&'a (dyn ToSql + Sync), Type);

/// A value that is a statement parameter of one PostgreSQL type.
pub trait Param: ToSql + Sync {
    const TYPE: Type;
}

/// A value that is an element of an array parameter.
pub trait Element: ToSql + Sync {
    const ARRAY: Type;
}

/// `value` with the type it is sent as.
pub fn param<T: Param>(value: &T) -> Typed<'_> {
    (value, T::TYPE)
}

/// `params![&a, &b]`: the typed parameter list of `query_typed` and friends.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        [$($crate::store::sql::param($value)),*]
    };
}
pub(crate) use params;

macro_rules! scalar {
    ($($rust:ty => $sql:ident / $array:ident),+ $(,)?) => {
        $(
            impl Param for $rust {
                const TYPE: Type = Type::$sql;
            }
            impl Element for $rust {
                const ARRAY: Type = Type::$array;
            }
        )+
    };
}

scalar! {
    bool => BOOL / BOOL_ARRAY,
    i16 => INT2 / INT2_ARRAY,
    i32 => INT4 / INT4_ARRAY,
    i64 => INT8 / INT8_ARRAY,
    String => TEXT / TEXT_ARRAY,
    &str => TEXT / TEXT_ARRAY,
    Uuid => UUID / UUID_ARRAY,
    DateTime<Utc> => TIMESTAMPTZ / TIMESTAMPTZ_ARRAY,
    serde_json::Value => JSONB / JSONB_ARRAY,
    Decimal => NUMERIC / NUMERIC_ARRAY,
}

/// Bytes are one `bytea`, not an array.
impl Param for Vec<u8> {
    const TYPE: Type = Type::BYTEA;
}

impl Param for &[u8] {
    const TYPE: Type = Type::BYTEA;
}

impl Element for Vec<u8> {
    const ARRAY: Type = Type::BYTEA_ARRAY;
}

impl Element for &[u8] {
    const ARRAY: Type = Type::BYTEA_ARRAY;
}

impl<T: Param> Param for &T {
    const TYPE: Type = T::TYPE;
}

impl<T: Element> Element for &T {
    const ARRAY: Type = T::ARRAY;
}

impl<T: Param> Param for Option<T> {
    const TYPE: Type = T::TYPE;
}

impl<T: Element> Element for Option<T> {
    const ARRAY: Type = T::ARRAY;
}

impl<T: Element> Param for Vec<T> {
    const TYPE: Type = T::ARRAY;
}

impl<T: Element> Param for &[T] {
    const TYPE: Type = T::ARRAY;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_carry_the_type_of_their_rust_value() {
        let uid = "u1";
        let points = 5i64;
        let expires: Option<DateTime<Utc>> = None;
        let ids: Vec<Option<i64>> = vec![Some(1), None];
        let names = ["a", "b"];
        let slice: &[&str] = &names;
        let types: Vec<Type> = params![&uid, &points, &expires, &ids, &slice]
            .into_iter()
            .map(|(_, ty)| ty)
            .collect();
        assert_eq!(
            types,
            [
                Type::TEXT,
                Type::INT8,
                Type::TIMESTAMPTZ,
                Type::INT8_ARRAY,
                Type::TEXT_ARRAY
            ]
        );
    }
}
