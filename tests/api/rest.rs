//! The REST gateway end to end (issue #6, SPEC §8–§11): every `/api/v1` route of SPEC §9 through the real gateway
//! and server on a fresh PostgreSQL database, its happy path and each error class, with the HTTP status, the envelope
//! `code`, the `message` and the shape of `data` checked; plus the operations endpoints (`/healthz`, `/readyz`,
//! `/metrics`, `/openapi.json`, `/docs`).
//!
//! The helpers here ([`Rest`], [`Reply`]) are shared with `rest_audit.rs`.

use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{TestApp, idem, spawn_app};

/// Longest any single HTTP call of these tests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The request body limit the gateway enforces by default (`POINTS_HTTP_BODY_LIMIT_BYTES`).
const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// A REST client for one app: base URL plus the headers every call carries (`x-api-key`, `x-merchant-id`).
#[derive(Clone)]
pub struct Rest {
    client: reqwest::Client,
    base: String,
    key: Option<String>,
    merchant_id: Option<String>,
}

/// One HTTP answer: status, headers, and the body as JSON (`Value::Null` when it is not JSON) and as text.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Rest {
    /// A client without a key for `app`'s gateway.
    pub fn new(app: &TestApp) -> Rest {
        let http_addr = app
            .http_addr
            .expect("the test server runs the REST gateway");
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("reqwest client");
        Rest {
            client,
            base: format!("http://{http_addr}"),
            key: None,
            merchant_id: None,
        }
    }

    /// The same client sending `x-api-key: key`.
    pub fn with_key(&self, key: &str) -> Rest {
        Rest {
            key: Some(key.to_owned()),
            ..self.clone()
        }
    }

    /// The same client sending `x-merchant-id: merchant_id` (an admin acting for a merchant).
    pub fn acting_for(&self, merchant_id: &str) -> Rest {
        Rest {
            merchant_id: Some(merchant_id.to_owned()),
            ..self.clone()
        }
    }

    /// The key this client sends, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with this client's headers, to be completed and passed to [`Rest::send`].
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = &self.key {
            request = request.header("x-api-key", key);
        }
        if let Some(merchant_id) = &self.merchant_id {
            request = request.header("x-merchant-id", merchant_id);
        }
        request
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(Method::POST, path).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(Method::PUT, path).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(Method::PATCH, path).json(&body))
            .await
    }

    /// Registers a merchant through `POST /api/v1/merchants` (this client must hold the admin key); returns its id
    /// and the plaintext of its first key.
    pub async fn register_merchant(&self, slug: &str) -> (String, String) {
        let data = self
            .post(
                "/api/v1/merchants",
                json!({"slug": slug, "name": format!("Shop {slug}")}),
            )
            .await
            .ok(201);
        let merchant_id = text(&data["merchant"]["merchant_id"]).to_owned();
        let key = text(&data["api_key"]["key"]).to_owned();
        (merchant_id, key)
    }
}

impl Reply {
    /// Asserts a success envelope with `status`; returns `data`.
    #[track_caller]
    pub fn ok(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        assert_json_content_type(&self.headers, &self.text);
        assert_eq!(
            self.body["code"], 0,
            "not a success envelope: {}",
            self.text
        );
        assert_eq!(
            self.body["message"], "OK",
            "unexpected message: {}",
            self.text
        );
        let envelope = self.body.as_object().expect("an object");
        assert_eq!(
            envelope.len(),
            3,
            "the envelope has exactly code, message and data: {}",
            self.text
        );
        self.body["data"].clone()
    }

    /// Asserts an error envelope with `status` and `code`, a non-empty message and `data: null`; returns the message.
    #[track_caller]
    pub fn error(self, status: u16, code: i64) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        assert_json_content_type(&self.headers, &self.text);
        assert_eq!(
            self.body["code"], code,
            "unexpected envelope code: {}",
            self.text
        );
        assert!(
            self.body.get("data").is_some_and(Value::is_null),
            "data must be present and null: {}",
            self.text
        );
        let message = self.body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("message must be a string: {}", self.text));
        assert!(
            !message.is_empty(),
            "message must not be empty: {}",
            self.text
        );
        message.to_owned()
    }

    /// The `x-request-id` response header.
    #[track_caller]
    pub fn request_id(&self) -> String {
        let value = self
            .headers
            .get("x-request-id")
            .expect("an x-request-id response header");
        value.to_str().expect("ascii").to_owned()
    }
}

#[track_caller]
fn assert_json_content_type(headers: &header::HeaderMap, body: &str) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type:?} of {body}"
    );
}

/// The string in `value`, or a panic naming it.
#[track_caller]
pub fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
}

/// The integer in `value`, or a panic naming it.
#[track_caller]
pub fn int(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("expected an integer, got {value}"))
}

/// Asserts `object` has each of `fields` (null allowed) and returns it.
#[track_caller]
pub fn assert_fields<'a>(object: &'a Value, fields: &[&str]) -> &'a Value {
    let map = object
        .as_object()
        .unwrap_or_else(|| panic!("expected an object, got {object}"));
    let missing: Vec<&&str> = fields
        .iter()
        .filter(|field| !map.contains_key(**field))
        .collect();
    assert!(
        missing.is_empty(),
        "fields {missing:?} missing from {object}"
    );
    object
}

/// Asserts `value` is an RFC 3339 time.
#[track_caller]
pub fn assert_time(value: &Value) {
    let parsed = chrono::DateTime::parse_from_rfc3339(text(value));
    assert!(parsed.is_ok(), "not an RFC 3339 time: {value}");
}

pub const MERCHANT_FIELDS: &[&str] = &["merchant_id", "slug", "name", "status", "created_at"];
pub const API_KEY_FIELDS: &[&str] = &[
    "key_id",
    "name",
    "prefix",
    "last4",
    "scopes",
    "status",
    "expires_at",
    "created_at",
    "last_used_at",
];
pub const ENTRY_FIELDS: &[&str] = &[
    "entry_id",
    "uid",
    "kind",
    "delta",
    "balance_after",
    "idempotency_key",
    "reference",
    "description",
    "metadata",
    "rule_code",
    "rule_version",
    "amount",
    "currency",
    "reverses_entry_id",
    "hold_id",
    "expires_at",
    "created_at",
];
pub const RULE_VERSION_FIELDS: &[&str] = &[
    "code",
    "version",
    "currency",
    "unit_amount",
    "points_per_unit",
    "rounding",
    "min_amount",
    "max_points",
    "points_ttl_days",
    "effective_from",
    "effective_to",
    "created_at",
];

/// Asserts `data` is a page: `{items: [...], next_page_token: string|null}`; returns the items.
#[track_caller]
pub fn page_items(data: &Value) -> Vec<Value> {
    assert_fields(data, &["items", "next_page_token"]);
    let token = &data["next_page_token"];
    assert!(
        token.is_null() || token.is_string(),
        "next_page_token must be a string or null: {data}"
    );
    data["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items must be an array: {data}"))
        .clone()
}

/// Asserts `data` is `{entry, balance, replayed}`; returns the entry.
#[track_caller]
pub fn mutation_entry(data: &Value, balance: i64, replayed: bool) -> Value {
    assert_fields(data, &["entry", "balance", "replayed"]);
    assert_eq!(data["balance"], balance, "{data}");
    assert_eq!(data["replayed"], replayed, "{data}");
    assert_fields(&data["entry"], ENTRY_FIELDS).clone()
}

/// Percent-encodes a path segment (everything but unreserved characters).
pub fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// An entry id of the right form (a positive integer) that no entry has.
const UNKNOWN_ENTRY_ID: &str = "999999999";

/// A running app, its admin client, one merchant registered over REST and that merchant's client.
pub struct RestFixture {
    /// The server, for tests that reach past the gateway.
    #[allow(dead_code)]
    pub app: TestApp,
    pub anonymous: Rest,
    pub admin: Rest,
    pub merchant_id: String,
    pub merchant: Rest,
}

pub async fn rest_fixture(slug: &str) -> RestFixture {
    let app = spawn_app().await;
    let anonymous = Rest::new(&app);
    let admin = anonymous.with_key(&app.admin_key);
    let (merchant_id, key) = admin.register_merchant(slug).await;
    let merchant = anonymous.with_key(&key);
    RestFixture {
        app,
        anonymous,
        admin,
        merchant_id,
        merchant,
    }
}

/// `POST /api/v1/points/earn` of `points` to `uid`, asserting 201; returns the entry.
pub async fn earn(client: &Rest, uid: &str, points: i64) -> Value {
    let data = client
        .post(
            "/api/v1/points/earn",
            json!({"uid": uid, "points": points, "idempotency_key": idem()}),
        )
        .await
        .ok(201);
    data["entry"].clone()
}

/// A rule body for `PUT /api/v1/rules/{code}`.
fn rule_body(currency: &str, unit_amount: &str, points_per_unit: i64) -> Value {
    json!({"currency": currency, "unit_amount": unit_amount, "points_per_unit": points_per_unit, "rounding": "floor"})
}

/// Creates a key with `scopes` through `POST /api/v1/api-keys`; returns its plaintext.
async fn create_key(client: &Rest, scopes: &[&str]) -> String {
    let data = client
        .post(
            "/api/v1/api-keys",
            json!({"name": "scoped", "scopes": scopes}),
        )
        .await
        .ok(201);
    text(&data["key"]).to_owned()
}

