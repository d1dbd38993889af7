//! What PostgreSQL itself refuses, whoever asks (SPEC §5 and §7): entries are append-only, audit records are
//! written once and sealed once, keys and merchants are never deleted. Each statement is sent straight to the
//! database, past the service, and must fail with `restrict_violation` and leave the row as it was.

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use crate::helpers::{earn_request, idem, schema_of, spawn_app};

/// Runs `statement` and asserts PostgreSQL refuses it with `restrict_violation` and a message containing `says`.
async fn assert_refused(db: &tokio_postgres::Client, statement: &str, says: &str) {
    let error = db
        .batch_execute(statement)
        .await
        .expect_err(&format!("refused: {statement}"));
    let database_error = error
        .as_db_error()
        .unwrap_or_else(|| panic!("{statement}: not a database error: {error}"));
    assert_eq!(
        database_error.code(),
        &SqlState::RESTRICT_VIOLATION,
        "{statement}: {database_error}"
    );
    assert!(
        database_error.message().contains(says),
        "{statement}: {database_error}"
    );
}

/// Waits (bounded) until `query` — a count — is above zero: the audit writer and sealer work in the background.
async fn wait_for_rows(db: &tokio_postgres::Client, query: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count: i64 = db.query_one(query, &[]).await.expect(query).get(0);
        if count > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no rows for {query}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn entries_audit_records_keys_and_merchants_cannot_be_changed_or_deleted_in_the_database() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("append-only").await;
    app.points(app.caller(&key))
        .earn(earn_request("ann", 5, &idem()))
        .await
        .expect("earn");
    let db = app.db().await;
    let schema = schema_of(&merchant.merchant_id);
    let tenant_audit = format!("{schema}.audit_records");
    let platform_audit = "public.platform_audit_records";
    for table in [tenant_audit.as_str(), platform_audit] {
        wait_for_rows(
            &db,
            &format!("SELECT count(*) FROM {table} WHERE sealed_at IS NOT NULL"),
        )
        .await;
    }
    let entries_before: Vec<(i64, i64)> = db
        .query(
            &format!("SELECT entry_id, delta FROM {schema}.entries"),
            &[],
        )
        .await
        .expect("entries")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(entries_before.len(), 1);

    let entries = format!("{schema}.entries");
    let refusals = [
        (
            format!("UPDATE {entries} SET delta = delta + 1"),
            "append-only",
        ),
        (
            format!("UPDATE {entries} SET description = 'edited'"),
            "append-only",
        ),
        (format!("DELETE FROM {entries}"), "append-only"),
        (
            format!("UPDATE {tenant_audit} SET outcome_code = 0, method = 'edited'"),
            "never changed or deleted",
        ),
        (
            format!("DELETE FROM {tenant_audit}"),
            "never changed or deleted",
        ),
        // A sealed record is not sealed again.
        (
            format!("UPDATE {tenant_audit} SET seq = seq + 1000 WHERE sealed_at IS NOT NULL"),
            "only sealed once",
        ),
        (
            format!("UPDATE {platform_audit} SET method = 'edited'"),
            "never changed or deleted",
        ),
        (
            format!("DELETE FROM {platform_audit}"),
            "never changed or deleted",
        ),
        (
            format!("UPDATE {platform_audit} SET seq = seq + 1000 WHERE sealed_at IS NOT NULL"),
            "only sealed once",
        ),
        ("DELETE FROM public.api_keys".to_owned(), "never deleted"),
        ("DELETE FROM public.merchants".to_owned(), "never deleted"),
    ];
    for (statement, says) in &refusals {
        assert_refused(&db, statement, says).await;
    }

    let entries_after: Vec<(i64, i64)> = db
        .query(
            &format!("SELECT entry_id, delta FROM {schema}.entries"),
            &[],
        )
        .await
        .expect("entries")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(entries_after, entries_before);
    // The chains still verify: nothing was changed.
    let mut caller = app.admin();
    caller.merchant_id = Some(merchant.merchant_id.clone());
    for caller in [app.admin(), caller] {
        let verified = app
            .audit(caller)
            .verify_audit_log(points::pb::VerifyAuditLogRequest::default())
            .await
            .expect("verify")
            .into_inner();
        assert!(verified.ok, "{verified:?}");
    }
    app.stop().await.expect("stop");
}
