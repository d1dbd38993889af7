//! Property test: random sequences of earn / spend / adjust / reverse / expire / hold / capture / void against a
//! small in-memory model of lots, holds and entries; after every step the server's balance, held and available
//! points and entry log must match the model.

use points::pb;
use proptest::prelude::*;
use tonic::Code;

use crate::helpers::{
    PointsClient, TestApp, earn_request, idem, schema_of, spawn_app, spend_request,
};

#[derive(Debug, Clone)]
enum Step {
    Earn {
        points: i64,
        expiring: bool,
    },
    Spend(i64),
    Adjust(i64),
    /// Reverse the n-th entry written so far (modulo their count).
    Reverse(usize),
    /// Expire the n-th lot with an expiry (modulo their count) and sweep.
    Expire(usize),
    /// Earns (points, expiring) and spends sent at once, so they meet in the ledger's batches in any order. Spends
    /// beyond the balance before the step are left out, so every one succeeds whatever the order; the model then
    /// applies them in the order the server did (their entry ids).
    Together(Vec<(bool, i64, bool)>),
    /// Reserve points (SPEC §12).
    Hold(i64),
    /// Capture the n-th hold (modulo their count), whole (None) or in part.
    Capture(usize, Option<i64>),
    /// Void the n-th hold.
    Void(usize),
    /// Make the n-th hold expire (behind the service's back) and sweep.
    ExpireHold(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1i64..50, any::<bool>()).prop_map(|(points, expiring)| Step::Earn { points, expiring }),
        3 => (1i64..60).prop_map(Step::Spend),
        1 => prop_oneof![(-40i64..-1), (1i64..40)].prop_map(Step::Adjust),
        2 => any::<usize>().prop_map(Step::Reverse),
        1 => any::<usize>().prop_map(Step::Expire),
        2 => proptest::collection::vec((any::<bool>(), 1i64..40, any::<bool>()), 2..10).prop_map(Step::Together),
        2 => (1i64..60).prop_map(Step::Hold),
        2 => (any::<usize>(), proptest::option::of(1i64..40)).prop_map(|(n, points)| Step::Capture(n, points)),
        1 => any::<usize>().prop_map(Step::Void),
        1 => any::<usize>().prop_map(Step::ExpireHold),
    ]
}

#[derive(Debug, Clone)]
struct Lot {
    credit_entry: usize,
    points: i64,
    remaining: i64,
    /// Position among dated lots (they get increasing expiries), None for never-expiring.
    dated: Option<usize>,
    expired: bool,
    /// When it was made to expire (the step's order): the server writes expired lots off by expiry time, so a lot
    /// created later but expired earlier goes first.
    expired_at_step: usize,
}

#[derive(Debug, Clone)]
struct ModelEntry {
    id: String,
    kind: &'static str,
    delta: i64,
    /// For credits, the lot; for debits, what was taken from which lot.
    lot: Option<usize>,
    taken: Vec<(usize, i64)>,
    reversed: bool,
}

#[derive(Debug, Clone)]
struct ModelHold {
    id: String,
    points: i64,
    active: bool,
}

#[derive(Default)]
struct Model {
    balance: i64,
    lots: Vec<Lot>,
    holds: Vec<ModelHold>,
    entries: Vec<ModelEntry>,
    dated_count: usize,
    /// Expire steps taken so far.
    expired_steps: usize,
}

impl Model {
    /// Points reserved by active holds.
    fn held(&self) -> i64 {
        self.holds
            .iter()
            .filter(|hold| hold.active)
            .map(|hold| hold.points)
            .sum()
    }

    /// What a spend, a negative adjust, a credit's reversal or a new hold may take.
    fn available(&self) -> i64 {
        self.balance - self.held()
    }

    fn spend_order(&self) -> Vec<usize> {
        let mut open: Vec<usize> = (0..self.lots.len())
            .filter(|&i| self.lots[i].remaining > 0 && !self.lots[i].expired)
            .collect();
        open.sort_by_key(|&i| (self.lots[i].dated.is_none(), self.lots[i].dated, i));
        open
    }

