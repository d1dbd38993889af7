//! The service's database sessions, directly or through a transaction-mode pooler (`tests/pgbouncer/run.sh` runs
//! this suite with every pool going through pgbouncer).

use crate::helpers::spawn_app;

/// Whatever sits in between, every session the pool hands out searches only `pg_catalog` outside a tenant
/// transaction and has the service's timeouts: from the startup options on a direct connection, from the role's
/// settings in the database behind pgbouncer.
#[tokio::test]
async fn every_pooled_session_has_the_service_session_defaults() {
    let app = spawn_app().await;
    let pooled_mode = std::env::var("POINTS_TEST_PGBOUNCER").is_ok_and(|value| !value.is_empty());
    // More sessions than one: each pooled connection in turn, held at once so they are distinct.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(app.services.pool.get().await.expect("pooled connection"));
    }
    for client in &clients {
        let row = client
            .query_typed_one(
                "SELECT current_setting('search_path'), current_setting('statement_timeout'), \
                 current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout')",
                &[],
            )
            .await
            .expect("settings");
        let settings: (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(
            settings,
            ("pg_catalog".into(), "5s".into(), "5s".into(), "10s".into())
        );
    }
    let stored: Vec<String> = app
        .db()
        .await
        .query_one(
            "SELECT coalesce((SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE d.datname = current_database() AND s.setrole = (SELECT oid FROM pg_roles WHERE rolname = 'postgres')), \
             '{}')",
            &[],
        )
        .await
        .expect("role settings")
        .get(0);
    if pooled_mode {
        // Behind pgbouncer the defaults live in the database, for this role only.
        for setting in [
            "search_path=pg_catalog",
            "statement_timeout=5000",
            "lock_timeout=5000",
            "idle_in_transaction_session_timeout=10000",
        ] {
            assert!(stored.contains(&setting.to_owned()), "{stored:?}");
        }
    } else {
        // Directly, nothing is stored: the startup options carry them.
        assert!(stored.is_empty(), "{stored:?}");
    }
}

/// Behind the pooler, instances sharing a database share one stored setting of the role there, and a start with
/// another statement timeout updates it.
#[tokio::test]
async fn stored_session_defaults_are_one_per_role_and_database_and_follow_the_configuration() {
    if std::env::var("POINTS_TEST_PGBOUNCER").is_err() {
        return;
    }
    let first = spawn_app().await;
    let second = crate::helpers::spawn_second_instance(&first).await;
    let db = first.db().await;
    let count = |rows: Vec<tokio_postgres::Row>| -> i64 { rows[0].get(0) };
    let settings = "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
                    WHERE d.datname = current_database()";
    assert_eq!(count(db.query(settings, &[]).await.expect("count")), 1);
    second.stop().await.expect("stop");

    let mut settings_map = crate::helpers::base_settings(&first.database_name);
    settings_map.insert("POINTS_DB_STATEMENT_TIMEOUT_MS".into(), "7000".into());
    let third = crate::helpers::spawn_on(settings_map, Some(first.admin_key.clone())).await;
    let stored: Vec<String> = db
        .query_one(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE d.datname = current_database()",
            &[],
        )
        .await
        .expect("settings")
        .get(0);
    assert!(
        stored.contains(&"statement_timeout=7000".to_owned()),
        "{stored:?}"
    );
    assert!(
        stored.contains(&"lock_timeout=7000".to_owned()),
        "{stored:?}"
    );
    third.stop().await.expect("stop");
    first.stop().await.expect("stop");
}
