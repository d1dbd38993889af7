//! Property test (SPEC §14): arbitrary strings — NUL and control characters, huge lengths, any Unicode — and
//! arbitrary page tokens, put into every filter, path segment and token of every list and read route over REST,
//! never produce an internal error (500 / 50001): each is answered with a clear 4xx or a result.

use proptest::prelude::*;

use crate::rest::{Rest, encode_segment};

/// Every GET route with a slot for the hostile value (`{}`), as the merchant or the admin calls it.
const MERCHANT_ROUTES: &[&str] = &[
    "/api/v1/points/accounts?uid_prefix={}",
    "/api/v1/points/accounts?order={}",
    "/api/v1/points/accounts?page_token={}",
    "/api/v1/points/accounts?order=balance_desc&page_token={}",
    "/api/v1/points/accounts/{}",
    "/api/v1/points/accounts/{}/entries",
    "/api/v1/points/accounts/u/entries?kind={}",
    "/api/v1/points/accounts/u/entries?from={}",
    "/api/v1/points/accounts/u/entries?to={}",
    "/api/v1/points/accounts/u/entries?page_token={}",
    "/api/v1/points/accounts/u/entries?page_size={}",
    "/api/v1/points/entries/{}",
    "/api/v1/reports/liability?from={}",
    "/api/v1/reports/liability?to={}",
    "/api/v1/reports/liability?bucket={}",
    "/api/v1/reports/liability?tz={}",
    "/api/v1/audit-logs?method={}",
    "/api/v1/audit-logs?uid={}",
    "/api/v1/audit-logs?key_id={}",
    "/api/v1/audit-logs?outcome_code={}",
    "/api/v1/audit-logs?from={}",
    "/api/v1/audit-logs?page_token={}",
    "/api/v1/audit-logs/{}",
    "/api/v1/audit-logs/verify?from_audit_id={}",
    "/api/v1/audit-logs/verify?to_audit_id={}",
    "/api/v1/audit-logs/verify?full={}",
    "/api/v1/api-keys?page_token={}",
    "/api/v1/rules/{}",
    "/api/v1/rules/{}/versions",
    "/api/v1/rules?at={}",
    "/api/v1/rules/default/versions?page_token={}",
];
const ADMIN_ROUTES: &[&str] = &[
    "/api/v1/merchants?page_token={}",
    "/api/v1/merchants/{}",
    "/api/v1/audit-logs?method={}",
    "/api/v1/audit-logs?page_token={}",
    "/api/v1/reports/liability?tz={}",
];

/// Strings an attacker would try: anything, control characters, long runs, near-tokens.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\x7f]{1,8}",
        "[0-9a-f]{0,200}",
        "-?[0-9]{1,25}",
        ".{0,3}".prop_map(|s| format!("{s}{}", "x".repeat(5000))),
        "[a-z/_+-]{1,80}",
    ]
}

async fn check(client: &Rest, routes: &[&str], value: &str) -> Result<(), TestCaseError> {
    let encoded = encode_segment(value);
    for route in routes {
        let path = route.replace("{}", &encoded);
        let reply = client.get(&path).await;
        prop_assert!(
            reply.status.as_u16() != 500 && reply.body["code"] != serde_json::json!(50001),
            "{path} answered {}: {}",
            reply.status,
            reply.text
        );
    }
    Ok(())
}

#[test]
fn arbitrary_strings_in_every_filter_path_segment_and_token_never_cause_an_internal_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fixture = runtime.block_on(crate::rest::rest_fixture("hostile-shop"));
    let config = ProptestConfig {
        cases: 40,
        max_shrink_iters: 30,
        ..ProptestConfig::default()
    };
    proptest!(config, |(value in hostile())| {
        runtime.block_on(async {
            check(&fixture.merchant, MERCHANT_ROUTES, &value).await?;
            check(&fixture.admin, ADMIN_ROUTES, &value).await
        })?;
    });
    runtime.block_on(fixture.app.stop()).expect("stop");
}