// ---------------------------------------------------------------------------------------------------------------
// Merchants and /me
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn registering_a_merchant_answers_201_with_the_merchant_and_its_first_key_shown_once() {
    let app = spawn_app().await;
    let admin = Rest::new(&app).with_key(&app.admin_key);

    let data = admin
        .post(
            "/api/v1/merchants",
            json!({"slug": "coffee-corner", "name": "Coffee Corner"}),
        )
        .await
        .ok(201);

    let merchant = assert_fields(&data["merchant"], MERCHANT_FIELDS);
    assert_eq!(merchant["slug"], "coffee-corner");
    assert_eq!(merchant["name"], "Coffee Corner");
    assert_eq!(merchant["status"], "active");
    assert_time(&merchant["created_at"]);
    let api_key = assert_fields(&data["api_key"], API_KEY_FIELDS);
    let key = text(&api_key["key"]);
    assert!(
        key.starts_with("lp_live_") || key.starts_with("lp_test_"),
        "{key}"
    );
    assert!(
        key.starts_with(text(&api_key["prefix"])),
        "the prefix is the start of the key"
    );
    assert!(
        key.ends_with(text(&api_key["last4"])),
        "last4 is the end of the key"
    );
    assert_eq!(api_key["status"], "active");
    let scopes: Vec<&str> = api_key["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(text)
        .collect();
    for scope in [
        "points:read",
        "points:write",
        "rules:read",
        "rules:write",
        "audit:read",
        "keys:manage",
    ] {
        assert!(
            scopes.contains(&scope),
            "the first key has every merchant scope: {scopes:?}"
        );
    }

    // The key works, and it is never shown again: neither by /me nor in the key list.
    let merchant_client = Rest::new(&app).with_key(key);
    let me = merchant_client.get("/api/v1/me").await.ok(200);
    assert!(
        me["api_key"].get("key").is_none(),
        "/me must not show the plaintext: {me}"
    );
    let keys = page_items(&merchant_client.get("/api/v1/api-keys").await.ok(200));
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].get("key").is_none(),
        "a listed key must not show the plaintext: {}",
        keys[0]
    );
    assert!(
        !Rest::new(&app)
            .with_key(&app.admin_key)
            .get("/api/v1/merchants")
            .await
            .text
            .contains(key)
    );
}

#[tokio::test]
async fn registering_a_taken_slug_is_409_already_exists() {
    let app = spawn_app().await;
    let admin = Rest::new(&app).with_key(&app.admin_key);
    admin.register_merchant("taken").await;
    admin
        .post(
            "/api/v1/merchants",
            json!({"slug": "taken", "name": "Again"}),
        )
        .await
        .error(409, 40901);
}

#[tokio::test]
async fn registering_with_a_bad_slug_name_or_body_is_400() {
    let app = spawn_app().await;
    let admin = Rest::new(&app).with_key(&app.admin_key);
    let bad_bodies = [
        json!({"slug": "ab", "name": "Too short"}),
        json!({"slug": "Upper-Case", "name": "Upper"}),
        json!({"slug": "-dash-first", "name": "Dash"}),
        json!({"slug": "x".repeat(41), "name": "Too long"}),
        json!({"slug": "no name"}),
        json!({"slug": "fine-slug", "name": ""}),
        json!({"slug": 42, "name": "Number"}),
        json!({"slug": "fine-slug", "name": "Extra", "plan": "gold"}),
        json!([]),
    ];
    for body in bad_bodies {
        let message = admin
            .post("/api/v1/merchants", body.clone())
            .await
            .error(400, 40001);
        assert!(!message.contains("internal"), "{body}: {message}");
    }
    let merchants = page_items(&admin.get("/api/v1/merchants").await.ok(200));
    assert!(
        merchants.is_empty(),
        "no bad request registered anything: {merchants:?}"
    );
}

#[tokio::test]
async fn merchants_are_listed_in_pages_and_fetched_by_id() {
    let app = spawn_app().await;
    let admin = Rest::new(&app).with_key(&app.admin_key);
    let mut registered = Vec::new();
    for slug in ["shop-a", "shop-b", "shop-c"] {
        registered.push(admin.register_merchant(slug).await.0);
    }

    let mut seen = Vec::new();
    let mut path = "/api/v1/merchants?page_size=2".to_owned();
    for _ in 0..10 {
        let data = admin.get(&path).await.ok(200);
        let items = page_items(&data);
        assert!(items.len() <= 2);
        for item in &items {
            assert_fields(item, MERCHANT_FIELDS);
            seen.push(text(&item["merchant_id"]).to_owned());
        }
        match data["next_page_token"].as_str() {
            Some(token) => {
                path = format!(
                    "/api/v1/merchants?page_size=2&page_token={}",
                    encode_segment(token)
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, registered);

    let merchant = admin
        .get(&format!("/api/v1/merchants/{}", registered[1]))
        .await
        .ok(200);
    assert_fields(&merchant, MERCHANT_FIELDS);
    assert_eq!(merchant["slug"], "shop-b");

    let unknown = uuid::Uuid::new_v4();
    admin
        .get(&format!("/api/v1/merchants/{unknown}"))
        .await
        .error(404, 40401);
    admin
        .get("/api/v1/merchants/not-a-merchant-id")
        .await
        .error(400, 40001);
    admin
        .get("/api/v1/merchants?page_token=garbage")
        .await
        .error(400, 40001);
}

#[tokio::test]
async fn merchant_administration_needs_the_admin_scope() {
    let fixture = rest_fixture("not-an-admin").await;
    let merchant = &fixture.merchant;
    merchant
        .post(
            "/api/v1/merchants",
            json!({"slug": "sneaky", "name": "Sneaky"}),
        )
        .await
        .error(403, 40301);
    merchant.get("/api/v1/merchants").await.error(403, 40301);
    merchant
        .get(&format!("/api/v1/merchants/{}", fixture.merchant_id))
        .await
        .error(403, 40301);
    merchant
        .patch(
            &format!("/api/v1/merchants/{}", fixture.merchant_id),
            json!({"name": "Mine now"}),
        )
        .await
        .error(403, 40301);
}

#[tokio::test]
async fn patching_a_merchant_renames_it_and_suspension_locks_its_keys_out_until_reactivated() {
    let fixture = rest_fixture("suspend-me").await;
    let path = format!("/api/v1/merchants/{}", fixture.merchant_id);

    let renamed = fixture
        .admin
        .patch(&path, json!({"name": "Renamed Shop"}))
        .await
        .ok(200);
    assert_fields(&renamed, MERCHANT_FIELDS);
    assert_eq!(
        (renamed["name"].clone(), renamed["status"].clone()),
        (json!("Renamed Shop"), json!("active"))
    );
    fixture.merchant.get("/api/v1/me").await.ok(200);

    let suspended = fixture
        .admin
        .patch(&path, json!({"status": "suspended"}))
        .await
        .ok(200);
    assert_eq!(suspended["status"], "suspended");
    assert_eq!(
        suspended["name"], "Renamed Shop",
        "absent fields are unchanged"
    );
    fixture.merchant.get("/api/v1/me").await.error(403, 40301);
    fixture
        .merchant
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 5, "idempotency_key": idem()}),
        )
        .await
        .error(403, 40301);

    let reactivated = fixture
        .admin
        .patch(&path, json!({"status": "active"}))
        .await
        .ok(200);
    assert_eq!(reactivated["status"], "active");
    fixture.merchant.get("/api/v1/me").await.ok(200);

    fixture
        .admin
        .patch(&path, json!({"status": "deleted"}))
        .await
        .error(400, 40001);
    fixture
        .admin
        .patch(&path, json!({"name": ""}))
        .await
        .error(400, 40001);
    fixture
        .admin
        .patch(&path, json!({"slug": "renamed"}))
        .await
        .error(400, 40001);
    let unknown = uuid::Uuid::new_v4();
    fixture
        .admin
        .patch(
            &format!("/api/v1/merchants/{unknown}"),
            json!({"name": "Ghost"}),
        )
        .await
        .error(404, 40401);
}

