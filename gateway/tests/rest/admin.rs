//! `/admin` serves the SPA's files with `index.html` for deep links, and envelopes when there is nothing to serve.

use axum::body::Body;
use axum::http::Request;
use points_gateway::{GatewayConfig, router};

use crate::helpers::{CLOSED_GRPC_URL, config, gateway_without_backend, get, send};

async fn gateway_with_admin_dir(dir: &std::path::Path) -> axum::Router {
    let config = GatewayConfig {
        admin_ui_dir: Some(dir.to_owned()),
        ..config(CLOSED_GRPC_URL)
    };
    router(&config).await.expect("builds")
}

#[tokio::test]
async fn admin_serves_files_and_index_html_for_deep_links() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("index.html"), "<html>admin app</html>").expect("write");
    std::fs::create_dir(dir.path().join("assets")).expect("mkdir");
    std::fs::write(dir.path().join("assets/app.js"), "console.log('app')").expect("write");
    let app = gateway_with_admin_dir(dir.path()).await;

    let redirect = send(&app, get("/admin")).await;
    assert!(redirect.status.is_redirection());
    assert_eq!(redirect.header("location").as_deref(), Some("/admin/"));
    for uri in ["/admin/", "/admin/merchants/m_1/keys", "/admin/index.html"] {
        let response = send(&app, get(uri)).await;
        assert_eq!(response.status.as_u16(), 200, "{uri}");
        assert_eq!(response.text(), "<html>admin app</html>", "{uri}");
    }
    let script = send(&app, get("/admin/assets/app.js")).await;
    assert_eq!(script.status.as_u16(), 200);
    assert_eq!(script.text(), "console.log('app')");

    // Deep links are an /admin matter only: /api/v1 keeps its JSON 404.
    send(&app, get("/api/v1/merchants/m_1/keys"))
        .await
        .assert_error(404, 40401);
    let post = Request::post("/admin/").body(Body::empty()).expect("valid");
    send(&app, post).await.assert_error(405, 40001);
}

#[tokio::test]
async fn admin_without_index_html_is_a_404_envelope() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = gateway_with_admin_dir(dir.path()).await;
    send(&app, get("/admin/")).await.assert_error(404, 40401);
    send(&app, get("/admin/deep/link"))
        .await
        .assert_error(404, 40401);
}

#[tokio::test]
async fn admin_disabled_is_a_404_envelope() {
    let app = gateway_without_backend().await;
    send(&app, get("/admin/")).await.assert_error(404, 40401);
}
