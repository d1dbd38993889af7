//! The service spine: tenancy, registration, keys, auth, migrations.

use std::time::{Duration, Instant};

use points::pb;
use tonic::Code;

use crate::helpers::{assert_status, expire_key_now, spawn_app, spawn_second_instance};

async fn schemas(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'merchant\\_%' ORDER BY 1",
            &[],
        )
        .await
        .expect("schemas")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn registering_two_merchants_creates_two_migrated_schemas() {
    let app = spawn_app().await;
    let (first, _) = app.register_merchant("first-shop").await;
    let (second, _) = app.register_merchant("second-shop").await;
    let db = app.db().await;
    let names = schemas(&db).await;
    assert_eq!(names.len(), 2);
    for merchant in [&first, &second] {
        let schema = format!("merchant_{}", merchant.merchant_id.replace('-', ""));
        assert!(names.contains(&schema), "{schema} missing from {names:?}");
        let tables: Vec<String> = db
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
                &[&schema],
            )
            .await
            .expect("tables")
            .iter()
            .map(|row| row.get(0))
            .collect();
        for table in [
            "accounts",
            "entries",
            "lots",
            "idempotency_records",
            "rule_versions",
            "audit_records",
            "refinery_schema_history",
        ] {
            assert!(
                tables.iter().any(|t| t == table),
                "{table} missing in {schema}: {tables:?}"
            );
        }
    }
}

#[tokio::test]
async fn duplicate_slugs_and_bad_input_are_refused_without_leftovers() {
    let app = spawn_app().await;
    app.register_merchant("taken").await;
    let mut merchants = app.merchants(app.admin());
    let result = merchants
        .register_merchant(pb::RegisterMerchantRequest {
            slug: "taken".into(),
            name: "Again".into(),
        })
        .await;
    assert_status(result, Code::AlreadyExists, "ALREADY_EXISTS");
    for (slug, name) in [
        ("x", "Name"),
        ("UPPER", "Name"),
        ("fine-slug", ""),
        ("fine-slug", &"n".repeat(201)),
    ] {
        let result = merchants
            .register_merchant(pb::RegisterMerchantRequest {
                slug: slug.into(),
                name: name.to_string(),
            })
            .await;
        assert_status(result, Code::InvalidArgument, "INVALID_ARGUMENT");
    }
    assert_eq!(schemas(&app.db().await).await.len(), 1);
}

