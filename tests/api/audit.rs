//! The audit trail: one record per call with the right outcome, atomic with mutations, no keys in it,
//! tamper-evident, queryable, complete after concurrent load and after a graceful stop.
//!
//! The in-transaction path is covered both by the key and merchant mutations and by the ledger and rules
//! (earn, replay, conversions), which write their records through `record_in_transaction` too.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use points::{
    audit::record_in_transaction,
    call::{AuthContext, MerchantContext},
    call::{CallContext, Transport},
    domain::Scope,
    pb,
    tenancy::{TenantSchema, begin_tenant_transaction},
};
use tonic::{Code, metadata::MetadataValue};
use uuid::Uuid;

use crate::helpers::{
    Caller, TestApp, assert_status, spawn_app, spawn_app_with, spawn_second_instance,
};

const PLATFORM: &str = "public.platform_audit_records";
const WAIT_MAX: Duration = Duration::from_secs(15);

fn schema_of(merchant_id: &str) -> String {
    format!("merchant_{}", merchant_id.replace('-', ""))
}

fn tenant_table(merchant_id: &str) -> String {
    format!("{}.audit_records", schema_of(merchant_id))
}

fn with_request_id(mut caller: Caller, request_id: &str) -> Caller {
    caller.request_id = Some(request_id.to_owned());
    caller
}

/// One stored record, as the tests look at it.
#[derive(Debug, Clone)]
struct Stored {
    table: String,
    audit_id: i64,
    method: String,
    outcome_code: i32,
    outcome: String,
    key_id: Option<Uuid>,
    key_prefix: Option<String>,
    merchant_id: Option<Uuid>,
    transport: String,
    request_digest: String,
    entry_ids: Vec<i64>,
    entries_digest: Option<String>,
    uid: Option<String>,
    seq: Option<i64>,
    request_id: String,
}

async fn records_in(db: &tokio_postgres::Client, table: &str, condition: &str) -> Vec<Stored> {
    let sql = format!(
        "SELECT audit_id, method, outcome_code, outcome, key_id, key_prefix, merchant_id, transport, request_digest, \
         entry_ids, entries_digest, uid, seq, request_id FROM {table} WHERE {condition} ORDER BY audit_id"
    );
    db.query(&sql, &[])
        .await
        .expect("records")
        .iter()
        .map(|row| Stored {
            table: table.to_owned(),
            audit_id: row.get(0),
            method: row.get(1),
            outcome_code: row.get(2),
            outcome: row.get(3),
            key_id: row.get(4),
            key_prefix: row.get(5),
            merchant_id: row.get(6),
            transport: row.get(7),
            request_digest: row.get(8),
            entry_ids: row.get(9),
            entries_digest: row.get(10),
            uid: row.get(11),
            seq: row.get(12),
            request_id: row.get(13),
        })
        .collect()
}

async fn count(db: &tokio_postgres::Client, table: &str, condition: &str) -> i64 {
    db.query_one(
        &format!("SELECT count(*) FROM {table} WHERE {condition}"),
        &[],
    )
    .await
    .expect("count")
    .get(0)
}