#[tokio::test]
async fn me_returns_the_merchant_and_the_calling_key() {
    let fixture = rest_fixture("who-am-i").await;

    let me = fixture.merchant.get("/api/v1/me").await.ok(200);
    assert_fields(&me, &["merchant", "api_key"]);
    assert_fields(&me["merchant"], MERCHANT_FIELDS);
    assert_eq!(me["merchant"]["merchant_id"], fixture.merchant_id.as_str());
    assert_fields(&me["api_key"], API_KEY_FIELDS);

    let admin_me = fixture.admin.get("/api/v1/me").await.ok(200);
    assert!(
        admin_me["merchant"].is_null(),
        "a platform key has no merchant: {admin_me}"
    );
    let admin_scopes = admin_me["api_key"]["scopes"]
        .as_array()
        .expect("scopes")
        .clone();
    assert!(admin_scopes.contains(&json!("admin")), "{admin_me}");

    let acting = fixture
        .admin
        .acting_for(&fixture.merchant_id)
        .get("/api/v1/me")
        .await
        .ok(200);
    assert_eq!(
        acting["merchant"]["merchant_id"],
        fixture.merchant_id.as_str()
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Authentication, scopes, acting for a merchant
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_malformed_or_unknown_key_is_401() {
    let fixture = rest_fixture("locked-door").await;
    fixture.anonymous.get("/api/v1/me").await.error(401, 40101);
    fixture
        .anonymous
        .get("/api/v1/points/accounts/u1")
        .await
        .error(401, 40101);
    fixture
        .anonymous
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 1, "idempotency_key": "k"}),
        )
        .await
        .error(401, 40101);

    // A well-formed key whose checksum no longer matches once a character changes.
    let me = fixture.merchant.get("/api/v1/me").await.ok(200);
    let last4 = text(&me["api_key"]["last4"]).to_owned();
    let key = fixture.merchant.key().expect("key").to_owned();
    let altered_last = if key.ends_with('A') { 'B' } else { 'A' };
    let altered = format!("{}{altered_last}", &key[..key.len() - 1]);
    assert!(!altered.ends_with(&last4));
    for bad_key in ["nonsense", "lp_live_", "", altered.as_str()] {
        fixture
            .anonymous
            .with_key(bad_key)
            .get("/api/v1/me")
            .await
            .error(401, 40101);
    }
    // Header bytes that are not visible ASCII are refused before any gRPC call.
    let request = fixture.anonymous.request(Method::GET, "/api/v1/me").header(
        "x-api-key",
        header::HeaderValue::from_bytes(b"lp_live_\xe9\xe9").expect("opaque header bytes"),
    );
    fixture.anonymous.send(request).await.error(401, 40101);
}

#[tokio::test]
async fn a_key_without_the_scope_is_403_and_one_with_it_works() {
    let fixture = rest_fixture("scoped-keys").await;
    let reader = fixture
        .anonymous
        .with_key(&create_key(&fixture.merchant, &["points:read"]).await);

    reader.get("/api/v1/points/accounts/u1").await.ok(200);
    reader
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 5, "idempotency_key": idem()}),
        )
        .await
        .error(403, 40301);
    reader
        .put("/api/v1/rules/default", rule_body("EUR", "1.00", 1))
        .await
        .error(403, 40301);
    reader.get("/api/v1/rules").await.error(403, 40301);
    reader.get("/api/v1/api-keys").await.error(403, 40301);
    reader
        .post(
            "/api/v1/api-keys",
            json!({"name": "escalate", "scopes": ["keys:manage"]}),
        )
        .await
        .error(403, 40301);
    reader.get("/api/v1/merchants").await.error(403, 40301);
}

#[tokio::test]
async fn an_admin_key_acts_for_a_merchant_with_x_merchant_id_and_a_merchant_key_cannot() {
    let fixture = rest_fixture("acted-for").await;
    let (other_id, other_key) = fixture.admin.register_merchant("other-shop").await;
    let acting = fixture.admin.acting_for(&fixture.merchant_id);

    let data = acting
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 40, "idempotency_key": idem()}),
        )
        .await
        .ok(201);
    mutation_entry(&data, 40, false);
    let account = fixture
        .merchant
        .get("/api/v1/points/accounts/u1")
        .await
        .ok(200);
    assert_eq!(
        account["balance"], 40,
        "the admin wrote into the merchant's ledger"
    );
    let other = fixture
        .anonymous
        .with_key(&other_key)
        .get("/api/v1/points/accounts/u1")
        .await
        .ok(200);
    assert_eq!(other["balance"], 0, "and into no one else's");
    let keys = page_items(&acting.get("/api/v1/api-keys").await.ok(200));
    assert_eq!(
        keys.len(),
        1,
        "the merchant's keys, not the platform's: {keys:?}"
    );

    // A merchant key naming another merchant is refused; an unknown or malformed merchant id is refused too.
    fixture
        .merchant
        .acting_for(&other_id)
        .get("/api/v1/points/accounts/u1")
        .await
        .error(403, 40301);
    fixture
        .admin
        .acting_for(&uuid::Uuid::new_v4().to_string())
        .get("/api/v1/points/accounts/u1")
        .await
        .error(404, 40401);
    fixture
        .admin
        .acting_for("not-a-merchant")
        .get("/api/v1/points/accounts/u1")
        .await
        .error(400, 40001);

    // Without x-merchant-id an admin key has no ledger to write to.
    fixture
        .admin
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 1, "idempotency_key": idem()}),
        )
        .await
        .error(403, 40301);
}

// ---------------------------------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn api_keys_are_created_listed_rotated_and_revoked() {
    let fixture = rest_fixture("key-ring").await;
    let merchant = &fixture.merchant;

    let expires_at = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let created = merchant
        .post("/api/v1/api-keys", json!({"name": "POS 3", "scopes": ["points:read", "points:write"], "expires_at": expires_at}))
        .await
        .ok(201);
    assert_fields(&created, API_KEY_FIELDS);
    assert_eq!(created["name"], "POS 3");
    assert_eq!(created["scopes"], json!(["points:read", "points:write"]));
    assert_time(&created["expires_at"]);
    let key_id = text(&created["key_id"]).to_owned();
    let pos = fixture.anonymous.with_key(text(&created["key"]));
    pos.get("/api/v1/points/accounts/u1").await.ok(200);

    let listed = page_items(&merchant.get("/api/v1/api-keys?page_size=500").await.ok(200));
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|key| key.get("key").is_none()),
        "no plaintext in lists: {listed:?}"
    );
    let first_page = merchant.get("/api/v1/api-keys?page_size=1").await.ok(200);
    assert_eq!(page_items(&first_page).len(), 1);
    assert!(first_page["next_page_token"].is_string());

    let rotated = merchant
        .post(
            &format!("/api/v1/api-keys/{key_id}/rotate"),
            json!({"grace_seconds": 0}),
        )
        .await
        .ok(201);
    assert_fields(&rotated, &["api_key", "previous"]);
    assert_fields(&rotated["api_key"], API_KEY_FIELDS);
    assert_eq!(
        rotated["api_key"]["scopes"],
        json!(["points:read", "points:write"]),
        "rotation keeps the scopes"
    );
    assert_eq!(rotated["previous"]["key_id"], key_id.as_str());
    assert!(rotated["previous"].get("key").is_none());
    let rotated_key = text(&rotated["api_key"]["key"]).to_owned();
    pos.get("/api/v1/points/accounts/u1")
        .await
        .error(401, 40101);
    let successor = fixture.anonymous.with_key(&rotated_key);
    successor.get("/api/v1/points/accounts/u1").await.ok(200);

    // Rotation without a body means grace 0; a grace period keeps the old key working.
    let new_id = text(&rotated["api_key"]["key_id"]).to_owned();
    let empty_body = merchant.request(Method::POST, &format!("/api/v1/api-keys/{new_id}/rotate"));
    let graced = merchant.send(empty_body).await.ok(201);
    successor
        .get("/api/v1/points/accounts/u1")
        .await
        .error(401, 40101);
    let third_id = text(&graced["api_key"]["key_id"]).to_owned();
    let third = fixture.anonymous.with_key(text(&graced["api_key"]["key"]));
    let with_grace = merchant
        .post(
            &format!("/api/v1/api-keys/{third_id}/rotate"),
            json!({"grace_seconds": 3600}),
        )
        .await
        .ok(201);
    assert_time(&with_grace["previous"]["expires_at"]);
    third.get("/api/v1/points/accounts/u1").await.ok(200);

    let revoked = merchant
        .delete(&format!("/api/v1/api-keys/{third_id}"))
        .await
        .ok(200);
    assert_fields(&revoked, API_KEY_FIELDS);
    assert_eq!(revoked["status"], "revoked");
    third
        .get("/api/v1/points/accounts/u1")
        .await
        .error(401, 40101);

    let unknown = uuid::Uuid::new_v4();
    merchant
        .delete(&format!("/api/v1/api-keys/{unknown}"))
        .await
        .error(404, 40401);
    merchant
        .post(&format!("/api/v1/api-keys/{unknown}/rotate"), json!({}))
        .await
        .error(404, 40401);
    merchant
        .delete("/api/v1/api-keys/not-a-key-id")
        .await
        .error(400, 40001);
    merchant
        .post(
            &format!("/api/v1/api-keys/{third_id}/rotate"),
            json!({"grace_seconds": 604801}),
        )
        .await
        .error(400, 40001);
    merchant
        .post(
            &format!("/api/v1/api-keys/{third_id}/rotate"),
            json!({"grace_seconds": -1}),
        )
        .await
        .error(400, 40001);
}