#[tokio::test]
async fn a_registration_that_fails_halfway_leaves_no_schema_and_no_row() {
    let app = spawn_app().await;
    let db = app.db().await;
    // Sabotage: make the tenant migration fail after the merchant row and the schema were created and some
    // tables exist, by refusing the creation of the `lots` table.
    db.batch_execute(
        "CREATE FUNCTION public.refuse_lots() RETURNS event_trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() WHERE object_identity LIKE '%.lots') THEN
             RAISE EXCEPTION 'sabotaged: lots may not be created';
           END IF;
         END $$;
         CREATE EVENT TRIGGER refuse_lots ON ddl_command_end EXECUTE FUNCTION public.refuse_lots();",
    )
    .await
    .expect("sabotage");
    let result = app
        .merchants(app.admin())
        .register_merchant(pb::RegisterMerchantRequest {
            slug: "half-made".into(),
            name: "Half".into(),
        })
        .await;
    let status = assert_status(result, Code::Internal, "INTERNAL");
    assert!(
        !status.message().contains("sabotaged"),
        "internal causes must not leak: {status:?}"
    );
    assert!(schemas(&db).await.is_empty());
    let merchants: i64 = db
        .query_one("SELECT count(*) FROM public.merchants", &[])
        .await
        .expect("count")
        .get(0);
    let keys: i64 = db
        .query_one(
            "SELECT count(*) FROM public.api_keys WHERE merchant_id IS NOT NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!((merchants, keys), (0, 0));

    db.batch_execute("DROP EVENT TRIGGER refuse_lots")
        .await
        .expect("repair");
    app.register_merchant("half-made").await;
    assert_eq!(schemas(&db).await.len(), 1);
}

#[tokio::test]
async fn merchants_can_be_listed_paginated_updated_and_suspended() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.register_merchant(&format!("shop-{i}")).await);
    }
    let mut merchants = app.merchants(app.admin());
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = merchants
            .list_merchants(pb::ListMerchantsRequest {
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|m| m.slug));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        (0..5).map(|i| format!("shop-{i}")).collect::<Vec<_>>()
    );
    let bad_token = merchants
        .list_merchants(pb::ListMerchantsRequest {
            page_size: 2,
            page_token: "nonsense".into(),
        })
        .await;
    assert_status(bad_token, Code::InvalidArgument, "INVALID_ARGUMENT");
    let too_big = merchants
        .list_merchants(pb::ListMerchantsRequest {
            page_size: 501,
            page_token: String::new(),
        })
        .await;
    assert_status(too_big, Code::InvalidArgument, "INVALID_ARGUMENT");

    let (merchant, key) = &created[0];
    let me = app
        .merchants(app.caller(key))
        .get_me(pb::GetMeRequest {})
        .await
        .expect("me")
        .into_inner();
    assert_eq!(
        me.merchant.expect("merchant").merchant_id,
        merchant.merchant_id
    );

    let renamed = merchants
        .update_merchant(pb::UpdateMerchantRequest {
            merchant_id: merchant.merchant_id.clone(),
            name: Some("Renamed".into()),
            status: Some("suspended".into()),
        })
        .await
        .expect("update")
        .into_inner();
    assert_eq!(
        (renamed.name.as_str(), renamed.status.as_str()),
        ("Renamed", "suspended")
    );
    let refused = app
        .merchants(app.caller(key))
        .get_me(pb::GetMeRequest {})
        .await;
    assert_status(refused, Code::PermissionDenied, "PERMISSION_DENIED");
    merchants
        .update_merchant(pb::UpdateMerchantRequest {
            merchant_id: merchant.merchant_id.clone(),
            name: None,
            status: Some("active".into()),
        })
        .await
        .expect("reactivate");
    app.merchants(app.caller(key))
        .get_me(pb::GetMeRequest {})
        .await
        .expect("works again");

    let missing = merchants
        .get_merchant(pb::GetMerchantRequest {
            merchant_id: uuid::Uuid::new_v4().to_string(),
        })
        .await;
    assert_status(missing, Code::NotFound, "NOT_FOUND");
    let malformed = merchants
        .get_merchant(pb::GetMerchantRequest {
            merchant_id: "nope".into(),
        })
        .await;
    assert_status(malformed, Code::InvalidArgument, "INVALID_ARGUMENT");
}

