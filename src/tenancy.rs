//! Tenant schemas and the transaction that confines a request to one of them.
//!
//! A merchant's schema name is derived from its id by the system (`merchant_<32 hex>`), never from user input.
//! [`begin_tenant_transaction`] opens a transaction and sets `search_path` to that schema alone with
//! `set_config('search_path', .., true)`: the setting is transaction-local, so it ends at COMMIT or ROLLBACK (also
//! when a failed request drops the transaction), and the connection goes back to the pool with the default path.

use uuid::Uuid;

use crate::error::ServiceResult;
use crate::store::sql::params;

/// The schema of one merchant. Only constructible from a merchant id, so it is always a safe identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantSchema {
    name: String,
}

impl TenantSchema {
    pub fn for_merchant(merchant_id: Uuid) -> TenantSchema {
        TenantSchema {
            name: format!("merchant_{}", merchant_id.simple()),
        }
    }

    /// The bare schema name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name quoted as an identifier, as `search_path` and DDL take it.
    pub fn quoted(&self) -> String {
        crate::store::quote_identifier(&self.name)
    }
}

/// Opens a transaction whose unqualified names resolve only in `schema`.
pub async fn begin_tenant_transaction<'c>(
    client: &'c mut deadpool_postgres::Client,
    schema: &TenantSchema,
) -> ServiceResult<deadpool_postgres::Transaction<'c>> {
    let transaction = client.transaction().await?;
    confine(&transaction, schema).await?;
    Ok(transaction)
}

/// Opens a read-only repeatable-read transaction confined to `schema`: every statement of it sees one snapshot,
/// for reads whose parts must agree with each other (a report's totals and the balances it reconciles with).
pub async fn begin_tenant_snapshot<'c>(
    client: &'c mut deadpool_postgres::Client,
    schema: &TenantSchema,
) -> ServiceResult<deadpool_postgres::Transaction<'c>> {
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    confine(&transaction, schema).await?;
    Ok(transaction)
}

/// Sets the transaction's search path to `schema` alone, until the transaction ends.
async fn confine(
    transaction: &deadpool_postgres::Transaction<'_>,
    schema: &TenantSchema,
) -> ServiceResult<()> {
    let sql = "SELECT set_config('search_path', $1, true)";
    transaction
        .execute_typed(sql, &params![&schema.quoted()])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_system_made_identifiers() {
        let schema = TenantSchema::for_merchant(Uuid::nil());
        assert_eq!(schema.name(), "merchant_00000000000000000000000000000000");
        assert_eq!(
            schema.quoted(),
            "\"merchant_00000000000000000000000000000000\""
        );
    }
}