#[tokio::test]
async fn creating_a_key_with_a_bad_name_scope_or_expiry_is_400() {
    let fixture = rest_fixture("bad-keys").await;
    let past = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let bad_bodies = [
        json!({"name": "x", "scopes": ["points:fly"]}),
        json!({"name": "x", "scopes": ["admin"]}),
        json!({"name": "", "scopes": ["points:read"]}),
        json!({"name": "x".repeat(101), "scopes": ["points:read"]}),
        json!({"name": "x", "scopes": "points:read"}),
        json!({"name": "x", "scopes": ["points:read"], "expires_at": "tomorrow"}),
        json!({"name": "x", "scopes": ["points:read"], "expires_at": past}),
        json!({"scopes": ["points:read"]}),
    ];
    for body in bad_bodies {
        // A merchant key asking for the admin scope is a bad request, not a permission problem: keys:manage is
        // what creating a key needs, and the caller has it.
        fixture
            .merchant
            .post("/api/v1/api-keys", body.clone())
            .await
            .error(400, 40001);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Points
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn earn_spend_adjust_and_reverse_move_the_balance_and_answer_201() {
    let fixture = rest_fixture("ledger-shop").await;
    let merchant = &fixture.merchant;

    let earned = merchant
        .post(
            "/api/v1/points/earn",
            json!({
                "uid": "user-42", "points": 120, "idempotency_key": "order-1001-earn", "reference": "order-1001",
                "description": "Purchase", "metadata": {"store": "downtown"},
            }),
        )
        .await
        .ok(201);
    let earn_entry = mutation_entry(&earned, 120, false);
    assert_eq!(earn_entry["kind"], "earn");
    assert_eq!(earn_entry["delta"], 120);
    assert_eq!(earn_entry["balance_after"], 120);
    assert_eq!(earn_entry["uid"], "user-42");
    assert_eq!(earn_entry["reference"], "order-1001");
    assert_eq!(earn_entry["metadata"], json!({"store": "downtown"}));
    assert_time(&earn_entry["created_at"]);

    let spent = merchant
        .post(
            "/api/v1/points/spend",
            json!({"uid": "user-42", "points": 50, "idempotency_key": "order-1002-spend"}),
        )
        .await
        .ok(201);
    let spend_entry = mutation_entry(&spent, 70, false);
    assert_eq!(
        (spend_entry["kind"].clone(), spend_entry["delta"].clone()),
        (json!("spend"), json!(-50))
    );
    assert_eq!(
        spend_entry["metadata"],
        json!({}),
        "metadata is an object even when none was given"
    );

    let adjusted = merchant
        .post(
            "/api/v1/points/adjust",
            json!({"uid": "user-42", "delta": -20, "reason": "goodwill correction", "idempotency_key": "adj-1"}),
        )
        .await
        .ok(201);
    let adjust_entry = mutation_entry(&adjusted, 50, false);
    assert_eq!(
        (adjust_entry["kind"].clone(), adjust_entry["delta"].clone()),
        (json!("adjust"), json!(-20))
    );

    let spend_id = text(&spend_entry["entry_id"]).to_owned();
    let reversed = merchant
        .post(
            &format!("/api/v1/points/entries/{spend_id}/reverse"),
            json!({"idempotency_key": "refund-1", "reason": "refund"}),
        )
        .await
        .ok(201);
    let reverse_entry = mutation_entry(&reversed, 100, false);
    assert_eq!(reverse_entry["kind"], "reverse");
    assert_eq!(reverse_entry["delta"], 50);
    assert_eq!(reverse_entry["reverses_entry_id"], spend_id.as_str());

    // Each entry is reversed at most once; a second reversal with a new key finds the reversal already there.
    let again = merchant
        .post(
            &format!("/api/v1/points/entries/{spend_id}/reverse"),
            json!({"idempotency_key": "refund-2"}),
        )
        .await;
    let message = again.error(409, 40901);
    assert!(message.contains("already reversed"), "{message}");

    let account = merchant
        .get("/api/v1/points/accounts/user-42")
        .await
        .ok(200);
    assert_fields(&account, &["uid", "balance", "expiring"]);
    assert_eq!(account["balance"], 100);
}

#[tokio::test]
async fn a_repeated_request_is_replayed_with_200_and_a_changed_one_is_409_idempotency_conflict() {
    let fixture = rest_fixture("replay-shop").await;
    let merchant = &fixture.merchant;
    let body = json!({"uid": "u1", "points": 30, "idempotency_key": "same-key"});

    let first = merchant
        .post("/api/v1/points/earn", body.clone())
        .await
        .ok(201);
    let replay = merchant
        .post("/api/v1/points/earn", body.clone())
        .await
        .ok(200);
    let first_entry = mutation_entry(&first, 30, false);
    let replayed_entry = mutation_entry(&replay, 30, true);
    assert_eq!(first_entry["entry_id"], replayed_entry["entry_id"]);
    assert_eq!(
        merchant.get("/api/v1/points/accounts/u1").await.ok(200)["balance"],
        30,
        "nothing changed"
    );

    let changed = json!({"uid": "u1", "points": 31, "idempotency_key": "same-key"});
    merchant
        .post("/api/v1/points/earn", changed)
        .await
        .error(409, 40902);
    let other_operation = json!({"uid": "u1", "points": 30, "idempotency_key": "same-key"});
    merchant
        .post("/api/v1/points/spend", other_operation)
        .await
        .error(409, 40902);

    // Failed requests are not recorded, so the corrected retry may reuse the key.
    merchant
        .post(
            "/api/v1/points/spend",
            json!({"uid": "u1", "points": 999, "idempotency_key": "retry-me"}),
        )
        .await
        .error(422, 42201);
    let spent = merchant
        .post(
            "/api/v1/points/spend",
            json!({"uid": "u1", "points": 10, "idempotency_key": "retry-me"}),
        )
        .await
        .ok(201);
    mutation_entry(&spent, 20, false);
    let replayed_spend = merchant
        .post(
            "/api/v1/points/spend",
            json!({"uid": "u1", "points": 10, "idempotency_key": "retry-me"}),
        )
        .await
        .ok(200);
    mutation_entry(&replayed_spend, 20, true);
}

#[tokio::test]
async fn spending_or_debiting_more_than_the_balance_is_422_insufficient_points() {
    let fixture = rest_fixture("poor-shop").await;
    let merchant = &fixture.merchant;
    earn(merchant, "u1", 10).await;
    let message = merchant
        .post(
            "/api/v1/points/spend",
            json!({"uid": "u1", "points": 11, "idempotency_key": idem()}),
        )
        .await
        .error(422, 42201);
    assert!(!message.is_empty());
    merchant
        .post(
            "/api/v1/points/spend",
            json!({"uid": "nobody", "points": 1, "idempotency_key": idem()}),
        )
        .await
        .error(422, 42201);
    merchant
        .post(
            "/api/v1/points/adjust",
            json!({"uid": "u1", "delta": -11, "reason": "too much", "idempotency_key": idem()}),
        )
        .await
        .error(422, 42201);

    // Reversing an earn whose points were spent would take the balance below zero.
    let earned = earn(merchant, "u2", 10).await;
    merchant
        .post(
            "/api/v1/points/spend",
            json!({"uid": "u2", "points": 10, "idempotency_key": idem()}),
        )
        .await
        .ok(201);
    let earned_id = text(&earned["entry_id"]);
    merchant
        .post(
            &format!("/api/v1/points/entries/{earned_id}/reverse"),
            json!({"idempotency_key": idem()}),
        )
        .await
        .error(422, 42201);
    assert_eq!(
        merchant.get("/api/v1/points/accounts/u1").await.ok(200)["balance"],
        10,
        "nothing was written"
    );
}

#[tokio::test]
async fn earning_by_amount_converts_through_the_rule_and_without_one_is_422_no_applicable_rule() {
    let fixture = rest_fixture("amount-shop").await;
    let merchant = &fixture.merchant;
    let by_amount =
        json!({"uid": "u1", "amount": "12.50", "currency": "EUR", "idempotency_key": idem()});
    merchant
        .post("/api/v1/points/earn", by_amount.clone())
        .await
        .error(422, 42202);
    merchant
        .post(
            "/api/v1/points/calculate",
            json!({"amount": "12.50", "currency": "EUR"}),
        )
        .await
        .error(422, 42202);

    merchant
        .put("/api/v1/rules/default", rule_body("EUR", "1.00", 10))
        .await
        .ok(200);
    let earned = merchant
        .post("/api/v1/points/earn", by_amount)
        .await
        .ok(201);
    let entry = mutation_entry(&earned, 125, false);
    assert_eq!(entry["rule_code"], "default");
    assert_eq!(entry["rule_version"], 1);
    assert_eq!(
        text(&entry["amount"]).trim_end_matches('0'),
        "12.5",
        "the money amount is recorded: {entry}"
    );
    assert_eq!(entry["currency"], "EUR");

    // Another currency, or an unknown rule code, has no applicable rule.
    merchant
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u1", "amount": "5", "currency": "USD", "idempotency_key": idem()}),
        )
        .await
        .error(422, 42202);
    merchant
        .post(
            "/api/v1/points/earn",
            json!({"uid": "u1", "amount": "5", "currency": "EUR", "rule_code": "vip", "idempotency_key": idem()}),
        )
        .await
        .error(422, 42202);
}

#[tokio::test]
async fn bad_earn_spend_adjust_and_reverse_bodies_are_400() {
    let fixture = rest_fixture("picky-shop").await;
    let merchant = &fixture.merchant;
    let entry = earn(merchant, "u1", 10).await;
    let entry_id = text(&entry["entry_id"]).to_owned();
    let long_uid = "u".repeat(129);
    let long_key = "k".repeat(129);
    let big_metadata = json!({"blob": "x".repeat(5000)});
    let cases = [
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 0, "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": -5, "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "", "points": 5, "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": long_uid, "points": 5, "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 5, "idempotency_key": ""}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 5, "idempotency_key": long_key}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 5, "amount": "1.00", "currency": "EUR", "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "amount": "ten", "currency": "EUR", "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "amount": "1.00", "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 5, "idempotency_key": "a", "metadata": big_metadata}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 5, "idempotency_key": "a", "metadata": [1, 2]}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 5, "idempotency_key": "a", "expires_at": "soon"}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": "5", "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 5.5, "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/earn",
            json!({"uid": "u1", "points": 5, "idempotency_key": "a", "bonus": true}),
        ),
        (
            "/api/v1/points/spend",
            json!({"uid": "u1", "points": 0, "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/spend",
            json!({"uid": "u1", "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/adjust",
            json!({"uid": "u1", "delta": 0, "reason": "zero", "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/adjust",
            json!({"uid": "u1", "delta": 5, "idempotency_key": "a"}),
        ),
        (
            "/api/v1/points/adjust",
            json!({"uid": "u1", "delta": 5, "reason": "", "idempotency_key": "a"}),
        ),
    ];
    for (path, body) in cases {
        let message = merchant.post(path, body.clone()).await.error(400, 40001);
        assert!(
            !message.to_lowercase().contains("internal"),
            "{path} {body}: {message}"
        );
    }
    let reverse_path = format!("/api/v1/points/entries/{entry_id}/reverse");
    merchant
        .post(&reverse_path, json!({}))
        .await
        .error(400, 40001);
    merchant
        .post(&reverse_path, json!({"idempotency_key": ""}))
        .await
        .error(400, 40001);
    merchant
        .post(
            "/api/v1/points/entries/not-an-entry/reverse",
            json!({"idempotency_key": "a"}),
        )
        .await
        .error(400, 40001);
    merchant
        .post(
            "/api/v1/points/entries/0/reverse",
            json!({"idempotency_key": "a"}),
        )
        .await
        .error(400, 40001);
    merchant
        .post(
            &format!("/api/v1/points/entries/{UNKNOWN_ENTRY_ID}/reverse"),
            json!({"idempotency_key": "a"}),
        )
        .await
        .error(404, 40401);

    assert_eq!(
        merchant.get("/api/v1/points/accounts/u1").await.ok(200)["balance"],
        10,
        "no bad request wrote anything"
    );
}

#[tokio::test]
async fn entries_are_fetched_by_id_and_listed_per_uid_with_filters_and_pages() {
    let fixture = rest_fixture("history-shop").await;
    let merchant = &fixture.merchant;
    // A uid with characters that must be percent-encoded in the path.
    let uid = "user 7/α";
    let uid_path = encode_segment(uid);
    let expires_at = (chrono::Utc::now() + chrono::Duration::days(10)).to_rfc3339();
    let first = merchant
        .post(
            "/api/v1/points/earn",
            json!({"uid": uid, "points": 100, "idempotency_key": idem(), "expires_at": expires_at}),
        )
        .await
        .ok(201);
    earn(merchant, uid, 20).await;
    merchant
        .post(
            "/api/v1/points/spend",
            json!({"uid": uid, "points": 30, "idempotency_key": idem()}),
        )
        .await
        .ok(201);

    let entry_id = text(&first["entry"]["entry_id"]).to_owned();
    let entry = merchant
        .get(&format!("/api/v1/points/entries/{entry_id}"))
        .await
        .ok(200);
    assert_fields(&entry, ENTRY_FIELDS);
    assert_eq!(entry["uid"], uid);
    assert_time(&entry["expires_at"]);

    let account = merchant
        .get(&format!("/api/v1/points/accounts/{uid_path}"))
        .await
        .ok(200);
    assert_eq!(account["uid"], uid);
    assert_eq!(account["balance"], 90);
    let expiring = account["expiring"].as_array().expect("expiring").clone();
    assert_eq!(expiring.len(), 1, "the expiring lot shows up: {account}");
    assert_fields(&expiring[0], &["points", "expires_at"]);
    assert_eq!(
        expiring[0]["points"], 70,
        "the spend consumed the expiring lot first: {account}"
    );
    let unknown_uid = merchant
        .get("/api/v1/points/accounts/never-seen")
        .await
        .ok(200);
    assert_eq!(
        (
            unknown_uid["balance"].clone(),
            unknown_uid["expiring"].clone()
        ),
        (json!(0), json!([]))
    );

    let all = page_items(
        &merchant
            .get(&format!("/api/v1/points/accounts/{uid_path}/entries"))
            .await
            .ok(200),
    );
    assert_eq!(all.len(), 3);
    let kinds: Vec<&str> = all.iter().map(|entry| text(&entry["kind"])).collect();
    assert_eq!(kinds, ["spend", "earn", "earn"], "newest first");
    for entry in &all {
        assert_fields(entry, ENTRY_FIELDS);
    }
    let earns = page_items(
        &merchant
            .get(&format!(
                "/api/v1/points/accounts/{uid_path}/entries?kind=earn"
            ))
            .await
            .ok(200),
    );
    assert_eq!(earns.len(), 2);

    let mut collected = Vec::new();
    let mut path = format!("/api/v1/points/accounts/{uid_path}/entries?page_size=2");
    for _ in 0..5 {
        let data = merchant.get(&path).await.ok(200);
        collected.extend(page_items(&data));
        match data["next_page_token"].as_str() {
            Some(token) => {
                path = format!(
                    "/api/v1/points/accounts/{uid_path}/entries?page_size=2&page_token={}",
                    encode_segment(token)
                )
            }
            None => break,
        }
    }
    assert_eq!(collected, all);

    let hour_ago = encode_segment(&(chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339());
    let in_range = merchant
        .get(&format!(
            "/api/v1/points/accounts/{uid_path}/entries?from={hour_ago}"
        ))
        .await
        .ok(200);
    assert_eq!(page_items(&in_range).len(), 3);
    let before = merchant
        .get(&format!(
            "/api/v1/points/accounts/{uid_path}/entries?to={hour_ago}"
        ))
        .await
        .ok(200);
    assert!(page_items(&before).is_empty());

    merchant
        .get(&format!("/api/v1/points/entries/{UNKNOWN_ENTRY_ID}"))
        .await
        .error(404, 40401);
    merchant
        .get("/api/v1/points/entries/not-an-entry")
        .await
        .error(400, 40001);

    // Entries are private to their merchant.
    let (_, other_key) = fixture.admin.register_merchant("nosy-shop").await;
    let nosy = fixture.anonymous.with_key(&other_key);
    nosy.get(&format!("/api/v1/points/entries/{entry_id}"))
        .await
        .error(404, 40401);
    assert_eq!(
        nosy.get(&format!("/api/v1/points/accounts/{uid_path}"))
            .await
            .ok(200)["balance"],
        0
    );
}

#[tokio::test]
async fn bad_path_and_query_values_are_400() {
    let fixture = rest_fixture("query-shop").await;
    let merchant = &fixture.merchant;
    let long_uid = "u".repeat(129);
    let paths = [
        "/api/v1/points/accounts/u1/entries?page_size=0".to_owned(),
        "/api/v1/points/accounts/u1/entries?page_size=501".to_owned(),
        "/api/v1/points/accounts/u1/entries?page_size=ten".to_owned(),
        "/api/v1/points/accounts/u1/entries?page_size=-1".to_owned(),
        "/api/v1/points/accounts/u1/entries?page_token=not-a-token".to_owned(),
        // A multi-byte character in a token once panicked the server's token parser (a 503 here).
        "/api/v1/points/accounts/u1/entries?page_token=%C3%A91".to_owned(),
        "/api/v1/rules?page_token=0%E2%82%AC0".to_owned(),
        "/api/v1/points/accounts/u1/entries?kind=gift".to_owned(),
        "/api/v1/points/accounts/u1/entries?from=yesterday".to_owned(),
        "/api/v1/points/accounts/u1/entries?to=2025-13-01T00:00:00Z".to_owned(),
        "/api/v1/points/accounts/u1/entries?colour=blue".to_owned(),
        format!("/api/v1/points/accounts/{long_uid}"),
        format!("/api/v1/points/accounts/{long_uid}/entries"),
        "/api/v1/points/accounts/%00/entries".to_owned(),
        "/api/v1/points/entries/-1".to_owned(),
        "/api/v1/points/entries/1.5".to_owned(),
        "/api/v1/points/entries/99999999999999999999999".to_owned(),
        "/api/v1/merchants?page_size=0".to_owned(),
        "/api/v1/api-keys?page_size=100000000000".to_owned(),
        "/api/v1/rules?page_size=abc".to_owned(),
        "/api/v1/rules/NOT%20A%20CODE".to_owned(),
        format!("/api/v1/rules/{}", "r".repeat(41)),
        "/api/v1/rules/default?at=noon".to_owned(),
        "/api/v1/rules/default?version=2".to_owned(),
        "/api/v1/rules/default/versions?page_size=0".to_owned(),
        "/api/v1/me?verbose=true".to_owned(),
        "/api/v1/points/accounts/u1?at=2025-01-01T00:00:00Z".to_owned(),
        "/api/v1/points/entries/1?expand=all".to_owned(),
        format!("/api/v1/merchants/{}?fields=name", fixture.merchant_id),
    ];
    for path in &paths {
        let message = merchant.get(path).await.error(400, 40001);
        assert!(
            !message.to_lowercase().contains("internal"),
            "{path}: {message}"
        );
    }
    // Routes without query parameters refuse them too, writes included.
    let earn_body = json!({"uid": "u1", "points": 5, "idempotency_key": idem()});
    merchant
        .post("/api/v1/points/earn?dry_run=true", earn_body)
        .await
        .error(400, 40001);
    merchant
        .put(
            "/api/v1/rules/default?mode=replace",
            rule_body("EUR", "1", 1),
        )
        .await
        .error(400, 40001);
    assert_eq!(
        merchant.get("/api/v1/points/accounts/u1").await.ok(200)["balance"],
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn a_batch_applies_each_operation_or_with_atomic_all_or_none() {
    let fixture = rest_fixture("batch-shop").await;
    let merchant = &fixture.merchant;

    let mixed = json!({"operations": [
        {"op": "earn", "uid": "u1", "points": 100, "idempotency_key": "b-1"},
        {"op": "spend", "uid": "u1", "points": 500, "idempotency_key": "b-2"},
        {"op": "adjust", "uid": "u1", "delta": -10, "reason": "fix", "idempotency_key": "b-3"},
        {"op": "spend", "uid": "u1", "points": 0, "idempotency_key": "b-4"},
    ]});
    let data = merchant
        .post("/api/v1/points/batch", mixed.clone())
        .await
        .ok(200);
    assert_fields(&data, &["results"]);
    let results = data["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 4);
    for (index, result) in results.iter().enumerate() {
        assert_fields(result, &["index", "code", "message", "data"]);
        assert_eq!(result["index"], index);
    }
    assert_eq!(results[0]["code"], 0);
    mutation_entry(&results[0]["data"], 100, false);
    assert_eq!(results[1]["code"], 42201);
    assert!(results[1]["data"].is_null());
    assert_eq!(results[2]["code"], 0);
    mutation_entry(&results[2]["data"], 90, false);
    assert_eq!(results[3]["code"], 40001);
    assert_eq!(
        merchant.get("/api/v1/points/accounts/u1").await.ok(200)["balance"],
        90
    );

    // The same batch again replays the applied items.
    let replayed = merchant.post("/api/v1/points/batch", mixed).await.ok(200);
    assert_eq!(replayed["results"][0]["data"]["replayed"], true);

    // Atomic: one failing operation fails the call with its code, and nothing is applied.
    let atomic = json!({"atomic": true, "operations": [
        {"op": "earn", "uid": "u2", "points": 100, "idempotency_key": "a-1"},
        {"op": "spend", "uid": "u2", "points": 500, "idempotency_key": "a-2"},
    ]});
    let message = merchant
        .post("/api/v1/points/batch", atomic)
        .await
        .error(422, 42201);
    assert!(
        message.contains("operations[1]"),
        "the failing operation is named: {message}"
    );
    assert_eq!(
        merchant.get("/api/v1/points/accounts/u2").await.ok(200)["balance"],
        0
    );
    let atomic_ok = json!({"atomic": true, "operations": [
        {"op": "earn", "uid": "u2", "points": 100, "idempotency_key": "a-1"},
        {"op": "spend", "uid": "u2", "points": 60, "idempotency_key": "a-2"},
    ]});
    let applied = merchant
        .post("/api/v1/points/batch", atomic_ok)
        .await
        .ok(200);
    assert_eq!(applied["results"][1]["code"], 0);
    assert_eq!(
        merchant.get("/api/v1/points/accounts/u2").await.ok(200)["balance"],
        40
    );

    let too_many: Vec<Value> =
        (0..1001).map(|index| json!({"op": "earn", "uid": "u3", "points": 1, "idempotency_key": format!("many-{index}")})).collect();
    let bad_batches = [
        json!({"operations": []}),
        json!({"operations": too_many}),
        json!({"operations": [{"op": "reverse", "entry_id": "x", "idempotency_key": "r"}]}),
        json!({"operations": [{"uid": "u3", "points": 1, "idempotency_key": "no-op"}]}),
        json!({"atomic": "yes", "operations": []}),
        json!({"operations": [{"op": "earn", "uid": "u3", "points": 1, "idempotency_key": "x", "extra": 1}]}),
    ];
    for body in bad_batches {
        merchant
            .post("/api/v1/points/batch", body)
            .await
            .error(400, 40001);
    }
}

#[tokio::test]
async fn calculate_converts_an_amount_with_the_rule_in_effect() {
    let fixture = rest_fixture("calc-shop").await;
    let merchant = &fixture.merchant;
    merchant
        .put("/api/v1/rules/default", rule_body("EUR", "1.00", 10))
        .await
        .ok(200);
    merchant
        .put("/api/v1/rules/vip", rule_body("EUR", "1.00", 20))
        .await
        .ok(200);

    let calculation = merchant
        .post(
            "/api/v1/points/calculate",
            json!({"amount": "12.50", "currency": "EUR"}),
        )
        .await
        .ok(200);
    assert_fields(&calculation, &["points", "rule_code", "rule_version"]);
    assert_eq!(calculation["points"], 125);
    assert_eq!(calculation["rule_code"], "default");
    assert_eq!(calculation["rule_version"], 1);
    let vip = merchant
        .post(
            "/api/v1/points/calculate",
            json!({"amount": "12.50", "currency": "EUR", "rule_code": "vip"}),
        )
        .await
        .ok(200);
    assert_eq!(vip["points"], 250);

    let long_ago = json!({"amount": "1", "currency": "EUR", "at": "2000-01-01T00:00:00Z"});
    merchant
        .post("/api/v1/points/calculate", long_ago)
        .await
        .error(422, 42202);
    for body in [
        json!({"amount": "abc", "currency": "EUR"}),
        json!({"amount": "-1", "currency": "EUR"}),
        json!({"amount": "1", "currency": "euro"}),
        json!({"amount": "1"}),
        json!({"amount": 1, "currency": "EUR"}),
        json!({"amount": "1", "currency": "EUR", "at": "later"}),
        json!({"amount": "1", "currency": "EUR", "rule_code": "Not A Code"}),
    ] {
        merchant
            .post("/api/v1/points/calculate", body)
            .await
            .error(400, 40001);
    }
    assert_eq!(
        page_items(
            &merchant
                .get("/api/v1/points/accounts/u1/entries")
                .await
                .ok(200)
        )
        .len(),
        0,
        "nothing written"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn rules_are_put_fetched_now_and_at_a_time_listed_and_versioned() {
    let fixture = rest_fixture("rules-shop").await;
    let merchant = &fixture.merchant;

    let first = merchant
        .put("/api/v1/rules/default", rule_body("EUR", "1.00", 10))
        .await
        .ok(200);
    assert_fields(&first, RULE_VERSION_FIELDS);
    assert_eq!(
        (first["code"].clone(), first["version"].clone()),
        (json!("default"), json!(1))
    );
    assert_eq!(first["points_per_unit"], 10);
    assert_time(&first["effective_from"]);
    let between = first["effective_from"].clone();

    let second_body = json!({
        "currency": "EUR", "unit_amount": "2.00", "points_per_unit": 15, "rounding": "round", "min_amount": "5.00",
        "max_points": 1000, "points_ttl_days": 365,
    });
    let second = merchant
        .put("/api/v1/rules/default", second_body)
        .await
        .ok(200);
    assert_eq!(second["version"], 2);
    assert_eq!(second["min_amount"], "5.00");
    assert_eq!(
        (
            second["max_points"].clone(),
            second["points_ttl_days"].clone()
        ),
        (json!(1000), json!(365))
    );

    let current = merchant.get("/api/v1/rules/default").await.ok(200);
    assert_fields(&current, RULE_VERSION_FIELDS);
    assert_eq!(current["version"], 2);
    let then = merchant
        .get(&format!(
            "/api/v1/rules/default?at={}",
            encode_segment(text(&between))
        ))
        .await
        .ok(200);
    assert_eq!(
        then["version"], 1,
        "the version effective at the first one's start"
    );
    merchant
        .get("/api/v1/rules/default?at=2000-01-01T00:00:00Z")
        .await
        .error(404, 40401);

    let versions = page_items(&merchant.get("/api/v1/rules/default/versions").await.ok(200));
    let numbers: Vec<i64> = versions
        .iter()
        .map(|version| int(&version["version"]))
        .collect();
    assert_eq!(numbers, [2, 1], "newest first");
    let one = merchant
        .get("/api/v1/rules/default/versions?page_size=1")
        .await
        .ok(200);
    assert_eq!(page_items(&one).len(), 1);
    assert!(one["next_page_token"].is_string());

    merchant
        .put("/api/v1/rules/vip", rule_body("EUR", "1.00", 20))
        .await
        .ok(200);
    let rules = page_items(&merchant.get("/api/v1/rules").await.ok(200));
    let codes: Vec<&str> = rules.iter().map(|rule| text(&rule["code"])).collect();
    assert_eq!(codes.len(), 2, "{codes:?}");
    assert!(
        codes.contains(&"default") && codes.contains(&"vip"),
        "{codes:?}"
    );

    merchant
        .get("/api/v1/rules/unknown")
        .await
        .error(404, 40401);
    let versions_of_unknown = merchant.get("/api/v1/rules/unknown/versions").await;
    if versions_of_unknown.status == StatusCode::OK {
        assert!(page_items(&versions_of_unknown.ok(200)).is_empty());
    } else {
        versions_of_unknown.error(404, 40401);
    }
}

#[tokio::test]
async fn bad_rule_bodies_are_400() {
    let fixture = rest_fixture("bad-rules").await;
    let merchant = &fixture.merchant;
    let bodies = [
        json!({"currency": "EUR", "unit_amount": "0", "points_per_unit": 1, "rounding": "floor"}),
        json!({"currency": "EUR", "unit_amount": "-1", "points_per_unit": 1, "rounding": "floor"}),
        json!({"currency": "EUR", "unit_amount": "one", "points_per_unit": 1, "rounding": "floor"}),
        json!({"currency": "EURO", "unit_amount": "1", "points_per_unit": 1, "rounding": "floor"}),
        json!({"currency": "EUR", "unit_amount": "1", "points_per_unit": 0, "rounding": "floor"}),
        json!({"currency": "EUR", "unit_amount": "1", "points_per_unit": 1, "rounding": "bankers"}),
        json!({"currency": "EUR", "unit_amount": "1", "points_per_unit": 1}),
        json!({"currency": "EUR", "unit_amount": "1", "points_per_unit": 1, "rounding": "floor", "version": 7}),
        json!({"currency": "EUR", "unit_amount": "1", "points_per_unit": 1, "rounding": "floor", "code": "default"}),
        json!({"currency": "EUR", "unit_amount": "1", "points_per_unit": 1, "rounding": "floor",
               "effective_from": "2030-01-01T00:00:00Z", "effective_to": "2029-01-01T00:00:00Z"}),
    ];
    for body in bodies {
        merchant
            .put("/api/v1/rules/default", body)
            .await
            .error(400, 40001);
    }
    merchant
        .put("/api/v1/rules/Bad%20Code", rule_body("EUR", "1", 1))
        .await
        .error(400, 40001);
    assert!(
        page_items(&merchant.get("/api/v1/rules").await.ok(200)).is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn rules_are_synced_in_one_atomic_call_with_upsert_or_replace() {
    let fixture = rest_fixture("sync-shop").await;
    let merchant = &fixture.merchant;
    let rule = |code: &str, points: i64| json!({"code": code, "currency": "EUR", "unit_amount": "1.00", "points_per_unit": points, "rounding": "floor"});

    let upserted = merchant
        .put(
            "/api/v1/rules",
            json!({"mode": "upsert", "rules": [rule("default", 10), rule("vip", 20)]}),
        )
        .await
        .ok(200);
    assert_fields(&upserted, &["created", "ended"]);
    let created = upserted["created"].as_array().expect("created").clone();
    assert_eq!(created.len(), 2);
    for version in &created {
        assert_fields(version, RULE_VERSION_FIELDS);
    }
    assert_eq!(upserted["ended"], json!([]));

    let replaced = merchant
        .put(
            "/api/v1/rules",
            json!({"mode": "replace", "rules": [rule("default", 11)]}),
        )
        .await
        .ok(200);
    assert_eq!(replaced["created"][0]["version"], 2);
    assert_eq!(replaced["ended"], json!(["vip"]));
    merchant.get("/api/v1/rules/vip").await.error(404, 40401);
    let codes: Vec<String> = page_items(&merchant.get("/api/v1/rules").await.ok(200))
        .iter()
        .map(|rule| text(&rule["code"]).to_owned())
        .collect();
    assert_eq!(codes, ["default"]);

    // The mode defaults to upsert; one bad rule fails the whole call and nothing changes.
    let defaulted = merchant
        .put("/api/v1/rules", json!({"rules": [rule("summer", 5)]}))
        .await
        .ok(200);
    assert_eq!(defaulted["ended"], json!([]));
    let mut bad = rule("autumn", 5);
    bad["unit_amount"] = json!("0");
    merchant
        .put("/api/v1/rules", json!({"rules": [rule("winter", 5), bad]}))
        .await
        .error(400, 40001);
    merchant.get("/api/v1/rules/winter").await.error(404, 40401);
    for body in [
        json!({"mode": "merge", "rules": []}),
        json!({"rules": [rule("twice", 1), rule("twice", 2)]}),
        json!({"rules": [rule("BAD CODE", 1)]}),
        json!({"rules": "none"}),
        json!({"mode": "upsert"}),
    ] {
        merchant.put("/api/v1/rules", body).await.error(400, 40001);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Bad requests at the HTTP level
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_a_wrong_content_type_and_unknown_fields_are_400_envelopes() {
    let fixture = rest_fixture("http-shop").await;
    let merchant = &fixture.merchant;
    let send_raw = |content_type: Option<&'static str>, body: &'static str| {
        let mut request = merchant
            .request(Method::POST, "/api/v1/points/earn")
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        merchant.send(request)
    };
    let valid = r#"{"uid": "u1", "points": 5, "idempotency_key": "raw-1"}"#;

    let malformed = send_raw(Some("application/json"), r#"{"uid": "u1", "points": 5,"#)
        .await
        .error(400, 40001);
    assert!(malformed.contains("JSON"), "{malformed}");
    send_raw(Some("application/json"), "")
        .await
        .error(400, 40001);
    send_raw(Some("application/json"), "null")
        .await
        .error(400, 40001);
    send_raw(
        Some("application/json"),
        r#"{"uid": "u1", "points": 5, "idempotency_key": "k"} {}"#,
    )
    .await
    .error(400, 40001);
    let wrong_type = send_raw(Some("text/plain"), valid).await.error(400, 40001);
    assert!(wrong_type.contains("content-type"), "{wrong_type}");
    send_raw(Some("application/x-www-form-urlencoded"), "uid=u1&points=5")
        .await
        .error(400, 40001);
    send_raw(None, valid).await.error(400, 40001);
    let unknown = send_raw(
        Some("application/json"),
        r#"{"uid": "u1", "points": 5, "idempotency_key": "k", "pts": 1}"#,
    )
    .await
    .error(400, 40001);
    assert!(
        unknown.contains("pts"),
        "the unknown field is named: {unknown}"
    );

    // The same body with the right content type works (also with a charset parameter).
    send_raw(Some("application/json; charset=utf-8"), valid)
        .await
        .ok(201);
    assert_eq!(
        merchant.get("/api/v1/points/accounts/u1").await.ok(200)["balance"],
        5
    );
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_400_and_one_just_under_is_read() {
    let fixture = rest_fixture("big-body").await;
    let merchant = &fixture.merchant;
    let oversize = format!(
        r#"{{"uid": "u1", "points": 5, "idempotency_key": "big", "description": "{}"}}"#,
        "x".repeat(BODY_LIMIT_BYTES)
    );
    assert!(oversize.len() > BODY_LIMIT_BYTES);
    let request = merchant
        .request(Method::POST, "/api/v1/points/earn")
        .header(header::CONTENT_TYPE, "application/json")
        .body(oversize);
    let message = merchant.send(request).await.error(400, 40001);
    assert!(message.contains("size limit"), "{message}");

    // Just under the limit the body is read and judged on its content (the description is too long for the ledger).
    let padding = BODY_LIMIT_BYTES - 200;
    let under = format!(
        r#"{{"uid": "u1", "points": 5, "idempotency_key": "big", "description": "{}"}}"#,
        "x".repeat(padding)
    );
    let request = merchant
        .request(Method::POST, "/api/v1/points/earn")
        .header(header::CONTENT_TYPE, "application/json")
        .body(under);
    let message = merchant.send(request).await.error(400, 40001);
    assert!(!message.contains("size limit"), "{message}");
    assert!(message.contains("description"), "{message}");
}

#[tokio::test]
async fn unknown_routes_are_404_envelopes_and_wrong_methods_are_405_with_allow() {
    let fixture = rest_fixture("routing-shop").await;
    for path in [
        "/api/v1/nope",
        "/api/v1/points",
        "/api/v2/me",
        "/api/v1/points/accounts/u1/entries/extra",
        "/nowhere",
    ] {
        fixture.merchant.get(path).await.error(404, 40401);
    }
    fixture
        .anonymous
        .get("/api/v1/nope")
        .await
        .error(404, 40401);
    fixture
        .merchant
        .post("/api/v1/nope", json!({}))
        .await
        .error(404, 40401);

    let reply = fixture.merchant.delete("/api/v1/points/earn").await;
    let allow = reply
        .headers
        .get(header::ALLOW)
        .map(|value| value.to_str().unwrap_or_default().to_owned());
    reply.error(405, 40001);
    assert!(
        allow.is_some_and(|allow| allow.contains("POST")),
        "405 names the allowed methods"
    );
    fixture
        .merchant
        .put("/api/v1/me", json!({}))
        .await
        .error(405, 40001);
}

// ---------------------------------------------------------------------------------------------------------------
// Request ids
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn x_request_id_is_echoed_when_given_and_generated_when_absent_or_unusable() {
    let fixture = rest_fixture("trace-shop").await;
    let merchant = &fixture.merchant;

    let given = merchant
        .send(
            merchant
                .request(Method::GET, "/api/v1/me")
                .header("x-request-id", "trace-123/abc"),
        )
        .await;
    assert_eq!(given.request_id(), "trace-123/abc");
    given.ok(200);

    let generated = merchant.get("/api/v1/me").await;
    let id = generated.request_id();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "a generated id is a UUID: {id}"
    );
    let another = merchant.get("/api/v1/me").await.request_id();
    assert_ne!(id, another, "each request gets its own id");

    // Errors carry the id too, and an unusable client id is replaced.
    let error = fixture
        .anonymous
        .send(
            fixture
                .anonymous
                .request(Method::GET, "/api/v1/me")
                .header("x-request-id", "err-1"),
        )
        .await;
    assert_eq!(error.request_id(), "err-1");
    error.error(401, 40101);
    let not_found = merchant
        .send(
            merchant
                .request(Method::GET, "/api/v1/nope")
                .header("x-request-id", "nf-1"),
        )
        .await;
    assert_eq!(not_found.request_id(), "nf-1");
    let too_long = "r".repeat(129);
    let replaced = merchant
        .send(
            merchant
                .request(Method::GET, "/api/v1/me")
                .header("x-request-id", too_long.as_str()),
        )
        .await;
    let replaced_id = replaced.request_id();
    assert_ne!(replaced_id, too_long);
    assert!(uuid::Uuid::parse_str(&replaced_id).is_ok(), "{replaced_id}");
}

// ---------------------------------------------------------------------------------------------------------------
// Operations endpoints
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn healthz_and_readyz_answer_200_when_the_server_is_up() {
    let app = spawn_app().await;
    let rest = Rest::new(&app);
    let health = rest.get("/healthz").await.ok(200);
    assert_eq!(health["status"], "ok");
    let ready = rest.get("/readyz").await.ok(200);
    assert_eq!(ready["status"], "serving");
}

#[tokio::test]
async fn readyz_is_503_once_the_grpc_backend_has_stopped() {
    let app = spawn_app().await;
    let rest = Rest::new(&app);
    rest.get("/readyz").await.ok(200);
    // The whole server stops: the gateway stops accepting too, so a standalone gateway pointed at the stopped gRPC
    // port stands in for "gateway up, backend down".
    let grpc_url = format!("http://{}", app.grpc_addr);
    app.stop().await.expect("graceful stop");
    let mut config = points_gateway::GatewayConfig::from_env().expect("gateway config");
    config.grpc_url = grpc_url;
    config.admin_ui = points_gateway::AdminUi::Disabled;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    let gateway = tokio::spawn(points_gateway::serve(listener, config, async move {
        stop.cancelled().await
    }));
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("client");
    let response = client
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], 50301);
    assert!(body["data"].is_null());
    let response = client
        .get(format!("http://{address}/api/v1/me"))
        .header("x-api-key", "lp_live_x")
        .send()
        .await
        .expect("answer");
    assert_eq!(
        response.status().as_u16(),
        503,
        "an unreachable backend is 503, never 500"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], 50301);
    shutdown.cancel();
    gateway
        .await
        .expect("join")
        .expect("gateway stopped cleanly");
}

#[tokio::test]
async fn metrics_expose_http_and_grpc_counters_in_prometheus_text() {
    let fixture = rest_fixture("metrics-shop").await;
    earn(&fixture.merchant, "u1", 5).await;
    fixture
        .merchant
        .get("/api/v1/points/accounts/u1")
        .await
        .ok(200);
    fixture.anonymous.get("/api/v1/me").await.error(401, 40101);

    let reply = fixture.anonymous.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    let content_type = reply
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let metrics = reply.text;
    for expected in [
        "# TYPE http_requests_total counter",
        "# TYPE http_request_duration_seconds histogram",
        "# TYPE grpc_requests_total counter",
        "# TYPE grpc_request_duration_seconds histogram",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in:\n{metrics}"
        );
    }
    let earn_line = metrics.lines().find(|line| {
        line.starts_with("http_requests_total{")
            && line.contains(r#"route="/api/v1/points/earn""#)
            && line.contains(r#"code="201""#)
    });
    assert!(
        earn_line.is_some(),
        "earn is counted by route and status:\n{metrics}"
    );
    let account_line = metrics.lines().find(|line| {
        line.starts_with("http_requests_total{")
            && line.contains(r#"route="/api/v1/points/accounts/{uid}""#)
    });
    assert!(
        account_line.is_some(),
        "routes are labelled by template, not raw path:\n{metrics}"
    );
    assert!(
        !metrics.contains("/api/v1/points/accounts/u1"),
        "no raw paths as labels"
    );
    let grpc_earn = metrics
        .lines()
        .find(|line| line.starts_with("grpc_requests_total{") && line.contains("Earn"));
    assert!(
        grpc_earn.is_some(),
        "the gRPC side counts the earn:\n{metrics}"
    );
}

/// Every route of SPEC §9 as (method, path); path parameters are written `{}` since their names are free.
const SPEC_ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/merchants"),
    ("get", "/api/v1/merchants"),
    ("get", "/api/v1/merchants/{}"),
    ("patch", "/api/v1/merchants/{}"),
    ("get", "/api/v1/me"),
    ("get", "/api/v1/api-keys"),
    ("post", "/api/v1/api-keys"),
    ("post", "/api/v1/api-keys/{}/rotate"),
    ("delete", "/api/v1/api-keys/{}"),
    ("post", "/api/v1/points/earn"),
    ("post", "/api/v1/points/spend"),
    ("post", "/api/v1/points/adjust"),
    ("post", "/api/v1/points/entries/{}/reverse"),
    ("get", "/api/v1/points/entries/{}"),
    ("get", "/api/v1/points/accounts/{}"),
    ("get", "/api/v1/points/accounts/{}/entries"),
    ("post", "/api/v1/points/batch"),
    ("post", "/api/v1/points/calculate"),
    ("get", "/api/v1/rules"),
    ("put", "/api/v1/rules"),
    ("get", "/api/v1/rules/{}"),
    ("put", "/api/v1/rules/{}"),
    ("get", "/api/v1/rules/{}/versions"),
    ("get", "/api/v1/audit-logs"),
    ("get", "/api/v1/audit-logs/{}"),
    ("get", "/api/v1/audit-logs/verify"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// `/a/{x}/b` → `/a/{}/b`.
fn normalize_template(path: &str) -> String {
    let mut normalized = String::with_capacity(path.len());
    let mut in_parameter = false;
    for character in path.chars() {
        match character {
            '{' => {
                in_parameter = true;
                normalized.push_str("{}");
            }
            '}' => in_parameter = false,
            _ if in_parameter => {}
            other => normalized.push(other),
        }
    }
    normalized
}

#[tokio::test]
async fn openapi_json_documents_every_spec_route_with_the_key_scheme_and_error_envelopes() {
    let app = spawn_app().await;
    let reply = Rest::new(&app).get("/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let document = reply.body;
    assert!(
        text(&document["openapi"]).starts_with("3."),
        "OpenAPI 3: {}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().expect("paths");

    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            documented.insert((method.clone(), normalize_template(path)));
        }
    }
    let missing: Vec<_> = SPEC_ROUTES
        .iter()
        .filter(|(method, path)| !documented.contains(&((*method).to_owned(), (*path).to_owned())))
        .collect();
    assert!(
        missing.is_empty(),
        "SPEC §9 routes missing from /openapi.json: {missing:?}\ndocumented: {documented:?}"
    );

    let schemes = &document["components"]["securitySchemes"];
    let key_scheme = schemes
        .as_object()
        .expect("security schemes")
        .values()
        .next()
        .expect("a scheme");
    assert_eq!(
        (
            key_scheme["type"].clone(),
            key_scheme["in"].clone(),
            key_scheme["name"].clone()
        ),
        (json!("apiKey"), json!("header"), json!("x-api-key"))
    );
    assert!(
        document["components"]["schemas"]
            .get("ErrorEnvelope")
            .is_some()
    );
    for (path, item) in paths
        .iter()
        .filter(|(path, _)| path.starts_with("/api/v1/"))
    {
        for (method, operation) in item.as_object().expect("item") {
            let where_ = format!("{method} {path}");
            assert!(
                operation["security"].is_array(),
                "{where_} declares the key requirement"
            );
            let responses = operation["responses"].as_object().expect("responses");
            for status in ["400", "401", "403", "404", "500", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{where_} documents {status}"
                );
            }
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{where_} documents a success"
            );
        }
    }
    let error_codes = reply.text;
    for code in [
        40001, 40101, 40301, 40401, 40901, 40902, 42201, 42202, 42203, 42901, 50001, 50301,
    ] {
        assert!(
            error_codes.contains(&code.to_string()),
            "error code {code} has an example in the document"
        );
    }
}

#[tokio::test]
async fn docs_serve_swagger_ui_html_and_its_assets_from_the_gateway_itself() {
    let app = spawn_app().await;
    let rest = Rest::new(&app);
    for path in ["/docs", "/docs/"] {
        let reply = rest.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        let content_type = reply
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        assert!(
            reply.text.contains("swagger-ui"),
            "{path} is the Swagger UI page"
        );
    }
    let index = rest.get("/docs/").await.text;
    // Every script and stylesheet the page loads is served by the gateway, none from another host.
    let mut assets = Vec::new();
    for marker in ["src=\"", "href=\""] {
        for piece in index.split(marker).skip(1) {
            let url = piece.split('"').next().unwrap_or_default();
            assets.push(url.to_owned());
        }
    }
    assert!(!assets.is_empty(), "the page loads assets: {index}");
    for asset in assets {
        assert!(
            !asset.starts_with("http:") && !asset.starts_with("https:") && !asset.starts_with("//"),
            "external asset {asset}"
        );
        let path = if asset.starts_with('/') {
            asset.clone()
        } else {
            format!("/docs/{}", asset.trim_start_matches("./"))
        };
        let reply = rest.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "asset {path} is served");
    }
    let initializer = rest.get("/docs/swagger-initializer.js").await;
    assert_eq!(initializer.status, StatusCode::OK);
    assert!(
        initializer.text.contains("/openapi.json"),
        "Swagger UI loads this gateway's document"
    );
}
