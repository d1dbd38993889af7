//! The ledger's resources as the REST API shows them, shared by the points and holds routes: an entry and an
//! account.

use super::prelude::*;

use crate::convert::metadata_object;

/// A free-form JSON object.
type JsonObject = serde_json::Map<String, serde_json::Value>;

/// One ledger entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct Entry {
    /// The entry's id.
    #[schema(example = "e_01J9Z4A7VB")]
    pub entry_id: String,
    /// The merchant's end-user id.
    #[schema(example = "user-42")]
    pub uid: String,
    /// "earn", "spend", "adjust", "reverse" or "expire".
    #[schema(example = "earn")]
    pub kind: String,
    /// Signed change of the balance.
    #[schema(example = 120)]
    pub delta: i64,
    /// The uid's balance right after this entry.
    #[schema(example = 560)]
    pub balance_after: i64,
    /// The idempotency key of the request that wrote the entry.
    #[schema(example = "order-1001-earn")]
    pub idempotency_key: String,
    /// The merchant's own reference, e.g. an order number.
    #[schema(example = "order-1001")]
    pub reference: Option<String>,
    /// Free text.
    #[schema(example = "Purchase at Coffee Corner")]
    pub description: Option<String>,
    /// The JSON object given with the request (`{}` when none).
    #[schema(value_type = Object, example = json!({"store": "downtown"}))]
    pub metadata: JsonObject,
    /// The rule used when points were converted from money.
    #[schema(example = "default")]
    pub rule_code: Option<String>,
    /// The version of that rule.
    #[schema(example = 3)]
    pub rule_version: Option<i32>,
    /// The money amount (decimal string) when points were converted from money.
    #[schema(example = "12.50")]
    pub amount: Option<String>,
    /// ISO-4217 currency of `amount`.
    #[schema(example = "EUR")]
    pub currency: Option<String>,
    /// For a reversal, the entry it reverses.
    pub reverses_entry_id: Option<String>,
    /// For the spend entry of a hold's capture, the hold.
    pub hold_id: Option<String>,
    /// When the points of this earn expire; null for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the entry was written.
    pub created_at: Option<DateTime<Utc>>,
}

impl From<pb::Entry> for Entry {
    fn from(entry: pb::Entry) -> Entry {
        Entry {
            entry_id: entry.entry_id,
            uid: entry.uid,
            kind: entry.kind,
            delta: entry.delta,
            balance_after: entry.balance_after,
            idempotency_key: entry.idempotency_key,
            reference: entry.reference,
            description: entry.description,
            metadata: metadata_object(entry.metadata.as_ref()),
            rule_code: entry.rule_code,
            rule_version: entry.rule_version,
            amount: entry.amount,
            currency: entry.currency,
            reverses_entry_id: entry.reverses_entry_id,
            hold_id: entry.hold_id,
            expires_at: from_timestamp(entry.expires_at),
            created_at: from_timestamp(entry.created_at),
        }
    }
}

/// A uid's balance and the points that expire in the next 30 days.
#[derive(Debug, Serialize, ToSchema)]
pub struct Account {
    /// The merchant's end-user id.
    #[schema(example = "user-42")]
    pub uid: String,
    /// Current balance (never counts expired points); 0 for an unknown uid.
    #[schema(example = 560)]
    pub balance: i64,
    /// Points reserved by active holds.
    #[schema(example = 0)]
    pub held: i64,
    /// `balance - held`: what a spend or a new hold may use.
    #[schema(example = 560)]
    pub available: i64,
    /// Points expiring in the next 30 days, soonest first.
    pub expiring: Vec<ExpiringPoints>,
}

/// Points that expire together.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpiringPoints {
    /// How many points.
    #[schema(example = 120)]
    pub points: i64,
    /// When they expire.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<pb::Account> for Account {
    fn from(account: pb::Account) -> Account {
        Account {
            uid: account.uid,
            balance: account.balance,
            held: account.held,
            available: account.available,
            expiring: account
                .expiring
                .into_iter()
                .map(|lot| ExpiringPoints {
                    points: lot.points,
                    expires_at: from_timestamp(lot.expires_at),
                })
                .collect(),
        }
    }
}
