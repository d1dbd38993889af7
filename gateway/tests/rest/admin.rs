//! `/admin` serves the SPA's files with `index.html` for deep links, and envelopes when there is nothing to serve.

use axum::body::Body;
use axum::http::Request;
use points_gateway::{GatewayConfig, router};

use crate::helpers::{CLOSED_GRPC_URL, config, gateway_without_backend, get, send};

async fn gateway_with_admin_dir(dir: &std::path::Path) -> axum::Router {
    let config = GatewayConfig {
        admin_ui: points_gateway::AdminUi::Directory(dir.to_owned()),
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

#[tokio::test]
async fn admin_pages_carry_the_security_headers_and_index_is_never_cached() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("index.html"),
        r#"<script type="module" src="/admin/assets/app.js"></script>"#,
    )
    .expect("write");
    std::fs::create_dir(dir.path().join("assets")).expect("mkdir");
    std::fs::write(dir.path().join("assets/app.js"), "console.log('app')").expect("write");
    let app = gateway_with_admin_dir(dir.path()).await;

    let index = send(&app, get("/admin/m/abc/accounts/user.42")).await;
    assert_eq!(index.status.as_u16(), 200);
    assert_eq!(
        index.header("content-security-policy").as_deref(),
        Some(
            "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
    );
    assert_eq!(
        index.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );
    assert_eq!(
        index.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(index.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        index.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    // The asset is named with its content version, and that URL may be cached for good.
    let html = index.text();
    let versioned = html
        .split('"')
        .find(|part| part.starts_with("/admin/assets/app.js?v="))
        .unwrap_or_else(|| panic!("no versioned asset in {html}"))
        .to_owned();
    let asset = send(&app, get(&versioned)).await;
    assert_eq!(asset.status.as_u16(), 200);
    assert_eq!(
        asset.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        asset.header("content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    // Unversioned: revalidated with the ETag, which answers 304 when it matches.
    let plain = send(&app, get("/admin/assets/app.js")).await;
    assert_eq!(plain.header("cache-control").as_deref(), Some("no-cache"));
    let etag = plain.header("etag").expect("an etag");
    let conditional = Request::get("/admin/assets/app.js")
        .header("if-none-match", &etag)
        .body(Body::empty())
        .expect("valid");
    assert_eq!(send(&app, conditional).await.status.as_u16(), 304);
    // A missing asset is a 404, not the app's HTML; headers stay off /api/v1.
    send(&app, get("/admin/assets/missing.js"))
        .await
        .assert_error(404, 40401);
    let api = send(&app, get("/api/v1/nope")).await;
    assert!(api.header("content-security-policy").is_none());
}

#[tokio::test]
async fn the_embedded_build_is_served_by_default() {
    let config = GatewayConfig {
        admin_ui: points_gateway::AdminUi::Embedded,
        ..config(CLOSED_GRPC_URL)
    };
    let app = router(&config).await.expect("builds");
    let index = send(&app, get("/admin/")).await;
    assert_eq!(
        index.status.as_u16(),
        200,
        "admin-ui/dist/index.html is committed"
    );
    assert!(
        index.text().contains("/admin/assets/index.js?v="),
        "{}",
        index.text()
    );
    let script = send(&app, get("/admin/assets/index.js")).await;
    assert_eq!(script.status.as_u16(), 200);
    assert!(!script.text().is_empty());
}
