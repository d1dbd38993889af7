//! Conversion rules: versions, effective dating, calculation, history, batch sync (issue #4, SPEC §6).

use chrono::{DateTime, Duration, TimeZone, Utc};
use points::{grpc::timestamp, pb};
use tonic::Code;

use crate::helpers::{Caller, TestApp, assert_status, spawn_app};

/// An app with one merchant, and that merchant's caller.
async fn merchant_app() -> (TestApp, pb::Merchant, Caller) {
    let app = spawn_app().await;
    let (merchant, key) = app.register_merchant("rules-shop").await;
    let caller = app.caller(&key);
    (app, merchant, caller)
}

fn rule(
    code: &str,
    currency: &str,
    unit_amount: &str,
    points_per_unit: i64,
    rounding: &str,
) -> pb::PutRuleRequest {
    pb::PutRuleRequest {
        code: code.into(),
        currency: currency.into(),
        unit_amount: unit_amount.into(),
        points_per_unit,
        rounding: rounding.into(),
        ..Default::default()
    }
}

fn calculation(rule_code: Option<&str>, amount: &str, currency: &str) -> pb::CalculateRequest {
    pb::CalculateRequest {
        amount: amount.into(),
        currency: currency.into(),
        rule_code: rule_code.map(str::to_owned),
        at: None,
    }
}

fn calculation_at(rule_code: &str, amount: &str, at: DateTime<Utc>) -> pb::CalculateRequest {
    pb::CalculateRequest {
        at: Some(timestamp(at)),
        ..calculation(Some(rule_code), amount, "EUR")
    }
}

fn utc(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, 0, 0, 0)
        .single()
        .expect("date")
}

fn micros(amount: i64) -> Duration {
    Duration::microseconds(amount)
}

async fn put(app: &TestApp, caller: &Caller, request: pb::PutRuleRequest) -> pb::RuleVersion {
    app.rules(caller.clone())
        .put_rule(request)
        .await
        .expect("put rule")
        .into_inner()
}

async fn all_versions(app: &TestApp, caller: &Caller, code: &str) -> Vec<i32> {
    let request = pb::ListRuleVersionsRequest {
        code: code.into(),
        page_size: 500,
        page_token: String::new(),
    };
    let page = app
        .rules(caller.clone())
        .list_rule_versions(request)
        .await
        .expect("versions")
        .into_inner();
    page.items.iter().map(|item| item.version).collect()
}

#[tokio::test]
async fn calculate_applies_each_rounding_mode_ties_minimums_and_caps() {
    let (app, _, caller) = merchant_app().await;
    put(&app, &caller, rule("default", "EUR", "1.00", 10, "floor")).await;
    put(&app, &caller, rule("floor", "EUR", "1.00", 1, "floor")).await;
    put(&app, &caller, rule("round", "EUR", "1.00", 1, "round")).await;
    put(&app, &caller, rule("ceil", "EUR", "1.00", 1, "ceil")).await;
    put(&app, &caller, rule("thirds", "EUR", "3.00", 1, "round")).await;
    put(
        &app,
        &caller,
        pb::PutRuleRequest {
            min_amount: Some("5.00".into()),
            ..rule("min", "EUR", "1", 1, "floor")
        },
    )
    .await;
    put(
        &app,
        &caller,
        pb::PutRuleRequest {
            max_points: Some(100),
            ..rule("cap", "EUR", "1", 10, "floor")
        },
    )
    .await;
    put(&app, &caller, rule("yen", "JPY", "100", 1, "floor")).await;
    put(&app, &caller, rule("kwd", "KWD", "0.250", 1, "round")).await;

    // (rule code, amount, currency, points, capped)
    let table = [
        (None, "12.50", "EUR", 125, false),
        (Some("floor"), "12.99", "EUR", 12, false),
        (Some("floor"), "0.99", "EUR", 0, false),
        (Some("round"), "12.49", "EUR", 12, false),
        (Some("round"), "12.50", "EUR", 13, false),
        (Some("round"), "12.5", "EUR", 13, false),
        (Some("round"), "0.50", "EUR", 1, false),
        (Some("round"), "0.49", "EUR", 0, false),
        (Some("ceil"), "12.01", "EUR", 13, false),
        (Some("ceil"), "12.00", "EUR", 12, false),
        (Some("thirds"), "10.00", "EUR", 3, false),
        (Some("thirds"), "4.50", "EUR", 2, false),
        (Some("min"), "4.99", "EUR", 0, false),
        (Some("min"), "5.00", "EUR", 5, false),
        (Some("cap"), "10.00", "EUR", 100, false),
        (Some("cap"), "10.10", "EUR", 100, true),
        (Some("cap"), "999999", "EUR", 100, true),
        (Some("yen"), "1050", "JPY", 10, false),
        (Some("kwd"), "0.375", "KWD", 2, false),
    ];
    let mut points = app.points(caller.clone());
    for (code, amount, currency, expected_points, expected_capped) in table {
        let response = points
            .calculate(calculation(code, amount, currency))
            .await
            .unwrap_or_else(|status| panic!("{code:?} {amount}: {status:?}"))
            .into_inner();
        assert_eq!(
            (response.points, response.capped),
            (expected_points, expected_capped),
            "{code:?} {amount} {currency}"
        );
        assert_eq!(response.rule_code, code.unwrap_or("default"));
        assert_eq!(response.rule_version, 1);
    }

    let breakdown = points
        .calculate(calculation(None, "12.5", "EUR"))
        .await
        .expect("default")
        .into_inner();
    assert_eq!(
        breakdown,
        pb::CalculateResponse {
            points: 125,
            rule_code: "default".into(),
            rule_version: 1,
            amount: "12.50".into(),
            currency: "EUR".into(),
            unit_amount: "1.00".into(),
            points_per_unit: 10,
            rounding: "floor".into(),
            raw_points: "125".into(),
            capped: false,
            max_points: None,
            min_amount: None,
            points_ttl_days: None,
        }
    );
    let below_minimum = points
        .calculate(calculation(Some("min"), "4.99", "EUR"))
        .await
        .expect("min")
        .into_inner();
    assert_eq!(
        (
            below_minimum.min_amount.as_deref(),
            below_minimum.raw_points.as_str()
        ),
        (Some("5.00"), "4.99")
    );
    let thirds = points
        .calculate(calculation(Some("thirds"), "10.00", "EUR"))
        .await
        .expect("thirds")
        .into_inner();
    assert!(
        thirds.raw_points.starts_with("3.3333333333"),
        "{}",
        thirds.raw_points
    );
}