    fn debit(&mut self, points: i64) -> Vec<(usize, i64)> {
        let mut needed = points;
        let mut taken = Vec::new();
        for lot in self.spend_order() {
            if needed == 0 {
                break;
            }
            let take = needed.min(self.lots[lot].remaining);
            self.lots[lot].remaining -= take;
            taken.push((lot, take));
            needed -= take;
        }
        self.balance -= points;
        taken
    }

    fn write_off_expired(&mut self) -> Vec<i64> {
        let mut deltas = Vec::new();
        // The server's order: expiry time, then lot id (creation order).
        let mut order: Vec<usize> = (0..self.lots.len()).collect();
        order.sort_by_key(|&index| (self.lots[index].expired_at_step, index));
        for index in order {
            let lot = &mut self.lots[index];
            if lot.expired && lot.remaining > 0 {
                deltas.push(-lot.remaining);
                self.balance -= lot.remaining;
                lot.remaining = 0;
            }
        }
        deltas
    }
}

async fn run(
    app: &TestApp,
    points: &mut PointsClient,
    merchant_id: &str,
    uid: &str,
    steps: Vec<Step>,
) -> Result<(), TestCaseError> {
    let schema = schema_of(merchant_id);
    let db = app.db().await;
    let mut model = Model::default();
    for step in steps {
        match step {
            Step::Earn {
                points: amount,
                expiring,
            } => {
                let expires_at = expiring.then(|| {
                    points::grpc::timestamp(
                        chrono::Utc::now()
                            + chrono::Duration::days(1)
                            + chrono::Duration::seconds(model.dated_count as i64),
                    )
                });
                let response = points
                    .earn(pb::EarnRequest {
                        expires_at,
                        ..earn_request(uid, amount, &idem())
                    })
                    .await
                    .map_err(|s| TestCaseError::fail(format!("earn: {s:?}")))?
                    .into_inner();
                let dated = expiring.then(|| {
                    model.dated_count += 1;
                    model.dated_count
                });
                model.lots.push(Lot {
                    credit_entry: model.entries.len(),
                    points: amount,
                    remaining: amount,
                    dated,
                    expired: false,
                    expired_at_step: 0,
                });
                model.balance += amount;
                let id = response.entry.expect("entry").entry_id;
                model.entries.push(ModelEntry {
                    id,
                    kind: "earn",
                    delta: amount,
                    lot: Some(model.lots.len() - 1),
                    taken: vec![],
                    reversed: false,
                });
            }
            Step::Spend(amount) | Step::Adjust(amount)
                if matches!(step, Step::Spend(_)) || amount < 0 =>
            {
                let wanted = amount.abs();
                let is_spend = matches!(step, Step::Spend(_));
                let result = if is_spend {
                    points.spend(spend_request(uid, wanted, &idem())).await
                } else {
                    points
                        .adjust(pb::AdjustRequest {
                            uid: uid.into(),
                            delta: -wanted,
                            reason: "model".into(),
                            idempotency_key: idem(),
                        })
                        .await
                };
                if model.available() < wanted {
                    let status = result.expect_err("insufficient");
                    prop_assert_eq!(reason(&status), "INSUFFICIENT_POINTS");
                } else {
                    let response = result
                        .map_err(|s| TestCaseError::fail(format!("debit: {s:?}")))?
                        .into_inner();
                    let taken = model.debit(wanted);
                    let id = response.entry.expect("entry").entry_id;
                    model.entries.push(ModelEntry {
                        id,
                        kind: if is_spend { "spend" } else { "adjust" },
                        delta: -wanted,
                        lot: None,
                        taken,
                        reversed: false,
                    });
                }
            }
            Step::Adjust(amount) => {
                let response = points
                    .adjust(pb::AdjustRequest {
                        uid: uid.into(),
                        delta: amount,
                        reason: "model".into(),
                        idempotency_key: idem(),
                    })
                    .await
                    .map_err(|s| TestCaseError::fail(format!("adjust: {s:?}")))?
                    .into_inner();
                model.lots.push(Lot {
                    credit_entry: model.entries.len(),
                    points: amount,
                    remaining: amount,
                    dated: None,
                    expired: false,
                    expired_at_step: 0,
                });
                model.balance += amount;
                let id = response.entry.expect("entry").entry_id;
                model.entries.push(ModelEntry {
                    id,
                    kind: "adjust",
                    delta: amount,
                    lot: Some(model.lots.len() - 1),
                    taken: vec![],
                    reversed: false,
                });
            }
            Step::Reverse(n) => {
                if model.entries.is_empty() {
                    continue;
                }
                let index = n % model.entries.len();
                let target = model.entries[index].clone();
                let result = points
                    .reverse(pb::ReverseRequest {
                        entry_id: target.id.clone(),
                        idempotency_key: idem(),
                        reason: None,
                    })
                    .await;
                if target.kind == "reverse" || target.kind == "expire" {
                    prop_assert_eq!(
                        result.expect_err("not reversible").code(),
                        Code::InvalidArgument
                    );
                } else if target.reversed {
                    prop_assert_eq!(result.expect_err("twice").code(), Code::AlreadyExists);
                } else if let Some(lot) = target.lot {
                    let intact = model.lots[lot].remaining == model.lots[lot].points
                        && !model.lots[lot].expired
                        && model.available() >= target.delta;
                    if !intact {
                        prop_assert_eq!(
                            result.expect_err("spent").code(),
                            Code::FailedPrecondition
                        );
                    } else {
                        let response = result
                            .map_err(|s| TestCaseError::fail(format!("reverse credit: {s:?}")))?
                            .into_inner();
                        model.lots[lot].remaining = 0;
                        model.balance -= target.delta;
                        model.entries[index].reversed = true;
                        let id = response.entry.expect("entry").entry_id;
                        model.entries.push(ModelEntry {
                            id,
                            kind: "reverse",
                            delta: -target.delta,
                            lot: None,
                            taken: vec![],
                            reversed: false,
                        });
                    }
                } else {
                    let response = result
                        .map_err(|s| TestCaseError::fail(format!("reverse debit: {s:?}")))?
                        .into_inner();
                    for (lot, points) in &target.taken {
                        model.lots[*lot].remaining += points;
                    }
                    model.balance -= target.delta;
                    model.entries[index].reversed = true;
                    let id = response.entry.expect("entry").entry_id;
                    model.entries.push(ModelEntry {
                        id,
                        kind: "reverse",
                        delta: -target.delta,
                        lot: None,
                        taken: vec![],
                        reversed: false,
                    });
                    for delta in model.write_off_expired() {
                        model.entries.push(ModelEntry {
                            id: String::new(),
                            kind: "expire",
                            delta,
                            lot: None,
                            taken: vec![],
                            reversed: false,
                        });
                    }
                }
            }
            Step::Expire(n) => {
                let dated: Vec<usize> = (0..model.lots.len())
                    .filter(|&i| model.lots[i].dated.is_some() && !model.lots[i].expired)
                    .collect();
                if dated.is_empty() {
                    continue;
                }
                let lot = dated[n % dated.len()];
                let credit_id: i64 = model.entries[model.lots[lot].credit_entry]
                    .id
                    .parse()
                    .expect("id");
                db.execute(&format!("UPDATE {schema}.lots SET expires_at = now() - interval '1 second' WHERE entry_id = $1"), &[&credit_id])
                    .await
                    .expect("expire lot");
                model.lots[lot].expired = true;
                model.expired_steps += 1;
                model.lots[lot].expired_at_step = model.expired_steps;
                points::service::ledger::sweep_expired(
                    &app.services,
                    merchant_id.parse().expect("uuid"),
                    1000,
                )
                .await
                .expect("sweep");
                for delta in model.write_off_expired() {
                    model.entries.push(ModelEntry {
                        id: String::new(),
                        kind: "expire",
                        delta,
                        lot: None,
                        taken: vec![],
                        reversed: false,
                    });
                }
            }
            Step::Together(operations) => {
                let mut budget = model.available();
                let mut calls = Vec::new();
                for (spend, amount, expiring) in operations {
                    if spend {
                        if amount > budget {
                            continue;
                        }
                        budget -= amount;
                        let mut client = points.clone();
                        let request = spend_request(uid, amount, &idem());
                        calls.push(tokio::spawn(async move {
                            (true, amount, None, client.spend(request).await)
                        }));
                    } else {
                        let dated = expiring.then(|| {
                            model.dated_count += 1;
                            model.dated_count
                        });
                        let expires_at = dated.map(|position| {
                            points::grpc::timestamp(
                                chrono::Utc::now()
                                    + chrono::Duration::days(1)
                                    + chrono::Duration::seconds(position as i64),
                            )
                        });
                        let mut client = points.clone();
                        let request = pb::EarnRequest {
                            expires_at,
                            ..earn_request(uid, amount, &idem())
                        };
                        calls.push(tokio::spawn(async move {
                            (false, amount, dated, client.earn(request).await)
                        }));
                    }
                }
                let mut applied = Vec::new();
                for call in calls {
                    let (spend, amount, dated, result) = call.await.expect("call task");
                    let response = result
                        .map_err(|s| TestCaseError::fail(format!("together: {s:?}")))?
                        .into_inner();
                    let id = response.entry.expect("entry").entry_id;
                    applied.push((id.parse::<i64>().expect("id"), id, spend, amount, dated));
                }
                applied.sort_by_key(|(order, ..)| *order);
                for (_, id, spend, amount, dated) in applied {
                    if spend {
                        let taken = model.debit(amount);
                        model.entries.push(ModelEntry {
                            id,
                            kind: "spend",
                            delta: -amount,
                            lot: None,
                            taken,
                            reversed: false,
                        });
                    } else {
                        model.lots.push(Lot {
                            credit_entry: model.entries.len(),
                            points: amount,
                            remaining: amount,
                            dated,
                            expired: false,
                            expired_at_step: 0,
                        });
                        model.balance += amount;
                        model.entries.push(ModelEntry {
                            id,
                            kind: "earn",
                            delta: amount,
                            lot: Some(model.lots.len() - 1),
                            taken: vec![],
                            reversed: false,
                        });
                    }
                }
            }
            Step::Hold(amount) => {
                let result = points
                    .create_hold(pb::CreateHoldRequest {
                        uid: uid.into(),
                        points: amount,
                        idempotency_key: idem(),
                        ..Default::default()
                    })
                    .await;
                if model.available() < amount {
                    prop_assert_eq!(reason(&result.expect_err("held")), "INSUFFICIENT_POINTS");
                } else {
                    let hold = result
                        .map_err(|s| TestCaseError::fail(format!("hold: {s:?}")))?
                        .into_inner()
                        .hold
                        .expect("hold");
                    model.holds.push(ModelHold {
                        id: hold.hold_id,
                        points: amount,
                        active: true,
                    });
                }
            }
            Step::Capture(n, part) => {
                if model.holds.is_empty() {
                    continue;
                }
                let index = n % model.holds.len();
                let hold = model.holds[index].clone();
                let result = points
                    .capture_hold(pb::CaptureHoldRequest {
                        hold_id: hold.id.clone(),
                        idempotency_key: idem(),
                        points: part,
                    })
                    .await;
                let wanted = part.unwrap_or(hold.points);
                if !hold.active {
                    prop_assert_eq!(reason(&result.expect_err("closed")), "HOLD_NOT_ACTIVE");
                } else if wanted > hold.points {
                    prop_assert_eq!(reason(&result.expect_err("too much")), "INVALID_ARGUMENT");
                } else if model.balance < wanted {
                    // Expiry took points the hold reserved: a capture takes only unexpired points.
                    prop_assert_eq!(reason(&result.expect_err("expired")), "INSUFFICIENT_POINTS");
                } else {
                    let entry = result
                        .map_err(|s| TestCaseError::fail(format!("capture: {s:?}")))?
                        .into_inner()
                        .entry
                        .expect("entry");
                    prop_assert_eq!(entry.hold_id.as_deref(), Some(hold.id.as_str()));
                    model.holds[index].active = false;
                    let taken = model.debit(wanted);
                    model.entries.push(ModelEntry {
                        id: entry.entry_id,
                        kind: "spend",
                        delta: -wanted,
                        lot: None,
                        taken,
                        reversed: false,
                    });
                }
            }
            Step::Void(n) => {
                if model.holds.is_empty() {
                    continue;
                }
                let index = n % model.holds.len();
                let result = points
                    .void_hold(pb::VoidHoldRequest {
                        hold_id: model.holds[index].id.clone(),
                        idempotency_key: idem(),
                    })
                    .await;
                if model.holds[index].active {
                    result.map_err(|s| TestCaseError::fail(format!("void: {s:?}")))?;
                    model.holds[index].active = false;
                } else {
                    prop_assert_eq!(reason(&result.expect_err("closed")), "HOLD_NOT_ACTIVE");
                }
            }
            Step::ExpireHold(n) => {
                if model.holds.is_empty() {
                    continue;
                }
                let index = n % model.holds.len();
                let hold_id: i64 = model.holds[index].id.parse().expect("id");
                db.execute(
                    &format!("UPDATE {schema}.holds SET expires_at = now() - interval '1 second' WHERE hold_id = $1 AND status = 'active'"),
                    &[&hold_id],
                )
                .await
                .expect("expire hold");
                model.holds[index].active = false;
                points::service::ledger::sweep_expired_holds(
                    &app.services,
                    merchant_id.parse().expect("uuid"),
                    1000,
                )
                .await
                .expect("sweep holds");
            }
            Step::Spend(_) => unreachable!("handled above"),
        }
        let account = points
            .get_account(pb::GetAccountRequest { uid: uid.into() })
            .await
            .expect("account")
            .into_inner();
        prop_assert_eq!(account.balance, model.balance);
        prop_assert_eq!(account.held, model.held());
        prop_assert_eq!(account.available, model.available().max(0));
        let rows = db
            .query(
                &format!(
                    "SELECT kind, delta FROM {schema}.entries WHERE uid = $1 ORDER BY entry_id"
                ),
                &[&uid],
            )
            .await
            .expect("entries");
        let actual: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let expected: Vec<(String, i64)> = model
            .entries
            .iter()
            .map(|e| (e.kind.to_owned(), e.delta))
            .collect();
        prop_assert_eq!(actual, expected);
    }
    Ok(())
}

/// The SPEC reason of an error status.
fn reason(status: &tonic::Status) -> &'static str {
    points_api::ErrorCode::of_status(status).reason()
}

#[test]
fn random_operation_sequences_match_the_lot_model() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (app, merchant_id, key) = runtime.block_on(async {
        let app = spawn_app().await;
        let (merchant, key) = app.register_merchant("model-shop").await;
        (app, merchant.merchant_id, key)
    });
    let config = ProptestConfig {
        cases: 24,
        max_shrink_iters: 50,
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in proptest::collection::vec(step(), 1..30))| {
        let uid = format!("model-{}", idem());
        let mut points = app.points(app.caller(&key));
        runtime.block_on(run(&app, &mut points, &merchant_id, &uid, steps))?;
    });
    runtime.block_on(async {
        crate::helpers::assert_ledger_invariants(&app.db().await, &merchant_id).await;
    });
}