/// Waits until each request id has a record in one of `tables` (records are written off the request path),
/// then returns every record of each id, so a test can check there is exactly one.
async fn records_by_request_id(
    db: &tokio_postgres::Client,
    tables: &[String],
    request_ids: &[&str],
) -> HashMap<String, Vec<Stored>> {
    let deadline = Instant::now() + WAIT_MAX;
    let list = request_ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    loop {
        let mut found: HashMap<String, Vec<Stored>> = HashMap::new();
        for table in tables {
            for record in records_in(db, table, &format!("request_id IN ({list})")).await {
                found
                    .entry(record.request_id.clone())
                    .or_default()
                    .push(record);
            }
        }
        if request_ids.iter().all(|id| found.contains_key(*id)) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "records missing; found {:?}",
            found.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `table` holds exactly `expected` records and all are sealed.
async fn wait_until_settled(db: &tokio_postgres::Client, table: &str, expected: i64) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let total = count(db, table, "true").await;
        let unsealed = count(db, table, "seq IS NULL").await;
        if total == expected && unsealed == 0 {
            return;
        }
        assert!(
            total <= expected,
            "{table} has {total} records, expected {expected}"
        );
        assert!(
            Instant::now() < deadline,
            "{table}: {total} of {expected} records, {unsealed} unsealed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A full verification (from the first record): tampering anywhere in the chain is found. The incremental
/// default has tests of its own.
async fn verify(
    app: &TestApp,
    caller: Caller,
    from: Option<i64>,
    to: Option<i64>,
) -> pb::VerifyAuditLogResponse {
    app.audit(caller)
        .verify_audit_log(pb::VerifyAuditLogRequest {
            from_audit_id: from.map(|id| id.to_string()),
            to_audit_id: to.map(|id| id.to_string()),
            full: true,
        })
        .await
        .expect("verify")
        .into_inner()
}

async fn create_key(app: &TestApp, caller: Caller, name: &str, scopes: &[&str]) -> pb::ApiKey {
    app.keys(caller)
        .create_api_key(pb::CreateApiKeyRequest {
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_at: None,
        })
        .await
        .expect("create key")
        .into_inner()
}

/// (request id, table, method, outcome code, outcome name, key id) of one expected record.
type Expected<'a> = (&'a str, &'a str, &'a str, i32, &'a str, Option<Uuid>);

#[tokio::test]
async fn every_call_kind_produces_exactly_one_record_with_its_outcome() {
    let app = spawn_app().await;
    let admin_id = app
        .merchants(app.admin())
        .get_me(pb::GetMeRequest {})
        .await
        .expect("admin me")
        .into_inner()
        .api_key
        .expect("key")
        .key_id;
    let response = app
        .merchants(with_request_id(app.admin(), "rq-register"))
        .register_merchant(pb::RegisterMerchantRequest {
            slug: "audited".into(),
            name: "Audited".into(),
        })
        .await
        .expect("register")
        .into_inner();
    let merchant = response.merchant.expect("merchant");
    let key = response.api_key.expect("key");
    let plaintext = key.key.clone().expect("plaintext");
    let merchant_uuid = Uuid::parse_str(&merchant.merchant_id).expect("uuid");
    let tenant = tenant_table(&merchant.merchant_id);
    let as_merchant = |request_id: &str| with_request_id(app.caller(&plaintext), request_id);
    let as_admin = |request_id: &str| with_request_id(app.admin(), request_id);

    app.merchants(as_merchant("rq-me"))
        .get_me(pb::GetMeRequest {})
        .await
        .expect("me");
    let created = create_key(&app, as_merchant("rq-create"), "reader", &["points:read"]).await;
    let reader = created.key.clone().expect("plaintext");
    app.keys(as_merchant("rq-list"))
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .expect("list");
    app.keys(as_merchant("rq-rotate"))
        .rotate_api_key(pb::RotateApiKeyRequest {
            key_id: created.key_id.clone(),
            grace_seconds: Some(60),
        })
        .await
        .expect("rotate");
    app.keys(as_merchant("rq-revoke"))
        .revoke_api_key(pb::RevokeApiKeyRequest {
            key_id: created.key_id.clone(),
        })
        .await
        .expect("revoke");
    let invalid = app
        .keys(as_merchant("rq-invalid"))
        .create_api_key(pb::CreateApiKeyRequest {
            name: String::new(),
            scopes: vec!["points:read".into()],
            expires_at: None,
        })
        .await;
    assert_status(invalid, Code::InvalidArgument, "INVALID_ARGUMENT");
    // Revocation is immediate, grace period or not: UNAUTHENTICATED, recorded in its merchant's audit with its key id.
    let revoked = app
        .merchants(with_request_id(app.caller(&reader), "rq-revoked"))
        .get_me(pb::GetMeRequest {})
        .await;
    assert_status(revoked, Code::Unauthenticated, "UNAUTHENTICATED");
    let no_scope = create_key(
        &app,
        app.caller(&plaintext),
        "no-keys-scope",
        &["points:read"],
    )
    .await;
    let denied = app
        .keys(with_request_id(
            app.caller(no_scope.key.as_deref().expect("k")),
            "rq-denied",
        ))
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await;
    assert_status(denied, Code::PermissionDenied, "PERMISSION_DENIED");
    let anonymous = app
        .merchants(with_request_id(app.caller(""), "rq-anonymous"))
        .get_me(pb::GetMeRequest {})
        .await;
    assert_status(anonymous, Code::Unauthenticated, "UNAUTHENTICATED");
    let malformed = app
        .merchants(with_request_id(app.caller("lp_live_nope"), "rq-malformed"))
        .get_me(pb::GetMeRequest {})
        .await;
    assert_status(malformed, Code::Unauthenticated, "UNAUTHENTICATED");
    app.merchants(as_admin("rq-get-merchant"))
        .get_merchant(pb::GetMerchantRequest {
            merchant_id: merchant.merchant_id.clone(),
        })
        .await
        .expect("get merchant");
    let missing = app
        .merchants(as_admin("rq-missing-merchant"))
        .get_merchant(pb::GetMerchantRequest {
            merchant_id: Uuid::new_v4().to_string(),
        })
        .await;
    assert_status(missing, Code::NotFound, "NOT_FOUND");
    app.merchants(as_admin("rq-list-merchants"))
        .list_merchants(pb::ListMerchantsRequest::default())
        .await
        .expect("list");
    app.merchants(as_admin("rq-update"))
        .update_merchant(pb::UpdateMerchantRequest {
            merchant_id: merchant.merchant_id.clone(),
            name: Some("Renamed".into()),
            status: None,
        })
        .await
        .expect("update");
    let mut acting = as_admin("rq-acting");
    acting.merchant_id = Some(merchant.merchant_id.clone());
    app.keys(acting)
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .expect("admin acting for merchant");
    app.audit(as_merchant("rq-audit-list"))
        .list_audit_logs(pb::ListAuditLogsRequest::default())
        .await
        .expect("audit list");
    app.audit(as_merchant("rq-verify"))
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .expect("verify");
    let not_found = app
        .audit(as_merchant("rq-audit-get"))
        .get_audit_log(pb::GetAuditLogRequest {
            audit_id: "999999".into(),
        })
        .await;
    assert_status(not_found, Code::NotFound, "NOT_FOUND");

    let (merchant_key_id, admin_key_id) = (
        Uuid::parse_str(&key.key_id).expect("uuid"),
        Uuid::parse_str(&admin_id).expect("uuid"),
    );
    let reader_id = Uuid::parse_str(&created.key_id).expect("uuid");
    let no_scope_id = Uuid::parse_str(&no_scope.key_id).expect("uuid");
    // request id → (table, method, outcome code, outcome, key id)
    let expected: Vec<Expected> = vec![
        (
            "rq-register",
            PLATFORM,
            "MerchantService/RegisterMerchant",
            0,
            "OK",
            Some(admin_key_id),
        ),
        (
            "rq-me",
            &tenant,
            "MerchantService/GetMe",
            0,
            "OK",
            Some(merchant_key_id),
        ),
        (
            "rq-create",
            &tenant,
            "ApiKeyService/CreateApiKey",
            0,
            "OK",
            Some(merchant_key_id),
        ),
        (
            "rq-list",
            &tenant,
            "ApiKeyService/ListApiKeys",
            0,
            "OK",
            Some(merchant_key_id),
        ),
        (
            "rq-rotate",
            &tenant,
            "ApiKeyService/RotateApiKey",
            0,
            "OK",
            Some(merchant_key_id),
        ),
        (
            "rq-revoke",
            &tenant,
            "ApiKeyService/RevokeApiKey",
            0,
            "OK",
            Some(merchant_key_id),
        ),
        (
            "rq-invalid",
            &tenant,
            "ApiKeyService/CreateApiKey",
            40001,
            "INVALID_ARGUMENT",
            Some(merchant_key_id),
        ),
        (
            "rq-revoked",
            &tenant,
            "MerchantService/GetMe",
            40101,
            "UNAUTHENTICATED",
            Some(reader_id),
        ),
        (
            "rq-denied",
            &tenant,
            "ApiKeyService/ListApiKeys",
            40301,
            "PERMISSION_DENIED",
            Some(no_scope_id),
        ),
        (
            "rq-anonymous",
            PLATFORM,
            "MerchantService/GetMe",
            40101,
            "UNAUTHENTICATED",
            None,
        ),
        (
            "rq-malformed",
            PLATFORM,
            "MerchantService/GetMe",
            40101,
            "UNAUTHENTICATED",
            None,
        ),
        (
            "rq-get-merchant",
            PLATFORM,
            "MerchantService/GetMerchant",
            0,
            "OK",
            Some(admin_key_id),
        ),
        (
            "rq-missing-merchant",
            PLATFORM,
            "MerchantService/GetMerchant",
            40401,
            "NOT_FOUND",
            Some(admin_key_id),
        ),
        (
            "rq-list-merchants",
            PLATFORM,
            "MerchantService/ListMerchants",
            0,
            "OK",
            Some(admin_key_id),
        ),
        (
            "rq-update",
            PLATFORM,
            "MerchantService/UpdateMerchant",
            0,
            "OK",
            Some(admin_key_id),
        ),
        (
            "rq-acting",
            &tenant,
            "ApiKeyService/ListApiKeys",
            0,
            "OK",
            Some(admin_key_id),
        ),
        (
            "rq-audit-list",
            &tenant,
            "AuditService/ListAuditLogs",
            0,
            "OK",
            Some(merchant_key_id),
        ),
        (
            "rq-verify",
            &tenant,
            "AuditService/VerifyAuditLog",
            0,
            "OK",
            Some(merchant_key_id),
        ),
        (
            "rq-audit-get",
            &tenant,
            "AuditService/GetAuditLog",
            40401,
            "NOT_FOUND",
            Some(merchant_key_id),
        ),
    ];
    let db = app.db().await;
    let ids: Vec<&str> = expected.iter().map(|e| e.0).collect();
    let found = records_by_request_id(&db, &[PLATFORM.to_owned(), tenant.clone()], &ids).await;
    for (request_id, table, method, code, outcome, key_id) in &expected {
        let records = &found[*request_id];
        assert_eq!(
            records.len(),
            1,
            "{request_id}: expected exactly one record, got {records:?}"
        );
        let record = &records[0];
        assert_eq!(record.table, *table, "{request_id}");
        assert_eq!(
            record.method,
            format!("/points.v1.{method}"),
            "{request_id}"
        );
        assert_eq!(
            (record.outcome_code, record.outcome.as_str()),
            (*code, *outcome),
            "{request_id}"
        );
        assert_eq!(record.key_id, *key_id, "{request_id}");
        assert_eq!(record.transport, "grpc", "{request_id}");
        if key_id.is_some() {
            assert!(
                record
                    .key_prefix
                    .as_deref()
                    .is_some_and(|p| p.starts_with("lp_") && p.len() == 12),
                "{request_id}"
            );
        }
        // Served calls carry the digest of their request; refused ones were never read.
        let refused = matches!(*code, 40101 | 40301);
        assert_eq!(
            record.request_digest.is_empty(),
            refused,
            "{request_id}: digest {:?}",
            record.request_digest
        );
    }
    // The platform records of admin operations on a merchant name it.
    for request_id in ["rq-register", "rq-update"] {
        assert_eq!(
            found[request_id][0].merchant_id,
            Some(merchant_uuid),
            "{request_id}"
        );
    }
    assert_eq!(found["rq-anonymous"][0].merchant_id, None);
    assert_eq!(found["rq-acting"][0].merchant_id, Some(merchant_uuid));
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn calls_through_the_gateway_are_recorded_with_the_rest_transport_and_its_request_id() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("rest-shop").await;
    // (token sent, request id, transport recorded): only the gateway, which holds the token, may say "rest".
    let cases = [
        (
            Some(crate::helpers::TEST_GATEWAY_TOKEN),
            "gateway-req-1",
            "rest",
        ),
        (None, "client-claims-rest", "grpc"),
        (
            Some("not-the-gateway-token-00112233445566778899aabbccdd"),
            "client-guesses-token",
            "grpc",
        ),
    ];
    for (token, request_id, _) in cases {
        let key_value = MetadataValue::try_from(key.as_str()).expect("ascii");
        let mut client = pb::merchant_service_client::MerchantServiceClient::with_interceptor(
            app.channel.clone(),
            move |mut request: tonic::Request<()>| {
                let metadata = request.metadata_mut();
                metadata.insert("x-api-key", key_value.clone());
                metadata.insert("x-points-transport", MetadataValue::from_static("rest"));
                metadata.insert("x-request-id", MetadataValue::from_static(request_id));
                if let Some(token) = token {
                    metadata.insert("x-points-gateway-token", MetadataValue::from_static(token));
                }
                Ok(request)
            },
        );
        client.get_me(pb::GetMeRequest {}).await.expect("me");
    }
    let db = app.db().await;
    let request_ids: Vec<&str> = cases.iter().map(|(_, id, _)| *id).collect();
    let found =
        records_by_request_id(&db, &[tenant_table(&merchant.merchant_id)], &request_ids).await;
    for (_, request_id, transport) in cases {
        assert_eq!(found[request_id].len(), 1, "{request_id}");
        assert_eq!(found[request_id][0].transport, transport, "{request_id}");
    }
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn no_audit_record_contains_an_api_key() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("secret-shop").await;
    let created = create_key(
        &app,
        app.caller(&key),
        "second",
        &["points:read", "audit:read"],
    )
    .await;
    let rotated = app
        .keys(app.caller(&key))
        .rotate_api_key(pb::RotateApiKeyRequest {
            key_id: created.key_id.clone(),
            grace_seconds: Some(60),
        })
        .await
        .expect("rotate")
        .into_inner();
    let platform_key = create_key(&app, app.admin(), "second admin", &["admin"]).await;
    let issued = [
        app.admin_key.clone(),
        key.clone(),
        created.key.clone().expect("k"),
        rotated.api_key.and_then(|k| k.key).expect("k"),
        platform_key.key.clone().expect("k"),
    ];
    for issued_key in &issued {
        app.merchants(app.caller(issued_key))
            .get_me(pb::GetMeRequest {})
            .await
            .expect("use");
        // A key in the request id is not recorded as the request id.
        app.merchants(with_request_id(
            app.caller(issued_key),
            &format!("id-{issued_key}"),
        ))
        .get_me(pb::GetMeRequest {})
        .await
        .expect("use");
        // A refused call with the key in the wrong header, and a call to a method path carrying the key.
        let _ = app
            .merchants(with_request_id(
                app.caller(&issued_key[..issued_key.len() - 1]),
                "cut",
            ))
            .get_me(pb::GetMeRequest {})
            .await;
        let mut grpc = tonic::client::Grpc::new(app.channel.clone());
        grpc.ready().await.expect("ready");
        let path =
            http::uri::PathAndQuery::try_from(format!("/points.v1.MerchantService/{issued_key}"))
                .expect("path");
        let result: Result<tonic::Response<pb::GetMeResponse>, tonic::Status> = grpc
            .unary(
                tonic::Request::new(pb::GetMeRequest {}),
                path,
                tonic_prost::ProstCodec::default(),
            )
            .await;
        assert_status(result, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    let client = app.db().await;
    // Stopping flushes every buffered record.
    app.stop().await.expect("stop");
    let tables = [PLATFORM.to_owned(), tenant_table(&merchant.merchant_id)];
    let mut scanned = 0;
    for table in &tables {
        for row in client
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .await
            .expect("scan")
        {
            let text: String = row.get(0);
            scanned += 1;
            for issued_key in &issued {
                assert!(
                    !text.contains(issued_key.as_str()),
                    "a key is in {table}: {text}"
                );
                assert!(
                    !text.contains(&issued_key[12..]),
                    "a key's secret part is in {table}: {text}"
                );
            }
        }
    }
    assert!(
        scanned >= issued.len() * 4,
        "scanned only {scanned} records"
    );
}

#[tokio::test]
async fn a_key_creation_that_fails_at_commit_leaves_neither_key_nor_its_record() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("atomic-shop").await;
    let tenant = tenant_table(&merchant.merchant_id);
    let db = app.db().await;
    // Sabotage: a deferred constraint trigger fails the transaction at COMMIT, after the key row and its audit
    // record were both inserted.
    db.batch_execute(
        "CREATE FUNCTION public.refuse_doomed_key() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.name = 'doomed' THEN RAISE EXCEPTION 'sabotaged at commit'; END IF;
           RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER refuse_doomed_key AFTER INSERT ON public.api_keys
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse_doomed_key();",
    )
    .await
    .expect("sabotage");
    let before: i64 = db
        .query_one(
            &format!("SELECT coalesce(max(audit_id), 0) FROM {tenant}"),
            &[],
        )
        .await
        .expect("max")
        .get(0);
    let result = app
        .keys(with_request_id(app.caller(&key), "rq-doomed"))
        .create_api_key(pb::CreateApiKeyRequest {
            name: "doomed".into(),
            scopes: vec!["points:read".into()],
            expires_at: None,
        })
        .await;
    assert_status(result, Code::Internal, "INTERNAL");
    assert_eq!(
        count(&db, "public.api_keys", "name = 'doomed'").await,
        0,
        "the key survived"
    );
    let found = records_by_request_id(&db, std::slice::from_ref(&tenant), &["rq-doomed"]).await;
    let records = &found["rq-doomed"];
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].outcome_code, records[0].outcome.as_str()),
        (50001, "INTERNAL")
    );
    // The in-transaction record took an id and vanished with the key: the failure's record comes after it.
    assert!(
        records[0].audit_id > before + 1,
        "no in-transaction record was rolled back"
    );
    let verification = verify(&app, app.caller(&key), None, None).await;
    assert!(verification.ok, "{verification:?}");
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn a_key_creation_whose_audit_record_cannot_be_written_is_not_made() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("unauditable-shop").await;
    let schema = schema_of(&merchant.merchant_id);
    let db = app.db().await;
    // Sabotage: this merchant's audit refuses CreateApiKey records.
    db.batch_execute(&format!(
        "CREATE FUNCTION public.refuse_create_records() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.method LIKE '%/CreateApiKey' THEN RAISE EXCEPTION 'sabotaged audit'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_create_records BEFORE INSERT ON {schema}.audit_records
           FOR EACH ROW EXECUTE FUNCTION public.refuse_create_records();"
    ))
    .await
    .expect("sabotage");
    let result = app
        .keys(with_request_id(app.caller(&key), "rq-unaudited"))
        .create_api_key(pb::CreateApiKeyRequest {
            name: "unaudited".into(),
            scopes: vec!["points:read".into()],
            expires_at: None,
        })
        .await;
    assert_status(result, Code::Internal, "INTERNAL");
    assert_eq!(
        count(&db, "public.api_keys", "name = 'unaudited'").await,
        0,
        "a key was made without its record"
    );
    // The failure's own record cannot go to the merchant's audit either, so it lands in the platform audit.
    let found = records_by_request_id(
        &db,
        &[PLATFORM.to_owned(), tenant_table(&merchant.merchant_id)],
        &["rq-unaudited"],
    )
    .await;
    let records = &found["rq-unaudited"];
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].table, PLATFORM);
    assert_eq!(
        records[0].merchant_id,
        Some(Uuid::parse_str(&merchant.merchant_id).expect("uuid"))
    );
    assert_eq!(records[0].outcome_code, 50001);
    app.stop().await.expect("stop");
}

