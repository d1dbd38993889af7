//! The first platform admin key (SPEC §4) from the two sources not covered by a first start: the environment
//! (`POINTS_BOOTSTRAP_ADMIN_KEY`, for deployments) and the command line (`points admin create-key`).

use std::process::{Command, Stdio};

use points::{
    app::Application, config::KeyEnvironment, domain::api_key::ApiKeyPlaintext, pb,
    service::bootstrap::Bootstrap,
};

use crate::helpers::{TEST_KEY_HASH_SECRET, base_settings, config_from, spawn_app, spawn_on};

/// The platform keys (no merchant) of the database: (name, scopes).
async fn platform_keys(db: &tokio_postgres::Client) -> Vec<(String, Vec<String>)> {
    db.query(
        "SELECT name, scopes FROM public.api_keys WHERE merchant_id IS NULL ORDER BY created_at",
        &[],
    )
    .await
    .expect("platform keys")
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

/// `GetMe` with `key`: the calling key's name and scopes.
async fn who_is(app: &crate::helpers::TestApp, key: &str) -> (String, Vec<String>) {
    let me = app
        .merchants(app.caller(key))
        .get_me(pb::GetMeRequest {})
        .await
        .expect("the key works")
        .into_inner();
    assert!(me.merchant.is_none(), "a platform key has no merchant");
    let api_key = me.api_key.expect("the calling key");
    (api_key.name, api_key.scopes)
}

#[tokio::test]
async fn the_admin_key_from_the_environment_is_installed_once_and_no_other_is_created() {
    let database_name = format!("points_test_{}", uuid::Uuid::new_v4().simple());
    let key = ApiKeyPlaintext::generate(KeyEnvironment::Live);
    let mut settings = base_settings(&database_name);
    settings.insert("POINTS_BOOTSTRAP_ADMIN_KEY".into(), key.expose().to_owned());
    // First start: the key is installed, nothing is created to print.
    let first = Application::build(config_from(&settings))
        .await
        .expect("build");
    assert!(
        matches!(first.bootstrap, Bootstrap::FromEnvironment),
        "{:?}",
        first.bootstrap
    );
    drop(first);
    // A restart with the same variable finds the key in place.
    let app = spawn_on(settings, Some(key.expose().to_owned())).await;
    assert_eq!(
        who_is(&app, key.expose()).await,
        ("bootstrap admin".to_owned(), vec!["admin".to_owned()])
    );
    assert_eq!(
        platform_keys(&app.db().await).await,
        [("bootstrap admin".to_owned(), vec!["admin".to_owned()])],
        "exactly one platform key: the one from the environment"
    );
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn a_malformed_admin_key_in_the_environment_stops_the_start_with_a_message_naming_it() {
    let database_name = format!("points_test_{}", uuid::Uuid::new_v4().simple());
    let mut settings = base_settings(&database_name);
    settings.insert(
        "POINTS_BOOTSTRAP_ADMIN_KEY".into(),
        "lp_live_not-a-checksummed-key".into(),
    );
    let error = match Application::build(config_from(&settings)).await {
        Ok(_) => panic!("a malformed bootstrap key was accepted"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("POINTS_BOOTSTRAP_ADMIN_KEY"), "{error}");
}

#[tokio::test]
async fn points_admin_create_key_prints_a_new_admin_key_that_works() {
    let app = spawn_app().await;
    let output = Command::new(env!("CARGO_BIN_EXE_points"))
        .args(["admin", "create-key", "--name", "ops laptop"])
        .env("DATABASE_URL", &app.database_url)
        .env("POINTS_KEY_HASH_SECRET", TEST_KEY_HASH_SECRET)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run points admin create-key");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{:?}: {stdout} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Vec<&str> = stdout
        .split_whitespace()
        .filter(|word| word.starts_with("lp_live_"))
        .collect();
    assert_eq!(printed.len(), 1, "the key is printed once: {stdout}");
    let key = printed[0];
    assert_ne!(key, app.admin_key);
    assert_eq!(
        who_is(&app, key).await,
        ("ops laptop".to_owned(), vec!["admin".to_owned()])
    );
    // It is a real admin key: it registers a merchant.
    app.merchants(app.caller(key))
        .register_merchant(pb::RegisterMerchantRequest {
            slug: "cli-made".into(),
            name: "Made by the CLI's key".into(),
        })
        .await
        .expect("the CLI's key administers the platform");
    let names: Vec<String> = platform_keys(&app.db().await)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["bootstrap admin", "ops laptop"]);
    app.stop().await.expect("stop");
}
