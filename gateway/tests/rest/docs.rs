//! `/openapi.json` documents every SPEC §9 route; `/docs` serves Swagger UI entirely from this process.

use std::collections::BTreeSet;

use points_gateway::ErrorCode;
use serde_json::Value;

use crate::helpers::{gateway_without_backend, get, send};

/// Every route of SPEC §9, as (method, OpenAPI path).
const SPEC_ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/merchants"),
    ("get", "/api/v1/merchants"),
    ("get", "/api/v1/merchants/{merchant_id}"),
    ("patch", "/api/v1/merchants/{merchant_id}"),
    ("get", "/api/v1/me"),
    ("get", "/api/v1/api-keys"),
    ("post", "/api/v1/api-keys"),
    ("post", "/api/v1/api-keys/{key_id}/rotate"),
    ("delete", "/api/v1/api-keys/{key_id}"),
    ("post", "/api/v1/points/earn"),
    ("post", "/api/v1/points/spend"),
    ("post", "/api/v1/points/adjust"),
    ("post", "/api/v1/points/entries/{entry_id}/reverse"),
    ("get", "/api/v1/points/entries/{entry_id}"),
    ("get", "/api/v1/points/accounts/{uid}"),
    ("get", "/api/v1/points/accounts/{uid}/entries"),
    ("get", "/api/v1/points/accounts"),
    ("get", "/api/v1/reports/liability"),
    ("post", "/api/v1/points/batch"),
    ("post", "/api/v1/points/calculate"),
    ("post", "/api/v1/points/holds"),
    ("get", "/api/v1/points/holds/{hold_id}"),
    ("post", "/api/v1/points/holds/{hold_id}/capture"),
    ("post", "/api/v1/points/holds/{hold_id}/void"),
    ("get", "/api/v1/points/accounts/{uid}/holds"),
    ("get", "/api/v1/rules"),
    ("put", "/api/v1/rules"),
    ("get", "/api/v1/rules/{code}"),
    ("put", "/api/v1/rules/{code}"),
    ("get", "/api/v1/rules/{code}/versions"),
    ("get", "/api/v1/audit-logs"),
    ("get", "/api/v1/audit-logs/{audit_id}"),
    ("get", "/api/v1/audit-logs/verify"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

async fn openapi_document() -> Value {
    let app = gateway_without_backend().await;
    let response = send(&app, get("/openapi.json")).await;
    assert_eq!(response.status.as_u16(), 200);
    assert_eq!(response.content_type(), "application/json");
    response.json()
}

fn collect_refs(value: &Value, refs: &mut BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("$ref", Value::String(reference)) => {
                        refs.insert(reference.clone());
                    }
                    _ => collect_refs(child, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_lists_every_spec_route_and_nothing_else() {
    let document = openapi_document().await;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3."))
    );
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(|method| ((*method).to_owned(), path.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = SPEC_ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(documented, expected);
}

#[tokio::test]
async fn every_reference_in_openapi_resolves() {
    let document = openapi_document().await;
    let mut refs = BTreeSet::new();
    collect_refs(&document, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference.strip_prefix('#').expect("local reference");
        let pointer = pointer.replace("~1", "/");
        assert!(document.pointer(&pointer).is_some(), "dangling {reference}");
    }
}

#[tokio::test]
async fn every_api_operation_documents_security_headers_and_every_error_status() {
    let document = openapi_document().await;
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["type"],
        "apiKey"
    );
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["in"],
        "header"
    );
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["name"],
        "x-api-key"
    );
    for (method, path) in SPEC_ROUTES
        .iter()
        .filter(|(_, path)| path.starts_with("/api/v1/"))
    {
        let operation = &document["paths"][path][method];
        assert_eq!(
            operation["security"][0]["api_key"],
            serde_json::json!([]),
            "{method} {path}"
        );
        let headers: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter(|parameter| parameter["in"] == "header")
            .filter_map(|parameter| parameter["name"].as_str())
            .collect();
        assert_eq!(
            headers,
            BTreeSet::from(["x-merchant-id", "x-request-id"]),
            "{method} {path}"
        );
        for status in [
            "400", "401", "403", "404", "409", "422", "429", "500", "501", "503",
        ] {
            assert!(
                operation["responses"].get(status).is_some(),
                "{method} {path} lacks {status}"
            );
        }
        let success = operation["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .any(|status| status.starts_with('2'));
        assert!(success, "{method} {path} documents no success");
    }
}

#[tokio::test]
async fn every_error_code_has_an_example() {
    let document = openapi_document().await;
    let mut codes = BTreeSet::new();
    for response in document["components"]["responses"]
        .as_object()
        .expect("responses")
        .values()
    {
        for example in response["content"]["application/json"]["examples"]
            .as_object()
            .expect("examples")
            .values()
        {
            codes.insert(example["value"]["code"].as_i64().expect("code"));
        }
    }
    for code in ErrorCode::ALL {
        assert!(
            codes.contains(&i64::from(code.envelope_code())),
            "{} has no example",
            code.envelope_code()
        );
    }
}

#[tokio::test]
async fn docs_redirects_to_swagger_ui_whose_assets_are_all_local() {
    let app = gateway_without_backend().await;
    let redirect = send(&app, get("/docs")).await;
    assert!(redirect.status.is_redirection(), "{}", redirect.status);
    assert_eq!(redirect.header("location").as_deref(), Some("/docs/"));

    let page = send(&app, get("/docs/")).await;
    assert_eq!(page.status.as_u16(), 200);
    assert_eq!(page.content_type(), "text/html");
    let html = page.text();
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in html.split(attribute).skip(1) {
            assets.push(piece.split('"').next().expect("closing quote").to_owned());
        }
    }
    assert!(
        assets.iter().any(|asset| asset.ends_with(".js")),
        "{assets:?}"
    );
    for asset in &assets {
        assert!(
            !asset.starts_with("http:") && !asset.starts_with("https:") && !asset.starts_with("//"),
            "{asset}"
        );
        let path = format!("/docs/{}", asset.trim_start_matches("./"));
        let response = send(&app, get(&path)).await;
        assert_eq!(response.status.as_u16(), 200, "{path}");
    }

    let initializer = send(&app, get("/docs/swagger-initializer.js")).await.text();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
    assert!(
        initializer.contains(r#""validatorUrl": "none""#)
            || initializer.contains(r#""validatorUrl":"none""#),
        "{initializer}"
    );
    assert!(
        !initializer.contains("http://") && !initializer.contains("https://"),
        "{initializer}"
    );
}

/// The admin app is typed from `admin-ui/openapi.json`, a committed copy of `/openapi.json`: when they differ, the
/// app was generated against another API. `UPDATE_OPENAPI_SNAPSHOT=1 cargo test -p points-gateway openapi_snapshot`
/// rewrites the copy; the app's types are then regenerated with `npm run generate` in `admin-ui/`.
#[tokio::test]
async fn openapi_snapshot_of_the_admin_app_matches_the_served_document() {
    let served =
        serde_json::to_string_pretty(&openapi_document().await).expect("serializes") + "\n";
    let snapshot_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../admin-ui/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI_SNAPSHOT").is_some() {
        std::fs::write(&snapshot_path, &served).expect("writes the snapshot");
        return;
    }
    let snapshot = std::fs::read_to_string(&snapshot_path).unwrap_or_default();
    assert!(
        snapshot == served,
        "admin-ui/openapi.json differs from /openapi.json: run \
         `UPDATE_OPENAPI_SNAPSHOT=1 cargo test -p points-gateway openapi_snapshot`, then `npm run generate` in admin-ui/"
    );
}
