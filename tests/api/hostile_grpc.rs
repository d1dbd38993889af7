//! Property test (SPEC §14), over gRPC: arbitrary strings (NUL and control characters, huge lengths, any Unicode),
//! arbitrary page tokens, page sizes, codes and timestamps (far outside PostgreSQL's range, negative nanos) in every
//! field of every read and list RPC, and arbitrary values in the call metadata, never produce `INTERNAL` or
//! `UNKNOWN`: each is answered with a clear status or a result.

use points::pb::{
    self, audit_service_client::AuditServiceClient, report_service_client::ReportServiceClient,
};
use proptest::prelude::*;
use tonic::{Code, Status};

use crate::helpers::{Caller, TestApp, spawn_app};

/// Strings an attacker would try: anything, control characters, long runs, near-tokens, near-ids.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\x7f]{1,8}",
        "[0-9a-f]{0,200}",
        "[0-9a-f-]{36}",
        "-?[0-9]{1,25}",
        ".{0,3}".prop_map(|s| format!("{s}{}", "x".repeat(5000))),
        "[A-Za-z0-9_=-]{0,120}",
        "[a-z/_+-]{1,80}",
    ]
}

/// Timestamps from anywhere in their range, including the edges and out-of-range nanos.
fn timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    prop_oneof![
        Just(None),
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| Some(prost_types::Timestamp { seconds, nanos })),
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-210_866_803_200),
            Just(253_402_300_800),
            Just(0)
        ]
        .prop_map(|seconds| Some(prost_types::Timestamp { seconds, nanos: 0 })),
    ]
}

/// One hostile input: a string for every string field, and the numbers and times beside it.
#[derive(Debug, Clone)]
struct Input {
    text: String,
    number: i32,
    from: Option<prost_types::Timestamp>,
    to: Option<prost_types::Timestamp>,
    flag: bool,
}

fn input() -> impl Strategy<Value = Input> {
    (
        hostile(),
        prop_oneof![any::<i32>(), -5..600i32],
        timestamp(),
        timestamp(),
        any::<bool>(),
    )
        .prop_map(|(text, number, from, to, flag)| Input {
            text,
            number,
            from,
            to,
            flag,
        })
}

/// A status a client can act on: anything but an internal error.
fn checked<T>(rpc: &str, input: &Input, result: Result<T, Status>) -> Result<(), TestCaseError> {
    if let Err(status) = result {
        prop_assert!(
            !matches!(status.code(), Code::Internal | Code::Unknown),
            "{rpc} with {input:?} answered {:?}: {}",
            status.code(),
            status.message()
        );
    }
    Ok(())
}