/// Makes `calls` GetMe calls and waits until they and every earlier record are sealed; returns the chain's
/// records in seq order.
async fn settled_chain(app: &TestApp, key: &str, table: &str, calls: usize) -> Vec<Stored> {
    let db = app.db().await;
    let before = count(&db, table, "true").await;
    for _ in 0..calls {
        app.merchants(app.caller(key))
            .get_me(pb::GetMeRequest {})
            .await
            .expect("me");
    }
    let existing = before + calls as i64;
    wait_until_settled_count(&db, table, existing).await;
    let verification = verify(app, app.caller(key), None, None).await;
    assert!(verification.ok, "untouched chain: {verification:?}");
    // The verification's own record comes after; wait until it is written and sealed, so nothing moves.
    wait_until_settled(&db, table, existing + 1).await;
    let mut records = records_in(&db, table, "true").await;
    records.sort_by_key(|record| record.seq);
    records
}

async fn tamper(app: &TestApp, sql: &str) {
    let db = app.db().await;
    // A superuser can switch triggers off for its session; the chain is what still catches the change.
    db.batch_execute(&format!("SET session_replication_role = replica; {sql}"))
        .await
        .expect("tamper");
}

#[tokio::test]
async fn updating_an_audit_record_is_detected_at_that_record() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("updated-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    let records = settled_chain(&app, &key, &table, 6).await;
    let target = &records[2];
    // Without the trigger switched off, the database refuses the change itself.
    let refused = app
        .db()
        .await
        .batch_execute(&format!(
            "UPDATE {table} SET outcome_code = 0 WHERE audit_id = {}",
            target.audit_id
        ))
        .await;
    assert!(
        refused.is_err(),
        "the seal-only trigger let an update through"
    );
    tamper(
        &app,
        &format!(
            "UPDATE {table} SET latency_us = latency_us + 1 WHERE audit_id = {}",
            target.audit_id
        ),
    )
    .await;
    let verification = verify(&app, app.caller(&key), None, None).await;
    assert!(!verification.ok);
    assert_eq!(
        verification.first_bad_audit_id,
        Some(target.audit_id.to_string())
    );
    assert_eq!(verification.checked, 2);
    assert!(
        verification
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("hash")),
        "{verification:?}"
    );
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn deleting_an_audit_record_is_detected_at_the_record_after_the_gap() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("deleted-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    let records = settled_chain(&app, &key, &table, 6).await;
    tamper(
        &app,
        &format!(
            "DELETE FROM {table} WHERE audit_id = {}",
            records[3].audit_id
        ),
    )
    .await;
    let verification = verify(&app, app.caller(&key), None, None).await;
    assert!(!verification.ok);
    assert_eq!(
        verification.first_bad_audit_id,
        Some(records[4].audit_id.to_string())
    );
    assert!(
        verification
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("gap")),
        "{verification:?}"
    );
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn deleting_the_newest_audit_records_is_detected_against_the_chain_head() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("truncated-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    let records = settled_chain(&app, &key, &table, 4).await;
    let last = records.last().expect("records");
    tamper(
        &app,
        &format!("DELETE FROM {table} WHERE audit_id = {}", last.audit_id),
    )
    .await;
    let verification = verify(&app, app.caller(&key), None, None).await;
    assert!(!verification.ok);
    assert_eq!(
        verification.first_bad_audit_id,
        Some(last.audit_id.to_string())
    );
    assert!(
        verification
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("end of the chain")),
        "{verification:?}"
    );
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn tampering_with_the_platform_audit_is_detected() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.register_merchant(&format!("platform-{i}")).await;
    }
    let db = app.db().await;
    let existing = count(&db, PLATFORM, "true").await;
    assert!(verify(&app, app.admin(), None, None).await.ok);
    wait_until_settled(&db, PLATFORM, existing + 1).await;
    let mut records = records_in(&db, PLATFORM, "true").await;
    records.sort_by_key(|record| record.seq);
    let target = &records[1];
    tamper(
        &app,
        &format!(
            "UPDATE {PLATFORM} SET method = '/points.v1.MerchantService/GetMe' WHERE audit_id = {}",
            target.audit_id
        ),
    )
    .await;
    let verification = verify(&app, app.admin(), None, None).await;
    assert!(!verification.ok);
    assert_eq!(
        verification.first_bad_audit_id,
        Some(target.audit_id.to_string())
    );
    app.stop().await.expect("stop");
}

