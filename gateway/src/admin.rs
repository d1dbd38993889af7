//! `/admin`: the admin single-page app (`admin-ui/`), embedded in the binary so a fresh build serves it without
//! Node, or read from a folder (`POINTS_ADMIN_UI_DIR`) while working on it.
//!
//! * `/admin` redirects to `/admin/`; every path under `/admin/` that is not a file gets `index.html`, so deep
//!   links (`/admin/m/{id}/accounts/{uid}`) load the app; a missing file under `/admin/assets/` is a 404 envelope
//!   (a script URL answered with HTML would only confuse the browser). `/api/v1/...` never reaches this router.
//! * Headers on `/admin` only: a strict Content-Security-Policy (the app has no inline script or style),
//!   `Referrer-Policy: no-referrer`, `X-Content-Type-Options: nosniff`, no framing.
//! * Caching: `index.html` is `no-store` and names its assets with `?v=<content hash>`; an asset asked for with a
//!   `v` query is cached for a year (`immutable`), otherwise it is revalidated with its ETag. File names are stable
//!   (no hashes in them), so the committed `dist/` stays diffable and reproducible.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::any;
use rust_embed::RustEmbed;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::ApiError;

/// Where the app is served.
pub const ADMIN_PATH: &str = "/admin";

/// The app's files, from `admin-ui/dist` (compiled in for release builds; read from disk by debug builds).
#[derive(RustEmbed)]
#[folder = "../admin-ui/dist"]
#[allow_missing = true]
struct EmbeddedAdmin;

/// Where the admin app's files come from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AdminUi {
    /// The build embedded in the binary (the default).
    #[default]
    Embedded,
    /// A folder on disk, e.g. `admin-ui/dist` while working on the app.
    Directory(PathBuf),
    /// `/admin` answers 404.
    Disabled,
}

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const ASSETS_PREFIX: &str = "assets/";
const INDEX: &str = "index.html";
/// How long a versioned asset may be cached.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// One file of the app.
struct AdminFile {
    bytes: Cow<'static, [u8]>,
    content_type: String,
    /// A strong validator: the hash of the content.
    etag: String,
}

impl AdminFile {
    fn new(path: &str, bytes: Cow<'static, [u8]>) -> AdminFile {
        let content_type = mime_guess::from_path(path)
            .first_or_octet_stream()
            .essence_str()
            .to_owned();
        let content_type =
            if content_type.starts_with("text/") || content_type.ends_with("javascript") {
                format!("{content_type}; charset=utf-8")
            } else {
                content_type
            };
        let etag = format!("\"{}\"", &blake3::hash(&bytes).to_hex()[..20]);
        AdminFile {
            bytes,
            content_type,
            etag,
        }
    }
}

impl AdminUi {
    /// The file at `path` (relative, `/`-separated), if there is one.
    async fn file(&self, path: &str) -> Option<AdminFile> {
        match self {
            AdminUi::Disabled => None,
            AdminUi::Embedded => {
                EmbeddedAdmin::get(path).map(|file| AdminFile::new(path, file.data))
            }
            AdminUi::Directory(root) => {
                let relative = safe_relative(path)?;
                let bytes = tokio::fs::read(root.join(relative)).await.ok()?;
                Some(AdminFile::new(path, Cow::Owned(bytes)))
            }
        }
    }

    /// `index.html` with each asset it names carrying `?v=<hash of the asset>`.
    async fn index(&self) -> Option<AdminFile> {
        let index = self.file(INDEX).await?;
        let mut html = String::from_utf8(index.bytes.into_owned()).ok()?;
        for (reference, asset) in asset_references(&html) {
            if let Some(file) = self.file(&asset).await {
                let version = file.etag.trim_matches('"');
                html = html.replace(
                    &reference,
                    &format!("{}?v={version}\"", reference.trim_end_matches('"')),
                );
            }
        }
        Some(AdminFile::new(INDEX, Cow::Owned(html.into_bytes())))
    }
}

/// The `"/admin/assets/…"` attribute values in `html`, with the asset path each names.
fn asset_references(html: &str) -> Vec<(String, String)> {
    let marker = format!("\"{ADMIN_PATH}/{ASSETS_PREFIX}");
    let mut references = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&marker) {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let url = &after[..end];
        if !url.contains('?') {
            let asset = url.trim_start_matches(ADMIN_PATH).trim_start_matches('/');
            references.push((format!("\"{url}\""), asset.to_owned()));
        }
        rest = &after[end..];
    }
    references.sort();
    references.dedup();
    references
}

/// `path` as a relative path that cannot leave the folder (no `..`, no root, no drive prefix).
fn safe_relative(path: &str) -> Option<PathBuf> {
    let relative = Path::new(path);
    relative
        .components()
        .all(|component| matches!(component, Component::Normal(_)))
        .then(|| relative.to_owned())
}

/// The `/admin` routes, with their headers. Nothing is mounted for [`AdminUi::Disabled`]: the gateway's 404
/// envelope answers.
pub fn router<S: Clone + Send + Sync + 'static>(admin_ui: &AdminUi) -> Router<S> {
    if *admin_ui == AdminUi::Disabled {
        return Router::new();
    }
    let source = Arc::new(admin_ui.clone());
    Router::new()
        .route(ADMIN_PATH, any(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", any(serve))
        .route("/admin/{*path}", any(serve))
        .with_state(source)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
}

async fn serve(State(source): State<Arc<AdminUi>>, request: Request) -> Response {
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return ApiError::method_not_allowed(Some(HeaderValue::from_static("GET, HEAD")))
            .into_response();
    }
    let path = request
        .uri()
        .path()
        .trim_start_matches(ADMIN_PATH)
        .trim_start_matches('/')
        .to_owned();
    let versioned = request
        .uri()
        .query()
        .is_some_and(|query| query.split('&').any(|pair| pair.starts_with("v=")));
    let headers = request.headers();
    if !path.is_empty() && path != INDEX {
        if let Some(file) = source.file(&path).await {
            let cache = if versioned { IMMUTABLE } else { "no-cache" };
            return respond(&method, headers, file, cache);
        }
        if path.starts_with(ASSETS_PREFIX) {
            return ApiError::not_found(format!("no admin asset {path}")).into_response();
        }
    }
    match source.index().await {
        Some(index) => respond(&method, headers, index, "no-store"),
        None => ApiError::not_found("the admin app is not built (no admin-ui/dist/index.html)")
            .into_response(),
    }
}

fn respond(
    method: &Method,
    request_headers: &HeaderMap,
    file: AdminFile,
    cache: &'static str,
) -> Response {
    let not_modified = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == file.etag));
    let status = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut response = if not_modified || method == Method::HEAD {
        status.into_response()
    } else {
        (status, file.bytes.into_owned()).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&file.content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&file.etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_folder() {
        assert_eq!(
            safe_relative("assets/index.js"),
            Some(PathBuf::from("assets/index.js"))
        );
        for bad in ["../secret", "assets/../../x", "/etc/passwd", "./x/../../y"] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn index_asset_references_are_found_once() {
        let html = r#"<script type="module" src="/admin/assets/index.js"></script>
            <link rel="stylesheet" href="/admin/assets/index.css"><link href="/admin/assets/index.css">
            <a href="/admin/assets/x.js?v=1">"#;
        let references = asset_references(html);
        assert_eq!(
            references,
            vec![
                (
                    "\"/admin/assets/index.css\"".to_owned(),
                    "assets/index.css".to_owned()
                ),
                (
                    "\"/admin/assets/index.js\"".to_owned(),
                    "assets/index.js".to_owned()
                ),
            ]
        );
    }
}