#[tokio::test]
async fn malformed_unknown_expired_and_revoked_keys_are_refused() {
    let app = spawn_app().await;
    let (_, key) = app.register_merchant("keys-shop").await;
    let me = |key: &str| {
        let mut client = app.merchants(app.caller(key));
        async move { client.get_me(pb::GetMeRequest {}).await }
    };
    assert_status(me("").await, Code::Unauthenticated, "UNAUTHENTICATED");
    assert_status(
        me("lp_live_short").await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    let mut altered = key.clone().into_bytes();
    altered[10] = if altered[10] == b'x' { b'y' } else { b'x' };
    let malformed = me(&String::from_utf8(altered).expect("ascii")).await;
    assert!(
        malformed
            .as_ref()
            .expect_err("refused")
            .message()
            .contains("malformed")
    );
    // Well-formed but never issued (a different hash secret would also look like this).
    let unknown =
        points::domain::api_key::ApiKeyPlaintext::generate(points::config::KeyEnvironment::Live);
    let status = assert_status(
        me(unknown.expose()).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert!(status.message().contains("unknown"));

    let mut keys = app.keys(app.caller(&key));
    let expiring = keys
        .create_api_key(pb::CreateApiKeyRequest {
            name: "short-lived".into(),
            scopes: vec!["points:read".into()],
            expires_at: Some(points::grpc::timestamp(
                chrono::Utc::now() + chrono::Duration::hours(1),
            )),
        })
        .await
        .expect("create")
        .into_inner();
    let expiring_key = expiring.key.expect("plaintext");
    me(&expiring_key).await.expect("valid before expiry");
    expire_key_now(&app, &expiring.key_id).await;
    let status = assert_status(
        me(&expiring_key).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert!(status.message().contains("expired"));

    let doomed = keys
        .create_api_key(pb::CreateApiKeyRequest {
            name: "doomed".into(),
            scopes: vec!["points:read".into()],
            expires_at: None,
        })
        .await
        .expect("create")
        .into_inner();
    let doomed_key = doomed.key.clone().expect("plaintext");
    me(&doomed_key).await.expect("valid");
    keys.revoke_api_key(pb::RevokeApiKeyRequest {
        key_id: doomed.key_id.clone(),
    })
    .await
    .expect("revoke");
    let status = assert_status(
        me(&doomed_key).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert!(status.message().contains("revoked"));

    for bad in [
        pb::CreateApiKeyRequest {
            name: "x".into(),
            scopes: vec![],
            expires_at: None,
        },
        pb::CreateApiKeyRequest {
            name: "x".into(),
            scopes: vec!["admin".into()],
            expires_at: None,
        },
        pb::CreateApiKeyRequest {
            name: "x".into(),
            scopes: vec!["points:everything".into()],
            expires_at: None,
        },
        pb::CreateApiKeyRequest {
            name: "".into(),
            scopes: vec!["points:read".into()],
            expires_at: None,
        },
        pb::CreateApiKeyRequest {
            name: "x".into(),
            scopes: vec!["points:read".into()],
            expires_at: Some(points::grpc::timestamp(
                chrono::Utc::now() - chrono::Duration::seconds(1),
            )),
        },
    ] {
        assert_status(
            keys.create_api_key(bad).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
}

#[tokio::test]
async fn rotation_keeps_both_keys_during_the_grace_period_only() {
    let app = spawn_app().await;
    let (_, key) = app.register_merchant("rotating-shop").await;
    let mut keys = app.keys(app.caller(&key));
    let old = keys
        .create_api_key(pb::CreateApiKeyRequest {
            name: "pos".into(),
            scopes: vec!["points:read".into()],
            expires_at: None,
        })
        .await
        .expect("create")
        .into_inner();
    let old_key = old.key.clone().expect("plaintext");
    let rotated = keys
        .rotate_api_key(pb::RotateApiKeyRequest {
            key_id: old.key_id.clone(),
            grace_seconds: Some(60),
        })
        .await
        .expect("rotate")
        .into_inner();
    let new = rotated.api_key.expect("new key");
    assert_eq!(
        (new.name.as_str(), new.scopes.clone()),
        ("pos", vec!["points:read".to_owned()])
    );
    let new_key = new.key.expect("plaintext");
    // The grace period is the old key's new expiry.
    let grace_end = rotated
        .previous
        .and_then(|previous| previous.expires_at)
        .expect("the old key expires at the end of its grace period")
        .seconds;
    let expected = chrono::Utc::now().timestamp() + 60;
    assert!(
        (grace_end - expected).abs() <= 5,
        "{grace_end} vs {expected}"
    );
    let me = |key: String| {
        let mut client = app.merchants(app.caller(&key));
        async move { client.get_me(pb::GetMeRequest {}).await }
    };
    me(old_key.clone()).await.expect("old key in grace");
    me(new_key.clone()).await.expect("new key");
    // The grace period ends (its expiry moved into the past rather than waited for): the old key is refused.
    expire_key_now(&app, &old.key_id).await;
    let status = assert_status(
        me(old_key.clone()).await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert!(status.message().contains("expired"), "{status:?}");
    me(new_key).await.expect("new key keeps working");
    let too_long = keys
        .rotate_api_key(pb::RotateApiKeyRequest {
            key_id: new.key_id,
            grace_seconds: Some(604_801),
        })
        .await;
    assert_status(too_long, Code::InvalidArgument, "INVALID_ARGUMENT");
}

#[tokio::test]
async fn a_key_revoked_on_one_instance_is_refused_by_another_within_a_second() {
    let first = spawn_app().await;
    let second = spawn_second_instance(&first).await;
    let (_, key) = first.register_merchant("two-instances").await;
    let created = first
        .keys(first.caller(&key))
        .create_api_key(pb::CreateApiKeyRequest {
            name: "victim".into(),
            scopes: vec!["points:read".into()],
            expires_at: None,
        })
        .await
        .expect("create")
        .into_inner();
    let victim = created.key.expect("plaintext");
    // Warm the second instance's cache so it would keep the key without the notification.
    for _ in 0..3 {
        second
            .merchants(second.caller(&victim))
            .get_me(pb::GetMeRequest {})
            .await
            .expect("valid on second");
    }
    first
        .keys(first.caller(&key))
        .revoke_api_key(pb::RevokeApiKeyRequest {
            key_id: created.key_id,
        })
        .await
        .expect("revoke");
    let revoked_at = Instant::now();
    loop {
        match second
            .merchants(second.caller(&victim))
            .get_me(pb::GetMeRequest {})
            .await
        {
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated);
                break;
            }
            Ok(_) => {
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(1),
                    "second instance still accepts a revoked key"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    println!(
        "revocation reached the second instance after {:?}",
        revoked_at.elapsed()
    );
    // Suspension travels the same way.
    let (merchant, merchant_key) = first.register_merchant("suspended-later").await;
    second
        .merchants(second.caller(&merchant_key))
        .get_me(pb::GetMeRequest {})
        .await
        .expect("valid");
    first
        .merchants(first.admin())
        .update_merchant(pb::UpdateMerchantRequest {
            merchant_id: merchant.merchant_id,
            name: None,
            status: Some("suspended".into()),
        })
        .await
        .expect("suspend");
    let suspended_at = Instant::now();
    loop {
        match second
            .merchants(second.caller(&merchant_key))
            .get_me(pb::GetMeRequest {})
            .await
        {
            Err(status) => {
                assert_eq!(status.code(), Code::PermissionDenied);
                break;
            }
            Ok(_) => {
                assert!(
                    suspended_at.elapsed() < Duration::from_secs(1),
                    "suspension did not reach the second instance"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The LISTEN connections of the instances on `database` (the auth cache's listeners): their backend pids.
async fn auth_listeners(maintenance: &tokio_postgres::Client, database: &str) -> Vec<i32> {
    maintenance
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query = $2",
            &[
                &database,
                &format!("LISTEN {}", points::auth::cache::AUTH_CHANNEL),
            ],
        )
        .await
        .expect("listeners")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The listener's connection dies (terminated by the database, as in a failover): the instance reconnects by
/// itself, caches keys again, and a revocation made on another instance reaches its cache within SPEC §4's second.
#[tokio::test]
async fn a_revocation_reaches_the_cache_of_an_instance_whose_listen_connection_was_killed_and_came_back()
 {
    let first = spawn_app().await;
    let second = spawn_second_instance(&first).await;
    let (_, key) = first.register_merchant("listener-loss").await;
    let created = first
        .keys(first.caller(&key))
        .create_api_key(pb::CreateApiKeyRequest {
            name: "victim".into(),
            scopes: vec!["points:read".into()],
            expires_at: None,
        })
        .await
        .expect("create")
        .into_inner();
    let victim = created.key.expect("plaintext");
    let victim_hash = second.services.hasher.hash(
        &points::domain::api_key::ApiKeyPlaintext::parse(&victim).expect("a well-formed key"),
    );
    let maintenance = crate::helpers::connect_maintenance().await;
    let database = second.database_name.clone();
    // Both instances listen before the cut (each connects its listener as it starts).
    let deadline = Instant::now() + Duration::from_secs(10);
    let killed = loop {
        let listeners = auth_listeners(&maintenance, &database).await;
        if listeners.len() == 2 {
            break listeners;
        }
        assert!(Instant::now() < deadline, "listeners: {listeners:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for pid in &killed {
        let terminated: bool = maintenance
            .query_one("SELECT pg_terminate_backend($1)", &[pid])
            .await
            .expect("terminate")
            .get(0);
        assert!(terminated, "listener {pid} terminated");
    }
    // Back: new listener connections, and the second instance caches the key again — which it only does while
    // its listener is connected, so a cached key proves the reconnection.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        second
            .merchants(second.caller(&victim))
            .get_me(pb::GetMeRequest {})
            .await
            .expect("valid on second");
        let listeners = auth_listeners(&maintenance, &database).await;
        let reconnected = listeners.len() == 2 && listeners.iter().all(|pid| !killed.contains(pid));
        if reconnected && second.services.auth_cache.key(&victim_hash).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener did not come back: {listeners:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first
        .keys(first.caller(&key))
        .revoke_api_key(pb::RevokeApiKeyRequest {
            key_id: created.key_id,
        })
        .await
        .expect("revoke");
    let revoked_at = Instant::now();
    loop {
        match second
            .merchants(second.caller(&victim))
            .get_me(pb::GetMeRequest {})
            .await
        {
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                assert!(status.message().contains("revoked"), "{status:?}");
                break;
            }
            Ok(_) => {
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(1),
                    "the second instance still accepts a revoked key after its listener came back"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    first.stop().await.expect("stop");
    second.stop().await.expect("stop");
}

#[tokio::test]
async fn no_key_plaintext_appears_in_a_full_database_dump() {
    let app = spawn_app().await;
    let (_, key) = app.register_merchant("dumped-shop").await;
    let created = app
        .keys(app.caller(&key))
        .create_api_key(pb::CreateApiKeyRequest {
            name: "another".into(),
            scopes: vec!["points:read".into()],
            expires_at: None,
        })
        .await
        .expect("create")
        .into_inner();
    let rotated = app
        .keys(app.caller(&key))
        .rotate_api_key(pb::RotateApiKeyRequest {
            key_id: created.key_id.clone(),
            grace_seconds: Some(60),
        })
        .await
        .expect("rotate")
        .into_inner();
    // Use every key once so last_used_at and any caches are exercised before the dump.
    let issued = [
        app.admin_key.clone(),
        key,
        created.key.expect("k"),
        rotated.api_key.expect("k").key.expect("k"),
    ];
    for key in &issued {
        app.merchants(app.caller(key))
            .get_me(pb::GetMeRequest {})
            .await
            .expect("use key");
    }
    let database_name = app.database_name.clone();
    app.stop().await.expect("graceful stop");
    let dump = std::process::Command::new("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "--inserts",
            &database_name,
        ])
        .output()
        .expect("run pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("api_keys"), "dump looks empty");
    for key in &issued {
        assert!(
            !dump.contains(key.as_str()),
            "a key plaintext is in the dump"
        );
        // Not even the secret part after the display prefix.
        assert!(
            !dump.contains(&key[12..]),
            "a key's secret part is in the dump"
        );
    }
}

#[tokio::test]
async fn the_migration_runner_skips_a_broken_tenant_records_it_and_recovers_after_repair() {
    let app = spawn_app().await;
    let (healthy, healthy_key) = app.register_merchant("healthy").await;
    let (broken, broken_key) = app.register_merchant("broken").await;
    let broken_schema = format!("merchant_{}", broken.merchant_id.replace('-', ""));
    let db = app.db().await;
    let latest = points::store::migrations::tenant_version_latest();
    // Sabotage: the broken tenant "forgets" its latest migration, while the objects that migration creates are
    // still there, so re-applying it fails.
    db.batch_execute(&format!(
        "DELETE FROM {broken_schema}.refinery_schema_history WHERE version = {latest}"
    ))
    .await
    .expect("sabotage");
    let database_name = app.database_name.clone();
    let admin_key = app.admin_key.clone();
    app.stop().await.expect("stop");

    let restarted = crate::helpers::spawn_on(
        crate::helpers::base_settings(&database_name),
        Some(admin_key.clone()),
    )
    .await;
    assert_eq!(
        restarted.tenant_migration_failures,
        vec![broken.merchant_id.clone()]
    );
    let row = db
        .query_one(
            "SELECT version, error FROM public.tenant_migrations WHERE schema_name = $1",
            &[&broken_schema],
        )
        .await
        .expect("status");
    let (version, error): (i32, Option<String>) = (row.get(0), row.get(1));
    // The version the schema is really at: the newest migration left in its history (versions may have gaps).
    let history_max: i32 = db
        .query_one(
            &format!("SELECT max(version) FROM {broken_schema}.refinery_schema_history"),
            &[],
        )
        .await
        .expect("history")
        .get(0);
    assert!(history_max < latest);
    assert_eq!(version, history_max);
    assert!(
        error.is_some_and(|e| e.contains("already exists")),
        "error not recorded"
    );
    let refused = restarted
        .merchants(restarted.caller(&broken_key))
        .get_me(pb::GetMeRequest {})
        .await;
    let status = assert_status(refused, Code::Unavailable, "UNAVAILABLE");
    assert!(status.message().contains("migrated"));
    restarted
        .merchants(restarted.caller(&healthy_key))
        .get_me(pb::GetMeRequest {})
        .await
        .expect("healthy tenant served");
    let _ = healthy;
    restarted.stop().await.expect("stop");

    // Repair: drop what the migration creates, so it can run again.
    db.batch_execute(&format!(
        "DROP SCHEMA {broken_schema} CASCADE; CREATE SCHEMA {broken_schema};"
    ))
    .await
    .expect("repair");
    let repaired = crate::helpers::spawn_on(
        crate::helpers::base_settings(&database_name),
        Some(admin_key),
    )
    .await;
    assert!(repaired.tenant_migration_failures.is_empty());
    repaired
        .merchants(repaired.caller(&broken_key))
        .get_me(pb::GetMeRequest {})
        .await
        .expect("served after repair");
    let row = db
        .query_one(
            "SELECT version, error FROM public.tenant_migrations WHERE schema_name = $1",
            &[&broken_schema],
        )
        .await
        .expect("status");
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, Option<String>>(1)),
        (latest, None)
    );
}

#[tokio::test]
async fn health_answers_serving_and_reflection_v1_and_v1alpha_list_the_services() {
    let app = spawn_app().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    for service in ["", "points.v1.PointsService", "points.v1.MerchantService"] {
        let response = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner();
        assert_eq!(
            response.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "{service}"
        );
    }
    let services = crate::helpers::list_services_by_reflection(app.channel.clone()).await;
    let services_v1alpha =
        crate::helpers::list_services_by_reflection_v1alpha(app.channel.clone()).await;
    assert!(
        services_v1alpha
            .iter()
            .any(|s| s == "grpc.reflection.v1alpha.ServerReflection"),
        "{services_v1alpha:?}"
    );
    // Each version lists itself as the reflection service; the rest is the same.
    let served = |names: &[String]| {
        let mut served: Vec<String> = names
            .iter()
            .filter(|name| !name.starts_with("grpc.reflection."))
            .cloned()
            .collect();
        served.sort();
        served
    };
    assert_eq!(
        served(&services_v1alpha),
        served(&services),
        "reflection v1alpha lists the services v1 lists"
    );
    for service in [
        "points.v1.MerchantService",
        "points.v1.ApiKeyService",
        "points.v1.PointsService",
        "points.v1.RuleService",
        "points.v1.AuditService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|s| s == service),
            "{service} not in {services:?}"
        );
    }
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn a_database_outage_gives_unavailable_quickly_and_the_service_recovers_by_itself() {
    let app = spawn_app().await;
    let (_, key) = app.register_merchant("outage-shop").await;
    let mut points = app.points(app.caller(&key));
    points
        .earn(crate::helpers::earn_request("olga", 5, "before"))
        .await
        .expect("earn before the outage");
    // The outage: nobody may connect to the database, and every open connection is cut.
    let admin = crate::helpers::connect_maintenance().await;
    let database = app.database_name.clone();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
        ))
        .await
        .expect("block");
    admin
        .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", &[&database])
        .await
        .expect("terminate");
    let started = Instant::now();
    let result = points
        .earn(crate::helpers::earn_request("olga", 5, "during"))
        .await;
    assert_status(result, Code::Unavailable, "UNAVAILABLE");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    admin
        .batch_execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
        .await
        .expect("unblock");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match points
            .earn(crate::helpers::earn_request("olga", 5, "after"))
            .await
        {
            Ok(response) => {
                assert_eq!(
                    response.into_inner().balance,
                    10,
                    "the failed call wrote nothing"
                );
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable);
                assert!(Instant::now() < deadline, "did not recover");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Health of the server as a whole ("", what plain checks and Kubernetes probes ask) and of each service follows
/// the database within a second, both ways. The database is made unreachable for this test's server alone: new
/// connections to its database are refused and the existing ones are terminated.
#[tokio::test]
async fn health_of_every_service_follows_the_database_within_a_second() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let app = spawn_app().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let maintenance = crate::helpers::connect_maintenance().await;
    let database = &app.database_name;
    let wait_for = |wanted: ServingStatus| {
        let mut health = health.clone();
        async move {
            let started = std::time::Instant::now();
            loop {
                let mut all = true;
                for service in ["", "points.v1.PointsService", "points.v1.ReportService"] {
                    let status = health
                        .check(tonic_health::pb::HealthCheckRequest {
                            service: service.into(),
                        })
                        .await
                        .expect("health")
                        .into_inner()
                        .status();
                    all &= status == wanted;
                }
                if all {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(5),
                    "health did not become {wanted:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(ServingStatus::Serving).await;
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    );
    maintenance
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS false; {terminate}"
        ))
        .await
        .expect("cut the database off");
    // A connection that was starting up while the database was closed (pgbouncer opens its own as it likes) can
    // finish after the terminate: terminate again every 100 ms until the loss shows.
    let lost = {
        let waiting = wait_for(ServingStatus::NotServing);
        tokio::pin!(waiting);
        loop {
            tokio::select! {
                lost = &mut waiting => break lost,
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    maintenance.batch_execute(&terminate).await.expect("terminate again");
                }
            }
        }
    };
    maintenance
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS true"
        ))
        .await
        .expect("let connections in again");
    let back = wait_for(ServingStatus::Serving).await;
    assert!(
        lost < std::time::Duration::from_secs(1),
        "loss seen after {lost:?}"
    );
    // Behind pgbouncer the return also waits for the pooler's next login attempt (server_login_retry, 1 s).
    let return_bound =
        if std::env::var("POINTS_TEST_PGBOUNCER").is_ok_and(|value| !value.is_empty()) {
            std::time::Duration::from_secs(2)
        } else {
            std::time::Duration::from_secs(1)
        };
    assert!(back < return_bound, "return seen after {back:?}");
    // The check answers for the health service itself too.
    let _ = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    app.stop().await.expect("stop");
}