/// Every read and list RPC, with the hostile input in each of its fields, as `caller`.
async fn every_read(app: &TestApp, caller: Caller, input: &Input) -> Result<(), TestCaseError> {
    let text = || input.text.clone();
    let some = || Some(input.text.clone());
    let mut points = app.points(caller.clone());
    checked(
        "GetAccount",
        input,
        points
            .get_account(pb::GetAccountRequest { uid: text() })
            .await,
    )?;
    checked(
        "GetEntry",
        input,
        points
            .get_entry(pb::GetEntryRequest { entry_id: text() })
            .await,
    )?;
    for request in [
        pb::ListAccountsRequest {
            uid_prefix: some(),
            order: String::new(),
            page_size: input.number,
            page_token: String::new(),
        },
        pb::ListAccountsRequest {
            uid_prefix: None,
            order: text(),
            page_size: 0,
            page_token: text(),
        },
        pb::ListAccountsRequest {
            uid_prefix: None,
            order: "balance_desc".into(),
            page_size: input.number,
            page_token: text(),
        },
    ] {
        checked("ListAccounts", input, points.list_accounts(request).await)?;
    }
    for request in [
        pb::ListEntriesRequest {
            uid: text(),
            kind: None,
            from: input.from,
            to: input.to,
            page_size: input.number,
            page_token: String::new(),
        },
        pb::ListEntriesRequest {
            uid: "u".into(),
            kind: some(),
            from: None,
            to: None,
            page_size: 0,
            page_token: text(),
        },
    ] {
        checked("ListEntries", input, points.list_entries(request).await)?;
    }
    let mut audit = app.audit(caller.clone());
    for request in [
        pb::ListAuditLogsRequest {
            from: input.from,
            to: input.to,
            method: some(),
            outcome_code: Some(input.number),
            key_id: None,
            uid: None,
            page_size: input.number,
            page_token: String::new(),
        },
        pb::ListAuditLogsRequest {
            from: None,
            to: None,
            method: None,
            outcome_code: None,
            key_id: some(),
            uid: some(),
            page_size: 0,
            page_token: text(),
        },
    ] {
        checked("ListAuditLogs", input, audit.list_audit_logs(request).await)?;
    }
    checked(
        "GetAuditLog",
        input,
        audit
            .get_audit_log(pb::GetAuditLogRequest { audit_id: text() })
            .await,
    )?;
    for (from_audit_id, to_audit_id) in [(some(), None), (None, some())] {
        checked(
            "VerifyAuditLog",
            input,
            audit
                .verify_audit_log(pb::VerifyAuditLogRequest {
                    from_audit_id,
                    to_audit_id,
                    full: input.flag,
                })
                .await,
        )?;
    }
    let mut keys = app.keys(caller.clone());
    checked(
        "ListApiKeys",
        input,
        keys.list_api_keys(pb::ListApiKeysRequest {
            page_size: input.number,
            page_token: text(),
        })
        .await,
    )?;
    let mut rules = app.rules(caller.clone());
    checked(
        "ListRules",
        input,
        rules
            .list_rules(pb::ListRulesRequest {
                page_size: input.number,
                page_token: text(),
            })
            .await,
    )?;
    checked(
        "GetRule",
        input,
        rules
            .get_rule(pb::GetRuleRequest {
                code: text(),
                at: input.from,
            })
            .await,
    )?;
    for (code, page_token) in [(text(), String::new()), ("default".into(), text())] {
        checked(
            "ListRuleVersions",
            input,
            rules
                .list_rule_versions(pb::ListRuleVersionsRequest {
                    code,
                    page_size: input.number,
                    page_token,
                })
                .await,
        )?;
    }
    let mut reports = ReportServiceClient::with_interceptor(app.channel.clone(), caller.clone());
    for (bucket, tz) in [(text(), String::new()), (String::new(), text())] {
        checked(
            "GetLiabilityReport",
            input,
            reports
                .get_liability_report(pb::LiabilityReportRequest {
                    from: input.from,
                    to: input.to,
                    bucket,
                    tz,
                })
                .await,
        )?;
    }
    let mut merchants = app.merchants(caller);
    checked(
        "GetMerchant",
        input,
        merchants
            .get_merchant(pb::GetMerchantRequest {
                merchant_id: text(),
            })
            .await,
    )?;
    checked(
        "ListMerchants",
        input,
        merchants
            .list_merchants(pb::ListMerchantsRequest {
                page_size: input.number,
                page_token: text(),
            })
            .await,
    )?;
    checked("GetMe", input, merchants.get_me(pb::GetMeRequest {}).await)
}

#[test]
fn arbitrary_values_in_every_field_and_header_of_every_read_rpc_never_cause_an_internal_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (app, merchant_id, key) = runtime.block_on(async {
        let app = spawn_app().await;
        let (merchant, key) = app.register_merchant("hostile-grpc-shop").await;
        (app, merchant.merchant_id, key)
    });
    let config = ProptestConfig {
        cases: 40,
        max_shrink_iters: 30,
        ..ProptestConfig::default()
    };
    proptest!(config, |(input in input())| {
        runtime.block_on(async {
            // As the merchant, as the admin acting for it, and with the hostile value in each header (the client
            // library refuses to send values HTTP/2 cannot carry; those need no answer).
            every_read(&app, app.caller(&key), &input).await?;
            let mut acting = app.admin();
            acting.merchant_id = Some(merchant_id.clone());
            every_read(&app, acting, &input).await?;
            for caller in [
                Caller { key: input.text.clone(), merchant_id: None, request_id: None },
                Caller { key: app.admin_key.clone(), merchant_id: Some(input.text.clone()), request_id: None },
                Caller { key: key.clone(), merchant_id: None, request_id: Some(input.text.clone()) },
            ] {
                if tonic::metadata::MetadataValue::try_from(input.text.as_str()).is_err() {
                    continue;
                }
                let mut merchants = app.merchants(caller.clone());
                checked("GetMe (metadata)", &input, merchants.get_me(pb::GetMeRequest {}).await)?;
                let mut audit = AuditServiceClient::with_interceptor(app.channel.clone(), caller);
                checked(
                    "ListAuditLogs (metadata)",
                    &input,
                    audit.list_audit_logs(pb::ListAuditLogsRequest::default()).await,
                )?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    });
    runtime.block_on(app.stop()).expect("stop");
}