/// Writes a ledger entry and the record listing it the way a mutation does, through `record_in_transaction`
/// (the ledger itself is tested against this path once it lands). Returns (entry id, audit id).
async fn write_entry_with_record(
    app: &TestApp,
    merchant_id: &str,
    key_id: &str,
    uid: &str,
    points: i64,
) -> (i64, i64) {
    let merchant_id = Uuid::parse_str(merchant_id).expect("uuid");
    let schema = TenantSchema::for_merchant(merchant_id);
    let auth = AuthContext {
        key_id: Uuid::parse_str(key_id).expect("uuid"),
        key_prefix: "lp_live_Test".into(),
        scopes: Scope::MERCHANT.to_vec(),
        merchant: Some(MerchantContext {
            merchant_id,
            schema: schema.clone(),
        }),
    };
    let call = Arc::new(CallContext::new(
        format!("entry-{uid}"),
        "/points.v1.PointsService/Earn".into(),
        Transport::Grpc,
        auth,
    ));
    let mut client = app.services.pool.get().await.expect("client");
    let transaction = begin_tenant_transaction(&mut client, &schema)
        .await
        .expect("transaction");
    let entry_id: i64 = transaction
        .query_one(
            "INSERT INTO entries (uid, kind, delta, balance_after, idempotency_key, metadata) \
             VALUES ($1, 'earn', $2, $2, $3, '{\"source\": \"test\"}'::jsonb) RETURNING entry_id",
            &[&uid, &points, &format!("idem-{uid}")],
        )
        .await
        .expect("entry")
        .get(0);
    {
        let mut notes = call.notes();
        notes.entry_ids.push(entry_id);
        notes.uid = Some(uid.to_owned());
        notes.points = Some(points);
        notes.request_digest = Some("test".into());
    }
    record_in_transaction(&transaction, &call)
        .await
        .expect("record");
    transaction.commit().await.expect("commit");
    let audit_id = call.notes().in_transaction_audit_id.expect("audit id");
    (entry_id, audit_id)
}