#[tokio::test]
async fn calculate_converts_large_amounts_exactly_and_refuses_results_beyond_i64() {
    let (app, _, caller) = merchant_app().await;
    put(&app, &caller, rule("cents", "EUR", "0.01", 1, "floor")).await;
    put(
        &app,
        &caller,
        rule("huge", "EUR", "1000000000000000000.00", 1, "floor"),
    )
    .await;
    put(&app, &caller, rule("yen", "JPY", "1", 1000, "ceil")).await;
    let mut points = app.points(caller.clone());

    let table = [
        ("cents", "92233720368547758.07", "EUR", i64::MAX),
        ("huge", "99999999999999999999999999.99", "EUR", 99_999_999),
        ("yen", "9223372036854775", "JPY", 9_223_372_036_854_775_000),
    ];
    for (code, amount, currency, expected) in table {
        let response = points
            .calculate(calculation(Some(code), amount, currency))
            .await
            .expect(amount)
            .into_inner();
        assert_eq!(response.points, expected, "{code} {amount}");
    }
    let too_large = [
        ("cents", "92233720368547758.08", "EUR"),
        ("cents", "99999999999999999999999999.99", "EUR"),
        ("yen", "9999999999999999999999999999", "JPY"),
    ];
    for (code, amount, currency) in too_large {
        let status = assert_status(
            points
                .calculate(calculation(Some(code), amount, currency))
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert!(status.message().contains("too large"), "{status:?}");
    }
}

#[tokio::test]
async fn calculate_refuses_malformed_amounts_and_more_decimals_than_the_currency_allows() {
    let (app, _, caller) = merchant_app().await;
    put(&app, &caller, rule("default", "EUR", "1", 1, "floor")).await;
    put(&app, &caller, rule("yen", "JPY", "1", 1, "floor")).await;
    put(&app, &caller, rule("kwd", "KWD", "1", 1, "floor")).await;
    let mut points = app.points(caller.clone());
    // (rule code, amount, currency, a word of the message)
    let table = [
        ("default", "12.345", "EUR", "decimals"),
        ("yen", "100.5", "JPY", "decimals"),
        ("kwd", "1.2345", "KWD", "decimals"),
        ("default", "", "EUR", "decimal number"),
        ("default", "-1", "EUR", "decimal number"),
        ("default", "+1", "EUR", "decimal number"),
        ("default", "1e3", "EUR", "decimal number"),
        ("default", " 1", "EUR", "decimal number"),
        ("default", ".5", "EUR", "decimal number"),
        ("default", "0", "EUR", "greater than 0"),
        ("default", "0.00", "EUR", "greater than 0"),
        (
            "default",
            "12345678901234567890123456789",
            "EUR",
            "significant digits",
        ),
        ("default", "1", "eur", "currency"),
        ("default", "1", "EURO", "currency"),
        ("VIP", "1", "EUR", "rule code"),
    ];
    for (code, amount, currency, word) in table {
        let status = assert_status(
            points
                .calculate(calculation(Some(code), amount, currency))
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert!(
            status.message().contains(word),
            "{amount:?} {currency}: {status:?}"
        );
    }
    let status = assert_status(
        points
            .calculate(pb::CalculateRequest {
                at: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                ..calculation(None, "1", "EUR")
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(status.message().contains("at"), "{status:?}");
}

#[tokio::test]
async fn calculate_without_a_rule_in_effect_or_in_another_currency_is_no_applicable_rule() {
    let (app, _, caller) = merchant_app().await;
    let mut points = app.points(caller.clone());
    assert_status(
        points.calculate(calculation(None, "10", "EUR")).await,
        Code::FailedPrecondition,
        "NO_APPLICABLE_RULE",
    );

    put(&app, &caller, rule("default", "EUR", "1", 1, "floor")).await;
    let future = pb::PutRuleRequest {
        effective_from: Some(timestamp(utc(2100, 1, 1))),
        ..rule("later", "EUR", "1", 1, "floor")
    };
    put(&app, &caller, future).await;
    let table = [
        (None, "10", "USD"),
        (Some("missing"), "10", "EUR"),
        (Some("later"), "10", "EUR"),
        // JPY has no decimals and the default rule is EUR: the currency decides, not the digits.
        (None, "10", "JPY"),
    ];
    for (code, amount, currency) in table {
        let status = assert_status(
            points.calculate(calculation(code, amount, currency)).await,
            Code::FailedPrecondition,
            "NO_APPLICABLE_RULE",
        );
        assert!(status.message().contains("rule"), "{status:?}");
    }
}

#[tokio::test]
async fn effective_from_is_inclusive_and_effective_to_is_exclusive() {
    let (app, _, caller) = merchant_app().await;
    let from = utc(2020, 1, 1);
    let to = utc(2020, 2, 1);
    put(
        &app,
        &caller,
        pb::PutRuleRequest {
            effective_from: Some(timestamp(from)),
            effective_to: Some(timestamp(to)),
            ..rule("window", "EUR", "1", 1, "floor")
        },
    )
    .await;
    let mut points = app.points(caller.clone());
    let mut rules = app.rules(caller.clone());
    for (at, in_effect) in [
        (from - micros(1), false),
        (from, true),
        (to - micros(1), true),
        (to, false),
    ] {
        let calculated = points.calculate(calculation_at("window", "1", at)).await;
        let fetched = rules
            .get_rule(pb::GetRuleRequest {
                code: "window".into(),
                at: Some(timestamp(at)),
            })
            .await;
        if in_effect {
            assert_eq!(
                calculated.expect("in effect").into_inner().rule_version,
                1,
                "{at}"
            );
            assert_eq!(fetched.expect("in effect").into_inner().version, 1, "{at}");
        } else {
            assert_status(calculated, Code::FailedPrecondition, "NO_APPLICABLE_RULE");
            assert_status(fetched, Code::NotFound, "NOT_FOUND");
        }
    }
}

#[tokio::test]
async fn a_calculation_at_a_past_time_uses_the_version_in_effect_then_and_later_versions_do_not_change_it()
 {
    let (app, _, caller) = merchant_app().await;
    let past = utc(2021, 6, 1);
    let v1 = put(
        &app,
        &caller,
        pb::PutRuleRequest {
            effective_from: Some(timestamp(utc(2020, 1, 1))),
            ..rule("default", "EUR", "1.00", 10, "floor")
        },
    )
    .await;
    assert_eq!(v1.version, 1);
    let mut points = app.points(caller.clone());
    let before = points
        .calculate(calculation_at("default", "12.50", past))
        .await
        .expect("v1")
        .into_inner();
    assert_eq!((before.rule_version, before.points), (1, 125));

    // A new version from now on: the past calculation is unchanged, the current one uses it.
    let v2 = put(&app, &caller, rule("default", "EUR", "1.00", 20, "floor")).await;
    assert_eq!(v2.version, 2);
    let after = points
        .calculate(calculation_at("default", "12.50", past))
        .await
        .expect("still v1")
        .into_inner();
    assert_eq!(after, before);
    let now = points
        .calculate(calculation(None, "12.50", "EUR"))
        .await
        .expect("v2")
        .into_inner();
    assert_eq!((now.rule_version, now.points), (2, 250));

    // A version scheduled for later does not apply yet; at its time it does.
    put(
        &app,
        &caller,
        pb::PutRuleRequest {
            effective_from: Some(timestamp(utc(2100, 1, 1))),
            ..rule("default", "EUR", "1.00", 30, "floor")
        },
    )
    .await;
    let still_now = points
        .calculate(calculation(None, "12.50", "EUR"))
        .await
        .expect("v2")
        .into_inner();
    assert_eq!(still_now.rule_version, 2);
    let then = points
        .calculate(calculation_at("default", "12.50", utc(2100, 1, 1)))
        .await
        .expect("v3")
        .into_inner();
    assert_eq!((then.rule_version, then.points), (3, 375));

    // Among versions in effect at once, the highest version wins: a later-created campaign for June 2020.
    put(
        &app,
        &caller,
        pb::PutRuleRequest {
            effective_from: Some(timestamp(utc(2020, 6, 1))),
            effective_to: Some(timestamp(utc(2020, 7, 1))),
            ..rule("default", "EUR", "1.00", 40, "floor")
        },
    )
    .await;
    let campaign = points
        .calculate(calculation_at("default", "12.50", utc(2020, 6, 15)))
        .await
        .expect("v4")
        .into_inner();
    assert_eq!((campaign.rule_version, campaign.points), (4, 500));
    let unchanged = points
        .calculate(calculation_at("default", "12.50", past))
        .await
        .expect("v1")
        .into_inner();
    assert_eq!(unchanged, before);
}

#[tokio::test]
async fn get_rule_returns_the_current_version_or_the_one_at_a_time_and_not_found_otherwise() {
    let (app, _, caller) = merchant_app().await;
    let mut rules = app.rules(caller.clone());
    assert_status(
        rules
            .get_rule(pb::GetRuleRequest {
                code: "default".into(),
                at: None,
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let created = put(
        &app,
        &caller,
        pb::PutRuleRequest {
            min_amount: Some("5".into()),
            max_points: Some(1000),
            points_ttl_days: Some(365),
            effective_from: Some(timestamp(utc(2020, 1, 1))),
            ..rule("vip", "EUR", "2.5", 3, "round")
        },
    )
    .await;
    assert_eq!(
        (
            created.code.as_str(),
            created.version,
            created.unit_amount.as_str(),
            created.min_amount.as_deref()
        ),
        ("vip", 1, "2.50", Some("5.00"))
    );
    assert_eq!(
        (
            created.max_points,
            created.points_ttl_days,
            created.effective_to
        ),
        (Some(1000), Some(365), None)
    );
    assert_eq!(created.effective_from, Some(timestamp(utc(2020, 1, 1))));
    assert!(created.created_at.is_some());
    let second = put(&app, &caller, rule("vip", "EUR", "1", 1, "ceil")).await;

    let current = rules
        .get_rule(pb::GetRuleRequest {
            code: "vip".into(),
            at: None,
        })
        .await
        .expect("current")
        .into_inner();
    assert_eq!(current, second);
    let past = rules
        .get_rule(pb::GetRuleRequest {
            code: "vip".into(),
            at: Some(timestamp(utc(2021, 1, 1))),
        })
        .await
        .expect("past")
        .into_inner();
    assert_eq!(past, created);
    let before_any = rules
        .get_rule(pb::GetRuleRequest {
            code: "vip".into(),
            at: Some(timestamp(utc(2019, 1, 1))),
        })
        .await;
    assert_status(before_any, Code::NotFound, "NOT_FOUND");
    let bad_code = rules
        .get_rule(pb::GetRuleRequest {
            code: "Not A Code".into(),
            at: None,
        })
        .await;
    assert_status(bad_code, Code::InvalidArgument, "INVALID_ARGUMENT");
}

#[tokio::test]
async fn put_rule_refuses_each_invalid_field_and_stores_nothing() {
    let (app, _, caller) = merchant_app().await;
    let valid = || rule("default", "EUR", "1.00", 10, "floor");
    let now = Utc::now();
    let table: Vec<(&str, pb::PutRuleRequest)> = vec![
        (
            "empty code",
            pb::PutRuleRequest {
                code: String::new(),
                ..valid()
            },
        ),
        (
            "uppercase code",
            pb::PutRuleRequest {
                code: "Default".into(),
                ..valid()
            },
        ),
        (
            "41-character code",
            pb::PutRuleRequest {
                code: "a".repeat(41),
                ..valid()
            },
        ),
        (
            "code with a dot",
            pb::PutRuleRequest {
                code: "a.b".into(),
                ..valid()
            },
        ),
        (
            "lowercase currency",
            pb::PutRuleRequest {
                currency: "eur".into(),
                ..valid()
            },
        ),
        (
            "empty currency",
            pb::PutRuleRequest {
                currency: String::new(),
                ..valid()
            },
        ),
        (
            "zero unit_amount",
            pb::PutRuleRequest {
                unit_amount: "0.00".into(),
                ..valid()
            },
        ),
        (
            "negative unit_amount",
            pb::PutRuleRequest {
                unit_amount: "-1".into(),
                ..valid()
            },
        ),
        (
            "unit_amount in exponent notation",
            pb::PutRuleRequest {
                unit_amount: "1e2".into(),
                ..valid()
            },
        ),
        (
            "unit_amount with too many decimals",
            pb::PutRuleRequest {
                unit_amount: "0.001".into(),
                ..valid()
            },
        ),
        (
            "JPY unit_amount with decimals",
            pb::PutRuleRequest {
                currency: "JPY".into(),
                unit_amount: "1.5".into(),
                ..valid()
            },
        ),
        (
            "zero points_per_unit",
            pb::PutRuleRequest {
                points_per_unit: 0,
                ..valid()
            },
        ),
        (
            "negative points_per_unit",
            pb::PutRuleRequest {
                points_per_unit: -5,
                ..valid()
            },
        ),
        (
            "unknown rounding",
            pb::PutRuleRequest {
                rounding: "bankers".into(),
                ..valid()
            },
        ),
        (
            "empty rounding",
            pb::PutRuleRequest {
                rounding: String::new(),
                ..valid()
            },
        ),
        (
            "negative min_amount",
            pb::PutRuleRequest {
                min_amount: Some("-0.01".into()),
                ..valid()
            },
        ),
        (
            "min_amount with too many decimals",
            pb::PutRuleRequest {
                min_amount: Some("1.005".into()),
                ..valid()
            },
        ),
        (
            "zero max_points",
            pb::PutRuleRequest {
                max_points: Some(0),
                ..valid()
            },
        ),
        (
            "zero points_ttl_days",
            pb::PutRuleRequest {
                points_ttl_days: Some(0),
                ..valid()
            },
        ),
        (
            "too long points_ttl_days",
            pb::PutRuleRequest {
                points_ttl_days: Some(36_501),
                ..valid()
            },
        ),
        (
            "effective_to before effective_from",
            pb::PutRuleRequest {
                effective_from: Some(timestamp(now)),
                effective_to: Some(timestamp(now - Duration::hours(1))),
                ..valid()
            },
        ),
        (
            "effective_to equal to effective_from",
            pb::PutRuleRequest {
                effective_from: Some(timestamp(now)),
                effective_to: Some(timestamp(now)),
                ..valid()
            },
        ),
        (
            "effective_to in the past",
            pb::PutRuleRequest {
                effective_to: Some(timestamp(utc(2020, 1, 1))),
                ..valid()
            },
        ),
        (
            "malformed effective_from",
            pb::PutRuleRequest {
                effective_from: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 2_000_000_000,
                }),
                ..valid()
            },
        ),
    ];
    let mut rules = app.rules(caller.clone());
    for (name, request) in table {
        let status = assert_status(
            rules.put_rule(request).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert!(!status.message().is_empty(), "{name}");
    }
    let listed = rules
        .list_rule_versions(pb::ListRuleVersionsRequest {
            code: "default".into(),
            ..Default::default()
        })
        .await;
    assert_status(listed, Code::NotFound, "NOT_FOUND");
    // The extremes of each range are accepted.
    let edges = pb::PutRuleRequest {
        code: "a_-9".repeat(10),
        min_amount: Some("0".into()),
        max_points: Some(i64::MAX),
        points_ttl_days: Some(36_500),
        points_per_unit: i64::MAX,
        ..valid()
    };
    let created = rules.put_rule(edges).await.expect("edges").into_inner();
    assert_eq!(
        (created.min_amount.as_deref(), created.points_ttl_days),
        (Some("0.00"), Some(36_500))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_on_one_code_get_distinct_ordered_versions() {
    let (app, _, caller) = merchant_app().await;
    const WRITERS: i64 = 10;
    let puts = (1..=WRITERS).map(|points_per_unit| {
        let mut rules = app.rules(caller.clone());
        async move {
            rules
                .put_rule(rule("default", "EUR", "1", points_per_unit, "floor"))
                .await
                .expect("put")
                .into_inner()
        }
    });
    let created = futures::future::join_all(puts).await;
    let mut versions: Vec<i32> = created.iter().map(|version| version.version).collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=10).collect::<Vec<i32>>());
    assert_eq!(
        all_versions(&app, &caller, "default").await,
        (1..=10).rev().collect::<Vec<i32>>()
    );
    // The newest version is the one in effect now: version numbers order the writes.
    let current = app
        .rules(caller.clone())
        .get_rule(pb::GetRuleRequest {
            code: "default".into(),
            at: None,
        })
        .await;
    assert_eq!(current.expect("current").into_inner().version, 10);
}

#[tokio::test]
async fn rule_versions_are_listed_newest_first_across_pages() {
    let (app, _, caller) = merchant_app().await;
    for points_per_unit in 1..=7 {
        put(
            &app,
            &caller,
            rule("default", "EUR", "1", points_per_unit, "floor"),
        )
        .await;
    }
    put(&app, &caller, rule("other", "EUR", "1", 1, "floor")).await;
    let mut rules = app.rules(caller.clone());
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let request = pb::ListRuleVersionsRequest {
            code: "default".into(),
            page_size: 3,
            page_token: token.clone(),
        };
        let page = rules
            .list_rule_versions(request)
            .await
            .expect("page")
            .into_inner();
        assert!(page.items.len() <= 3);
        pages += 1;
        seen.extend(
            page.items
                .iter()
                .map(|item| (item.version, item.points_per_unit)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        // A token of one code's history is not valid for another's.
        let foreign = pb::ListRuleVersionsRequest {
            code: "other".into(),
            page_size: 3,
            page_token: page.next_page_token.clone(),
        };
        assert_status(
            rules.list_rule_versions(foreign).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        (1..=7)
            .rev()
            .map(|version| (version, i64::from(version)))
            .collect::<Vec<_>>()
    );

    let table = [
        pb::ListRuleVersionsRequest {
            code: "default".into(),
            page_size: 501,
            page_token: String::new(),
        },
        pb::ListRuleVersionsRequest {
            code: "default".into(),
            page_size: 3,
            page_token: "garbage".into(),
        },
        pb::ListRuleVersionsRequest {
            code: "BAD".into(),
            page_size: 3,
            page_token: String::new(),
        },
    ];
    for request in table {
        assert_status(
            rules.list_rule_versions(request).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
    let unknown = pb::ListRuleVersionsRequest {
        code: "unknown".into(),
        ..Default::default()
    };
    assert_status(
        rules.list_rule_versions(unknown).await,
        Code::NotFound,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn list_rules_shows_the_version_in_effect_now_of_each_code_across_pages() {
    let (app, _, caller) = merchant_app().await;
    for code in ["alpha", "bravo", "charlie", "delta", "echo"] {
        put(&app, &caller, rule(code, "EUR", "1", 1, "floor")).await;
    }
    put(&app, &caller, rule("bravo", "EUR", "1", 2, "floor")).await;
    let ended = pb::PutRuleRequest {
        effective_from: Some(timestamp(utc(2020, 1, 1))),
        effective_to: Some(timestamp(utc(2021, 1, 1))),
        ..rule("expired", "EUR", "1", 1, "floor")
    };
    put(&app, &caller, ended).await;
    let scheduled = pb::PutRuleRequest {
        effective_from: Some(timestamp(utc(2100, 1, 1))),
        ..rule("future", "EUR", "1", 1, "floor")
    };
    put(&app, &caller, scheduled).await;

    let mut rules = app.rules(caller.clone());
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = rules
            .list_rules(pb::ListRulesRequest {
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|item| (item.code, item.version)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected = [
        ("alpha", 1),
        ("bravo", 2),
        ("charlie", 1),
        ("delta", 1),
        ("echo", 1),
    ];
    assert_eq!(
        seen,
        expected
            .map(|(code, version)| (code.to_owned(), version))
            .to_vec()
    );
}

/// Codes and versions in effect now, by code.
async fn current_versions(app: &TestApp, caller: &Caller) -> Vec<(String, i32, i64)> {
    let request = pb::ListRulesRequest {
        page_size: 500,
        page_token: String::new(),
    };
    let page = app
        .rules(caller.clone())
        .list_rules(request)
        .await
        .expect("list")
        .into_inner();
    assert!(page.next_page_token.is_empty());
    page.items
        .into_iter()
        .map(|item| (item.code, item.version, item.points_per_unit))
        .collect()
}

#[tokio::test]
async fn a_sync_with_one_invalid_rule_changes_nothing() {
    let (app, merchant, caller) = merchant_app().await;
    let mut rules = app.rules(caller.clone());
    let first = pb::SyncRulesRequest {
        mode: "upsert".into(),
        rules: vec![
            rule("alpha", "EUR", "1", 1, "floor"),
            rule("bravo", "EUR", "1", 1, "floor"),
        ],
    };
    let created = rules.sync_rules(first).await.expect("sync").into_inner();
    assert_eq!(
        created
            .created
            .iter()
            .map(|v| (v.code.as_str(), v.version))
            .collect::<Vec<_>>(),
        [("alpha", 1), ("bravo", 1)]
    );
    assert!(created.ended.is_empty());
    let before = current_versions(&app, &caller).await;

    let good = || {
        vec![
            rule("alpha", "EUR", "1", 5, "floor"),
            rule("bravo", "EUR", "1", 5, "floor"),
            rule("charlie", "EUR", "1", 5, "floor"),
        ]
    };
    let invalid_last = [good(), vec![rule("delta", "EUR", "1", 0, "floor")]].concat();
    let duplicate = [good(), vec![rule("alpha", "EUR", "2", 1, "floor")]].concat();
    let bad_time = [
        good(),
        vec![pb::PutRuleRequest {
            effective_to: Some(prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            }),
            ..rule("delta", "EUR", "1", 1, "floor")
        }],
    ]
    .concat();
    let table = [
        ("upsert", invalid_last.clone(), "rules[3]"),
        ("replace", invalid_last, "rules[3]"),
        ("upsert", duplicate, "more than once"),
        ("replace", bad_time, "rules[3].effective_to"),
        ("merge", good(), "mode"),
    ];
    for (mode, batch, word) in table {
        let status = assert_status(
            rules
                .sync_rules(pb::SyncRulesRequest {
                    mode: mode.into(),
                    rules: batch,
                })
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert!(status.message().contains(word), "{word}: {status:?}");
        assert_eq!(current_versions(&app, &caller).await, before);
    }
    assert_eq!(all_versions(&app, &caller, "alpha").await, [1]);
    let charlie = rules
        .list_rule_versions(pb::ListRuleVersionsRequest {
            code: "charlie".into(),
            ..Default::default()
        })
        .await;
    assert_status(charlie, Code::NotFound, "NOT_FOUND");

    // Only the successful sync wrote an OK audit record, in its own transaction.
    let schema = format!("merchant_{}", merchant.merchant_id.replace('-', ""));
    let sql = format!(
        "SELECT count(*) FROM {schema}.audit_records WHERE method LIKE '%/SyncRules' AND outcome_code = 0"
    );
    let audited: i64 = app
        .db()
        .await
        .query_one(&sql, &[])
        .await
        .expect("audit")
        .get(0);
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn a_replace_sync_ends_absent_codes_and_never_extends_an_earlier_end() {
    let (app, merchant, caller) = merchant_app().await;
    for code in ["keep", "drop", "scheduled"] {
        put(&app, &caller, rule(code, "EUR", "1", 1, "floor")).await;
    }
    let later_end = Utc::now() + Duration::days(30);
    put(
        &app,
        &caller,
        pb::PutRuleRequest {
            effective_to: Some(timestamp(later_end)),
            ..rule("ending", "EUR", "1", 1, "floor")
        },
    )
    .await;
    let early_end = utc(2021, 1, 1);
    let old = pb::PutRuleRequest {
        effective_from: Some(timestamp(utc(2020, 1, 1))),
        effective_to: Some(timestamp(early_end)),
        ..rule("old", "EUR", "1", 1, "floor")
    };
    put(&app, &caller, old).await;
    let future_start = utc(2100, 1, 1);
    put(
        &app,
        &caller,
        pb::PutRuleRequest {
            effective_from: Some(timestamp(future_start)),
            ..rule("scheduled", "EUR", "1", 2, "floor")
        },
    )
    .await;

    let before_sync = Utc::now();
    let request = pb::SyncRulesRequest {
        mode: "replace".into(),
        rules: vec![
            rule("keep", "EUR", "1", 9, "floor"),
            rule("new", "EUR", "1", 9, "floor"),
        ],
    };
    let outcome = app
        .rules(caller.clone())
        .sync_rules(request)
        .await
        .expect("replace")
        .into_inner();
    let after_sync = Utc::now();
    assert_eq!(outcome.ended, ["drop", "ending", "scheduled"]);
    assert_eq!(
        outcome
            .created
            .iter()
            .map(|v| (v.code.as_str(), v.version))
            .collect::<Vec<_>>(),
        [("keep", 2), ("new", 1)]
    );
    assert_eq!(
        current_versions(&app, &caller).await,
        [("keep".to_owned(), 2, 9), ("new".to_owned(), 1, 9)]
    );

    let schema = format!("merchant_{}", merchant.merchant_id.replace('-', ""));
    let sql = format!(
        "SELECT code, version, effective_from, effective_to FROM {schema}.rule_versions ORDER BY code, version"
    );
    let rows = app.db().await.query(&sql, &[]).await.expect("versions");
    for row in rows {
        let (code, version): (String, i32) = (row.get(0), row.get(1));
        let effective_from: DateTime<Utc> = row.get(2);
        let effective_to: Option<DateTime<Utc>> = row.get(3);
        match (code.as_str(), version) {
            // Ended now (within the call), not at its later end.
            ("drop", 1) | ("ending", 1) | ("scheduled", 1) => {
                let end = effective_to.expect("ended");
                assert!(
                    end >= before_sync - micros(1) && end <= after_sync,
                    "{code} v{version} ended at {end}"
                );
            }
            // Withdrawn before it started: an empty validity.
            ("scheduled", 2) => assert_eq!(effective_to, Some(effective_from)),
            // An earlier end is never moved.
            ("old", 1) => assert_eq!(effective_to, Some(early_end)),
            ("keep", 1) => assert_eq!(effective_to, None, "upserted codes keep their versions"),
            ("keep", 2) | ("new", 1) => assert_eq!(effective_to, None),
            other => panic!("unexpected version {other:?}"),
        }
    }
    // Nothing is scheduled to come back: the withdrawn future version does not apply at its time either.
    let later = app
        .points(caller.clone())
        .calculate(calculation_at("scheduled", "1", future_start))
        .await;
    assert_status(later, Code::FailedPrecondition, "NO_APPLICABLE_RULE");

    // A second replace with the same list ends nothing more.
    let again = pb::SyncRulesRequest {
        mode: "replace".into(),
        rules: vec![
            rule("keep", "EUR", "1", 9, "floor"),
            rule("new", "EUR", "1", 9, "floor"),
        ],
    };
    let outcome = app
        .rules(caller.clone())
        .sync_rules(again)
        .await
        .expect("replace again")
        .into_inner();
    assert!(outcome.ended.is_empty(), "{:?}", outcome.ended);
}

#[tokio::test]
async fn a_sync_of_1000_rules_is_accepted_and_1001_is_refused() {
    let (app, _, caller) = merchant_app().await;
    let batch = |count: usize| pb::SyncRulesRequest {
        mode: String::new(),
        rules: (0..count)
            .map(|index| rule(&format!("code-{index:04}"), "EUR", "1", 1, "floor"))
            .collect(),
    };
    let mut rules = app.rules(caller.clone());
    let status = assert_status(
        rules.sync_rules(batch(1001)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(status.message().contains("1000"), "{status:?}");
    assert!(current_versions(&app, &caller).await.is_empty());

    let outcome = rules
        .sync_rules(batch(1000))
        .await
        .expect("1000 rules")
        .into_inner();
    assert_eq!(outcome.created.len(), 1000);
    assert!(
        outcome
            .created
            .iter()
            .enumerate()
            .all(|(index, v)| v.code == format!("code-{index:04}") && v.version == 1)
    );
    let mut listed = 0;
    let mut token = String::new();
    loop {
        let page = rules
            .list_rules(pb::ListRulesRequest {
                page_size: 500,
                page_token: token.clone(),
            })
            .await
            .expect("page")
            .into_inner();
        listed += page.items.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed, 1000);
}

#[tokio::test]
async fn put_rule_writes_its_audit_record_in_its_transaction() {
    let (app, merchant, caller) = merchant_app().await;
    put(&app, &caller, rule("default", "EUR", "1", 1, "floor")).await;
    put(&app, &caller, rule("default", "EUR", "1", 2, "floor")).await;
    let refused = app
        .rules(caller.clone())
        .put_rule(rule("default", "EUR", "0", 2, "floor"))
        .await;
    assert_status(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
    let schema = format!("merchant_{}", merchant.merchant_id.replace('-', ""));
    let sql = format!(
        "SELECT rule_code, rule_version, merchant_id::text FROM {schema}.audit_records \
         WHERE method = '/points.v1.RuleService/PutRule' AND outcome_code = 0 ORDER BY audit_id"
    );
    let rows = app.db().await.query(&sql, &[]).await.expect("audit");
    let records: Vec<(Option<String>, Option<i32>, Option<String>)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let merchant_id = Some(merchant.merchant_id.clone());
    assert_eq!(
        records,
        [
            (Some("default".into()), Some(1), merchant_id.clone()),
            (Some("default".into()), Some(2), merchant_id)
        ]
    );
}

#[tokio::test]
async fn rules_of_one_merchant_are_invisible_to_another() {
    let (app, _, caller) = merchant_app().await;
    put(&app, &caller, rule("default", "EUR", "1", 1, "floor")).await;
    let (_, other_key) = app.register_merchant("other-shop").await;
    let other = app.caller(&other_key);
    let calculated = app
        .points(other.clone())
        .calculate(calculation(None, "10", "EUR"))
        .await;
    assert_status(calculated, Code::FailedPrecondition, "NO_APPLICABLE_RULE");
    assert!(current_versions(&app, &other).await.is_empty());
    // The other merchant's own version 1 of the same code is independent.
    assert_eq!(
        put(&app, &other, rule("default", "EUR", "1", 7, "floor"))
            .await
            .version,
        1
    );
    assert_eq!(all_versions(&app, &caller, "default").await, [1]);
}