#[tokio::test]
async fn changing_a_ledger_entry_is_detected_at_the_record_that_lists_it() {
    let app = spawn_app().await;
    let response = app
        .merchants(app.admin())
        .register_merchant(pb::RegisterMerchantRequest {
            slug: "ledger-shop".into(),
            name: "Ledger".into(),
        })
        .await
        .expect("register")
        .into_inner();
    let merchant = response.merchant.expect("merchant");
    let key = response.api_key.expect("key");
    let plaintext = key.key.clone().expect("plaintext");
    let mut audit_ids = Vec::new();
    let mut entry_ids = Vec::new();
    for (uid, points) in [("alice", 100), ("bob", 50), ("carol", 75)] {
        let (entry_id, audit_id) =
            write_entry_with_record(&app, &merchant.merchant_id, &key.key_id, uid, points).await;
        entry_ids.push(entry_id);
        audit_ids.push(audit_id);
    }
    let verification = verify(&app, app.caller(&plaintext), None, None).await;
    assert!(verification.ok, "{verification:?}");
    // Sealing digested the entry the record lists.
    let db = app.db().await;
    let stored = records_in(
        &db,
        &tenant_table(&merchant.merchant_id),
        &format!("audit_id = {}", audit_ids[1]),
    )
    .await;
    assert_eq!(stored[0].entry_ids, vec![entry_ids[1]]);
    assert!(
        stored[0]
            .entries_digest
            .as_deref()
            .is_some_and(|d| d.len() == 64)
    );
    assert_eq!(stored[0].uid.as_deref(), Some("bob"));

    let schema = schema_of(&merchant.merchant_id);
    db.batch_execute(&format!(
        "ALTER TABLE {schema}.entries DISABLE TRIGGER entries_no_update;
         UPDATE {schema}.entries SET delta = 5000, balance_after = 5000 WHERE entry_id = {};
         ALTER TABLE {schema}.entries ENABLE TRIGGER entries_no_update;",
        entry_ids[1]
    ))
    .await
    .expect("tamper");
    let verification = verify(&app, app.caller(&plaintext), None, None).await;
    assert!(!verification.ok);
    assert_eq!(
        verification.first_bad_audit_id,
        Some(audit_ids[1].to_string())
    );
    assert!(
        verification
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("entr")),
        "{verification:?}"
    );
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn ten_thousand_concurrent_calls_leave_a_complete_chain_that_verifies_clean() {
    let _heavy = crate::helpers::heavy_test().await;
    const CALLS: usize = 10_000;
    const IN_FLIGHT: usize = 64;
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("busy-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    let app = &app;
    let key = key.as_str();
    let failures: usize = stream::iter(0..CALLS)
        .map(|i| async move {
            let caller = app.caller(key);
            // Mostly cheap reads (buffered), some key creations and earns (in-transaction records committing out
            // of id order with the batches) and some verifications (sealing while everything else is written).
            let result = match i % 100 {
                0 => app
                    .keys(caller)
                    .create_api_key(pb::CreateApiKeyRequest {
                        name: format!("k{i}"),
                        scopes: vec!["points:read".into()],
                        expires_at: None,
                    })
                    .await
                    .map(drop),
                50 if i % 1000 == 50 => app
                    .audit(caller)
                    .verify_audit_log(pb::VerifyAuditLogRequest::default())
                    .await
                    .map(|r| {
                        assert!(r.into_inner().ok, "verification during load failed");
                    }),
                // Earns on a few dozen uids: in-transaction records listing entries, contending on accounts.
                n if n % 10 == 1 => app
                    .points(caller)
                    .earn(earn(&format!("u{}", i % 37), 1, &format!("load-{i}")))
                    .await
                    .map(drop),
                n if n % 2 == 0 => app
                    .merchants(caller)
                    .get_me(pb::GetMeRequest {})
                    .await
                    .map(drop),
                _ => app
                    .keys(caller)
                    .list_api_keys(pb::ListApiKeysRequest::default())
                    .await
                    .map(drop),
            };
            usize::from(result.is_err())
        })
        .buffer_unordered(IN_FLIGHT)
        .fold(0, |total, failed| async move { total + failed })
        .await;
    assert_eq!(failures, 0);
    let db = app.db().await;
    let deadline = Instant::now() + WAIT_MAX;
    while count(&db, &table, "true").await < CALLS as i64 {
        assert!(Instant::now() < deadline, "records missing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count(&db, &table, "true").await,
        CALLS as i64,
        "one record per call"
    );
    // Every earn's record (1 call in 10) lists its entry.
    let earns = (0..CALLS).filter(|i| i % 10 == 1).count() as i64;
    assert_eq!(
        count(&db, &table, "cardinality(entry_ids) = 1").await,
        earns
    );
    let verification = verify(app, app.caller(key), None, None).await;
    assert!(verification.ok, "{verification:?}");
    assert_eq!(verification.checked, CALLS as i64);
    let seqs: Vec<i64> = db
        .query(&format!("SELECT seq FROM {table} ORDER BY seq"), &[])
        .await
        .expect("seqs")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        seqs,
        (1..=CALLS as i64).collect::<Vec<_>>(),
        "consecutive seq numbers"
    );
}

#[tokio::test]
async fn two_instances_writing_and_sealing_one_chain_keep_it_whole() {
    // Two instances and 32 calls in flight: never beside the other heavy tests (on 2 cores their lock and pool waits
    // would pass the bounds and answer UNAVAILABLE).
    let _heavy = crate::helpers::heavy_test().await;
    const CALLS: usize = 600;
    let first = spawn_app().await;
    let second = spawn_second_instance(&first).await;
    let (merchant, key) = first.register_merchant("shared-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    let (first_ref, second_ref, key) = (&first, &second, key.as_str());
    stream::iter(0..CALLS)
        .map(|i| async move {
            // Both instances buffer, write and seal the same merchant's chain.
            let app = if i % 2 == 0 { first_ref } else { second_ref };
            if i % 3 == 0 {
                let request = earn(&format!("u{}", i % 7), 1, &format!("two-{i}"));
                app.points(app.caller(key)).earn(request).await.map(drop)
            } else {
                app.merchants(app.caller(key))
                    .get_me(pb::GetMeRequest {})
                    .await
                    .map(drop)
            }
        })
        .buffer_unordered(32)
        .for_each(|result| async move { result.expect("call") })
        .await;
    let db = first.db().await;
    wait_until_settled_count(&db, &table, CALLS as i64).await;
    assert_eq!(count(&db, &table, "true").await, CALLS as i64);
    let verification = verify(&second, second.caller(key), None, None).await;
    assert!(verification.ok, "{verification:?}");
    assert_eq!(verification.checked, CALLS as i64);
    second.stop().await.expect("stop second");
    first.stop().await.expect("stop first");
}

#[tokio::test]
async fn a_graceful_stop_flushes_every_buffered_record_and_seals_it() {
    // A flush interval far longer than the test: only the shutdown flush can write these records.
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_AUDIT_FLUSH_MS".into(), "60000".into());
    })
    .await;
    let (merchant, key) = app.register_merchant("stopping-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    const CALLS: i64 = 40;
    for i in 0..CALLS {
        let caller = with_request_id(app.caller(&key), &format!("stop-{i}"));
        app.merchants(caller)
            .get_me(pb::GetMeRequest {})
            .await
            .expect("me");
    }
    let db = app.db().await;
    assert_eq!(
        count(&db, &table, "true").await,
        0,
        "records were written before the stop"
    );
    app.stop().await.expect("graceful stop");
    assert_eq!(count(&db, &table, "request_id LIKE 'stop-%'").await, CALLS);
    assert_eq!(
        count(&db, &table, "seq IS NULL").await,
        0,
        "records left unsealed"
    );
}

#[tokio::test]
async fn a_full_buffer_slows_calls_down_instead_of_losing_records() {
    let app = spawn_app_with(|settings| {
        settings.insert("POINTS_AUDIT_BUFFER_CAPACITY".into(), "8".into());
    })
    .await;
    let (merchant, key) = app.register_merchant("crowded-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    const CALLS: usize = 300;
    let app = &app;
    let key = key.as_str();
    stream::iter(0..CALLS)
        .map(|_| async move {
            app.merchants(app.caller(key))
                .get_me(pb::GetMeRequest {})
                .await
                .expect("me")
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let db = app.db().await;
    let deadline = Instant::now() + WAIT_MAX;
    while count(&db, &table, "true").await < CALLS as i64 {
        assert!(Instant::now() < deadline, "records were lost");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&db, &table, "true").await, CALLS as i64);
}

#[tokio::test]
async fn audit_logs_are_filtered_paginated_newest_first_and_scoped_to_the_caller() {
    let app = spawn_app().await;
    let response = app
        .merchants(app.admin())
        .register_merchant(pb::RegisterMerchantRequest {
            slug: "queried-shop".into(),
            name: "Queried".into(),
        })
        .await
        .expect("register")
        .into_inner();
    let merchant = response.merchant.expect("merchant");
    let merchant_key = response.api_key.expect("key");
    let key = merchant_key.key.clone().expect("plaintext");
    let (_, other_key) = app.register_merchant("other-queried-shop").await;
    app.merchants(app.caller(&other_key))
        .get_me(pb::GetMeRequest {})
        .await
        .expect("other merchant's call");
    let reader = create_key(&app, app.caller(&key), "reader", &["points:read"]).await;
    for _ in 0..3 {
        app.merchants(app.caller(&key))
            .get_me(pb::GetMeRequest {})
            .await
            .expect("me");
    }
    for _ in 0..2 {
        let denied = app
            .keys(app.caller(reader.key.as_deref().expect("k")))
            .list_api_keys(pb::ListApiKeysRequest::default())
            .await;
        assert_status(denied, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    write_entry_with_record(
        &app,
        &merchant.merchant_id,
        &merchant_key.key_id,
        "dora",
        10,
    )
    .await;
    let db = app.db().await;
    let table = tenant_table(&merchant.merchant_id);
    // register is platform; create key + 3 GetMe + 2 denials + the entry record here.
    wait_until_settled_count(&db, &table, 7).await;

    let mut audit = app.audit(app.caller(&key));
    let list = |request: pb::ListAuditLogsRequest| {
        let mut audit = app.audit(app.caller(&key));
        async move {
            audit
                .list_audit_logs(request)
                .await
                .expect("list")
                .into_inner()
        }
    };
    let all = list(pb::ListAuditLogsRequest::default()).await.items;
    assert_eq!(all.len(), 7, "{all:#?}");
    // Newest first by the time of the call (buffered records get their ids when written, so not by id).
    let keys: Vec<(i64, i32, i64)> = all
        .iter()
        .map(|r| {
            let at = r.occurred_at.expect("time");
            (at.seconds, at.nanos, r.audit_id.parse().expect("id"))
        })
        .collect();
    let mut newest_first = keys.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(keys, newest_first, "newest first");
    assert!(
        all.iter()
            .all(|r| r.merchant_id.as_deref() == Some(merchant.merchant_id.as_str())),
        "only this merchant's records"
    );

    let by_method = list(pb::ListAuditLogsRequest {
        method: Some("/points.v1.MerchantService/GetMe".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_method.items.len(), 3);
    let denied = list(pb::ListAuditLogsRequest {
        outcome_code: Some(40301),
        ..Default::default()
    })
    .await;
    assert_eq!(denied.items.len(), 2);
    assert!(
        denied
            .items
            .iter()
            .all(|r| r.outcome == "PERMISSION_DENIED")
    );
    let by_key = list(pb::ListAuditLogsRequest {
        key_id: Some(reader.key_id.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_key.items.len(), 2);
    let by_uid = list(pb::ListAuditLogsRequest {
        uid: Some("dora".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_uid.items.len(), 1);
    assert_eq!(by_uid.items[0].points, Some(10));
    assert_eq!(by_uid.items[0].entry_ids.len(), 1);
    // Time range: from inclusive, to exclusive. The list calls above are newer than all seven, so an upper bound
    // just after the newest keeps the set fixed.
    let oldest = all.last().expect("records").occurred_at.expect("time");
    let newest = all.first().expect("records").occurred_at.expect("time");
    let after = |at: prost_types::Timestamp| {
        let nanos = at.nanos + 1000;
        prost_types::Timestamp {
            seconds: at.seconds + i64::from(nanos / 1_000_000_000),
            nanos: nanos % 1_000_000_000,
        }
    };
    let range =
        |from: prost_types::Timestamp, to: prost_types::Timestamp| pb::ListAuditLogsRequest {
            from: Some(from),
            to: Some(to),
            ..Default::default()
        };
    assert_eq!(
        list(range(oldest, after(newest))).await.items,
        all,
        "from is inclusive"
    );
    let without_newest = list(range(oldest, newest)).await.items;
    assert_eq!(without_newest, all[1..].to_vec(), "to is exclusive");
    let without_oldest = list(range(after(oldest), after(newest))).await.items;
    assert_eq!(without_oldest, all[..6].to_vec());
    let empty_range = audit.list_audit_logs(range(newest, oldest)).await;
    assert_status(empty_range, Code::InvalidArgument, "INVALID_ARGUMENT");

    // Pages of 3 give the same records in the same order.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(pb::ListAuditLogsRequest {
            page_size: 3,
            page_token: token.clone(),
            ..range(oldest, after(newest))
        })
        .await;
        assert!(page.items.len() <= 3);
        paged.extend(page.items.into_iter().map(|r| r.audit_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        paged,
        all.iter().map(|r| r.audit_id.clone()).collect::<Vec<_>>()
    );

    let one = audit
        .get_audit_log(pb::GetAuditLogRequest {
            audit_id: all[0].audit_id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(one, all[0]);
    for (bad, code, reason) in [
        ("abc", Code::InvalidArgument, "INVALID_ARGUMENT"),
        ("0", Code::InvalidArgument, "INVALID_ARGUMENT"),
        ("987654", Code::NotFound, "NOT_FOUND"),
    ] {
        assert_status(
            audit
                .get_audit_log(pb::GetAuditLogRequest {
                    audit_id: bad.into(),
                })
                .await,
            code,
            reason,
        );
    }
    for request in [
        pb::ListAuditLogsRequest {
            key_id: Some("not-a-uuid".into()),
            ..Default::default()
        },
        pb::ListAuditLogsRequest {
            uid: Some(String::new()),
            ..Default::default()
        },
        pb::ListAuditLogsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        },
        pb::ListAuditLogsRequest {
            page_size: 501,
            ..Default::default()
        },
    ] {
        assert_status(
            audit.list_audit_logs(request).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
    // The admin reads the platform audit without x-merchant-id, and the merchant's with it.
    let platform = app
        .audit(app.admin())
        .list_audit_logs(pb::ListAuditLogsRequest::default())
        .await
        .expect("platform")
        .into_inner();
    assert!(
        platform
            .items
            .iter()
            .any(|r| r.method.ends_with("/RegisterMerchant")
                && r.merchant_id.as_deref() == Some(merchant.merchant_id.as_str()))
    );
    assert!(
        platform
            .items
            .iter()
            .all(|r| r.key_id.as_deref() != Some(merchant_key.key_id.as_str())),
        "merchant calls leaked into the platform audit"
    );
    let mut acting = app.admin();
    acting.merchant_id = Some(merchant.merchant_id.clone());
    let as_admin = app
        .audit(acting)
        .list_audit_logs(pb::ListAuditLogsRequest::default())
        .await
        .expect("acting")
        .into_inner();
    assert!(as_admin.items.len() >= 7);
    assert!(
        as_admin
            .items
            .iter()
            .all(|r| r.merchant_id.as_deref() == Some(merchant.merchant_id.as_str()))
    );
    // Without audit:read: refused.
    let refused = app
        .audit(app.caller(reader.key.as_deref().expect("k")))
        .list_audit_logs(pb::ListAuditLogsRequest::default())
        .await;
    assert_status(refused, Code::PermissionDenied, "PERMISSION_DENIED");
    app.stop().await.expect("stop");
}

/// Waits until `table` holds at least `expected` records.
async fn wait_until_settled_count(db: &tokio_postgres::Client, table: &str, expected: i64) {
    let deadline = Instant::now() + WAIT_MAX;
    while count(db, table, "true").await < expected {
        assert!(
            Instant::now() < deadline,
            "{table}: fewer than {expected} records"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_range_of_the_chain_can_be_verified_on_its_own() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("ranged-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    let records = settled_chain(&app, &key, &table, 8).await;
    let (from, to) = (&records[2], &records[6]);
    let verification = verify(
        &app,
        app.caller(&key),
        Some(from.audit_id),
        Some(to.audit_id),
    )
    .await;
    assert!(verification.ok, "{verification:?}");
    assert_eq!(verification.checked, 5);
    let mut audit = app.audit(app.caller(&key));
    let backwards = audit
        .verify_audit_log(pb::VerifyAuditLogRequest {
            from_audit_id: Some(to.audit_id.to_string()),
            to_audit_id: Some(from.audit_id.to_string()),
            full: false,
        })
        .await;
    assert_status(backwards, Code::InvalidArgument, "INVALID_ARGUMENT");
    let unknown = audit
        .verify_audit_log(pb::VerifyAuditLogRequest {
            from_audit_id: Some("999999".into()),
            to_audit_id: None,
            full: false,
        })
        .await;
    assert_status(unknown, Code::NotFound, "NOT_FOUND");
    let malformed = audit
        .verify_audit_log(pb::VerifyAuditLogRequest {
            from_audit_id: Some("x".into()),
            to_audit_id: None,
            full: false,
        })
        .await;
    assert_status(malformed, Code::InvalidArgument, "INVALID_ARGUMENT");
    // A change outside the range does not fail it; inside it does.
    tamper(
        &app,
        &format!(
            "UPDATE {table} SET latency_us = 1 WHERE audit_id = {}",
            records[7].audit_id
        ),
    )
    .await;
    assert!(
        verify(
            &app,
            app.caller(&key),
            Some(from.audit_id),
            Some(to.audit_id)
        )
        .await
        .ok
    );
    tamper(
        &app,
        &format!(
            "UPDATE {table} SET latency_us = 1 WHERE audit_id = {}",
            records[4].audit_id
        ),
    )
    .await;
    let verification = verify(
        &app,
        app.caller(&key),
        Some(from.audit_id),
        Some(to.audit_id),
    )
    .await;
    assert_eq!(
        verification.first_bad_audit_id,
        Some(records[4].audit_id.to_string())
    );
    assert_eq!(verification.checked, 2);
    app.stop().await.expect("stop");
}

// ---- Through the points ledger and the conversion rules. ----

fn earn(uid: &str, points: i64, idempotency_key: &str) -> pb::EarnRequest {
    pb::EarnRequest {
        uid: uid.into(),
        points: Some(points),
        idempotency_key: idempotency_key.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_earn_its_replay_and_a_conflicting_reuse_produce_one_record_each() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("earning-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    let mut points = app.points(with_request_id(app.caller(&key), "rq-earn"));
    let earned = points
        .earn(earn("erin", 100, "idem-1"))
        .await
        .expect("earn")
        .into_inner();
    let entry_id: i64 = earned
        .entry
        .expect("entry")
        .entry_id
        .parse()
        .expect("entry id");
    let replay = app
        .points(with_request_id(app.caller(&key), "rq-replay"))
        .earn(earn("erin", 100, "idem-1"))
        .await
        .expect("replay");
    assert!(replay.into_inner().replayed);
    let conflict = app
        .points(with_request_id(app.caller(&key), "rq-conflict"))
        .earn(earn("erin", 7, "idem-1"))
        .await;
    assert_status(conflict, Code::AlreadyExists, "IDEMPOTENCY_CONFLICT");
    let invalid = app
        .points(with_request_id(app.caller(&key), "rq-earn-invalid"))
        .earn(earn("erin", -5, "idem-2"))
        .await;
    assert_status(invalid, Code::InvalidArgument, "INVALID_ARGUMENT");
    let db = app.db().await;
    let found = records_by_request_id(
        &db,
        std::slice::from_ref(&table),
        &["rq-earn", "rq-replay", "rq-conflict", "rq-earn-invalid"],
    )
    .await;
    for (request_id, code) in [
        ("rq-earn", 0),
        ("rq-replay", 0),
        ("rq-conflict", 40902),
        ("rq-earn-invalid", 40001),
    ] {
        assert_eq!(
            found[request_id].len(),
            1,
            "{request_id}: {:?}",
            found[request_id]
        );
        assert_eq!(found[request_id][0].outcome_code, code, "{request_id}");
    }
    let earn_record = &found["rq-earn"][0];
    assert_eq!(earn_record.entry_ids, vec![entry_id]);
    assert_eq!(earn_record.uid.as_deref(), Some("erin"));
    assert!(
        found["rq-replay"][0].entry_ids.is_empty(),
        "a replay creates no entry"
    );
    assert!(verify(&app, app.caller(&key), None, None).await.ok);
    let sealed = records_in(&db, &table, &format!("audit_id = {}", earn_record.audit_id)).await;
    assert!(sealed[0].entries_digest.is_some() && sealed[0].seq.is_some());
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn an_earn_that_fails_after_its_entry_is_written_leaves_neither_entry_nor_record() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("failing-earn-shop").await;
    let schema = schema_of(&merchant.merchant_id);
    let db = app.db().await;
    // Sabotage: entries for this uid fail the transaction at COMMIT, after the entry and its record were written.
    db.batch_execute(&format!(
        "CREATE FUNCTION public.refuse_doomed_entry() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.uid = 'doomed' THEN RAISE EXCEPTION 'sabotaged at commit'; END IF;
           RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER refuse_doomed_entry AFTER INSERT ON {schema}.entries
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse_doomed_entry();"
    ))
    .await
    .expect("sabotage");
    let result = app
        .points(with_request_id(app.caller(&key), "rq-doomed-earn"))
        .earn(earn("doomed", 10, "idem-doomed"))
        .await;
    assert_status(result, Code::Internal, "INTERNAL");
    assert_eq!(
        count(&db, &format!("{schema}.entries"), "uid = 'doomed'").await,
        0
    );
    let found = records_by_request_id(
        &db,
        &[tenant_table(&merchant.merchant_id)],
        &["rq-doomed-earn"],
    )
    .await;
    assert_eq!(found["rq-doomed-earn"].len(), 1);
    assert_eq!(found["rq-doomed-earn"][0].outcome_code, 50001);
    assert!(found["rq-doomed-earn"][0].entry_ids.is_empty());
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn changing_the_delta_of_an_earned_entry_is_detected() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("earned-tamper-shop").await;
    let schema = schema_of(&merchant.merchant_id);
    let mut points = app.points(app.caller(&key));
    let mut entry_ids = Vec::new();
    for i in 0..3 {
        let response = points
            .earn(earn("frank", 10 + i, &format!("idem-{i}")))
            .await
            .expect("earn")
            .into_inner();
        entry_ids.push(response.entry.expect("entry").entry_id);
    }
    assert!(verify(&app, app.caller(&key), None, None).await.ok);
    let db = app.db().await;
    let record = records_in(
        &db,
        &tenant_table(&merchant.merchant_id),
        &format!("{} = ANY(entry_ids)", entry_ids[1]),
    )
    .await;
    tamper(
        &app,
        &format!(
            "UPDATE {schema}.entries SET delta = 999 WHERE entry_id = {}",
            entry_ids[1]
        ),
    )
    .await;
    let verification = verify(&app, app.caller(&key), None, None).await;
    assert!(!verification.ok);
    assert_eq!(
        verification.first_bad_audit_id,
        Some(record[0].audit_id.to_string())
    );
    app.stop().await.expect("stop");
}

/// (amount, currency, rule code, rule version, points, uid, outcome code, number of entry ids) of a record.
type Facts = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<i64>,
    Option<String>,
    i32,
    i32,
);

async fn facts(db: &tokio_postgres::Client, table: &str, request_id: &str) -> Facts {
    let sql = format!(
        "SELECT amount::text, currency, rule_code, rule_version, points, uid, outcome_code, \
         cardinality(entry_ids) FROM {table} WHERE request_id = '{request_id}'"
    );
    let row = db.query_one(&sql, &[]).await.expect("facts");
    (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
        row.get(7),
    )
}

#[tokio::test]
async fn conversions_reads_and_ledger_refusals_record_their_facts() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("converting-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    let caller = |request_id: &str| with_request_id(app.caller(&key), request_id);
    app.rules(caller("rq-put-rule"))
        .put_rule(pb::PutRuleRequest {
            code: "default".into(),
            currency: "EUR".into(),
            unit_amount: "1".into(),
            points_per_unit: 10,
            rounding: "floor".into(),
            ..Default::default()
        })
        .await
        .expect("put rule");
    app.points(caller("rq-calculate"))
        .calculate(pb::CalculateRequest {
            amount: "2.50".into(),
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .expect("calculate");
    app.points(caller("rq-earn-amount"))
        .earn(pb::EarnRequest {
            uid: "gina".into(),
            amount: Some("12.50".into()),
            currency: Some("EUR".into()),
            idempotency_key: "idem-amount".into(),
            ..Default::default()
        })
        .await
        .expect("earn by amount");
    app.points(caller("rq-account"))
        .get_account(pb::GetAccountRequest { uid: "gina".into() })
        .await
        .expect("account");
    let short = app
        .points(caller("rq-short"))
        .spend(pb::SpendRequest {
            uid: "gina".into(),
            points: 1_000_000,
            idempotency_key: "idem-short".into(),
            ..Default::default()
        })
        .await;
    assert_status(short, Code::FailedPrecondition, "INSUFFICIENT_POINTS");
    let db = app.db().await;
    let ids = [
        "rq-put-rule",
        "rq-calculate",
        "rq-earn-amount",
        "rq-account",
        "rq-short",
    ];
    let found = records_by_request_id(&db, std::slice::from_ref(&table), &ids).await;
    for id in ids {
        assert_eq!(found[id].len(), 1, "{id}: {:?}", found[id]);
    }
    let calculate = facts(&db, &table, "rq-calculate").await;
    assert_eq!(
        calculate,
        (
            Some("2.50".into()),
            Some("EUR".into()),
            Some("default".into()),
            Some(1),
            Some(25),
            None,
            0,
            0
        )
    );
    let earned = facts(&db, &table, "rq-earn-amount").await;
    assert_eq!(
        earned,
        (
            Some("12.50".into()),
            Some("EUR".into()),
            Some("default".into()),
            Some(1),
            Some(125),
            Some("gina".into()),
            0,
            1
        )
    );
    let put = facts(&db, &table, "rq-put-rule").await;
    assert_eq!((put.2.as_deref(), put.3), (Some("default"), Some(1)));
    let account = facts(&db, &table, "rq-account").await;
    assert_eq!((account.5.as_deref(), account.6), (Some("gina"), 0));
    let short = facts(&db, &table, "rq-short").await;
    assert_eq!((short.6, short.7), (42201, 0));
    assert!(verify(&app, app.caller(&key), None, None).await.ok);
    app.stop().await.expect("stop");
}

/// The default (incremental) verification of the merchant's chain.
async fn verify_since_last(app: &TestApp, key: &str) -> pb::VerifyAuditLogResponse {
    app.audit(app.caller(key))
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .expect("verify")
        .into_inner()
}

#[tokio::test]
async fn verification_continues_from_where_the_last_good_one_ended() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("incremental-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    // settled_chain verifies the whole chain (full) once; its position is remembered.
    let records = settled_chain(&app, &key, &table, 5).await;
    let db = app.db().await;
    let length = records.len() as i64;
    let more = 7;
    for _ in 0..more {
        app.merchants(app.caller(&key))
            .get_me(pb::GetMeRequest {})
            .await
            .expect("me");
    }
    wait_until_settled_count(&db, &table, length + more).await;
    let verification = verify_since_last(&app, &key).await;
    assert!(verification.ok, "{verification:?}");
    assert!(!verification.full);
    // Only what was sealed since: the 7 calls (and nothing before them).
    assert!(
        (more..=more + 1).contains(&verification.checked),
        "{verification:?}"
    );
    assert!(verification.chain_length >= length + more);
    assert!(verification.verified_at.is_some());

    // A change to an older record is out of the incremental pass's reach, by design; a full pass finds it.
    tamper(
        &app,
        &format!(
            "UPDATE {table} SET latency_us = latency_us + 1 WHERE audit_id = {}",
            records[1].audit_id
        ),
    )
    .await;
    assert!(verify_since_last(&app, &key).await.ok);
    let full = app
        .audit(app.caller(&key))
        .verify_audit_log(pb::VerifyAuditLogRequest {
            full: true,
            ..Default::default()
        })
        .await
        .expect("verify")
        .into_inner();
    assert!(!full.ok);
    assert!(full.full);
    assert_eq!(
        full.first_bad_audit_id,
        Some(records[1].audit_id.to_string())
    );
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn a_change_at_the_remembered_position_sends_verification_back_to_the_start() {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("junction-shop").await;
    let table = tenant_table(&merchant.merchant_id);
    settled_chain(&app, &key, &table, 4).await;
    let db = app.db().await;
    let remembered: i64 = db
        .query_one(
            &format!(
                "SELECT verified_seq FROM {}.audit_verification",
                schema_of(&merchant.merchant_id)
            ),
            &[],
        )
        .await
        .expect("position")
        .get(0);
    let junction = records_in(&db, &table, &format!("seq = {remembered}")).await;
    tamper(
        &app,
        &format!(
            "UPDATE {table} SET record_hash = decode(repeat('ab', 32), 'hex') WHERE seq = {remembered}"
        ),
    )
    .await;
    let verification = verify_since_last(&app, &key).await;
    assert!(!verification.ok, "{verification:?}");
    assert!(verification.full, "the position could not be trusted");
    assert_eq!(
        verification.first_bad_audit_id,
        Some(junction[0].audit_id.to_string())
    );
    app.stop().await.expect("stop");
}
