//! The ledger's fast path (SPEC §5 semantics, unchanged): earns of points, spends and adjusts that arrive while
//! a batch of the same tenant is in flight are coalesced into the next batch, applied by one call of the tenant's
//! `ledger_apply_batch` function (migrations V5, V6, V8; a batch of one: `ledger_apply_ops`): one statement and one
//! commit for the batch.
//!
//! * **Lanes.** Each tenant has `lanes` lanes; a uid always goes to the same one (by a hash of it), so operations
//!   on one uid keep their arrival order, and the lanes of a tenant never wait on each other's account locks.
//!   A busy lane sends its batches, in order, to one connection, the next queued behind the running one (see
//!   [`run_lane`]), so PostgreSQL runs them back to back in arrival order. Lanes of different tenants, and of one
//!   tenant, run in parallel.
//! * **No timer.** A lane's worker takes the first operation it is given, then whatever queued meanwhile, up to
//!   [`BATCH_MAX`]. An operation arriving at an idle lane is applied at once, alone.
//! * **Own results.** The function returns each operation's result; a refused one (insufficient points, a
//!   conflicting key) changes nothing and fails no other. Each applied one's audit record commits with it.
//! * **Fallback.** If the batch fails as a whole (a concurrent duplicate key in another transaction, a deadlock,
//!   a lost connection), nothing of it committed, and each operation is applied one at a time by the ordinary path,
//!   which retries and reports errors per operation. A success is only ever reported for what committed.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Credit, Mutation, MutationKind, MutationResult, Outcome, apply::insufficient};
use crate::config::PoolMode;
use crate::store::sql::params;
use crate::{
    call::CallContext,
    domain::points::Entry,
    error::{ErrorCode, ServiceError, ServiceResult},
    store,
    tenancy::TenantSchema,
};

/// How a batch's statement reaches PostgreSQL.
#[derive(Clone, Copy)]
enum Statements {
    /// Prepared once per connection and tenant (server sessions are the service's own).
    Prepared,
    /// Unnamed, parsed on each call (a transaction-mode pooler shares server sessions).
    Unnamed,
}

/// The most operations one batch applies.
pub const BATCH_MAX: usize = 512;

/// One operation of the fast path, with what its audit record needs.
struct Pending {
    mutation: Mutation,
    audit: crate::call::NewRecord,
    reply: oneshot::Sender<ServiceResult<Applied>>,
}

/// What the fast path gives back for one operation.
pub struct Applied {
    pub result: MutationResult,
    /// The operation's audit record, committed with it (None for a replay, which wrote nothing).
    pub audit_id: Option<i64>,
}

/// The operation of a mutation as the batch function takes it, if the fast path applies it.
fn fast_operation(kind: &MutationKind) -> Option<(&'static str, &str, i64)> {
    let (uid, amount) = match kind {
        MutationKind::Earn {
            uid,
            credit: Credit::Points(points),
            ..
        }
        | MutationKind::Spend { uid, points, .. } => (uid, points.get()),
        MutationKind::Adjust { uid, delta, .. } => (uid, *delta),
        _ => return None,
    };
    Some((kind.operation(), uid.as_str(), amount))
}

/// Whether `mutation` goes through the lanes.
pub fn takes(mutation: &Mutation) -> bool {
    fast_operation(&mutation.kind).is_some()
}

/// Every tenant's lanes, created on first use.
pub struct Lanes {
    pool: deadpool_postgres::Pool,
    statements: Statements,
    lanes_per_tenant: usize,
    pipeline_depth: usize,
    senders: Mutex<HashMap<(Uuid, usize), mpsc::UnboundedSender<Pending>>>,
}

impl Lanes {
    pub fn new(
        pool: deadpool_postgres::Pool,
        lanes_per_tenant: usize,
        pipeline_depth: usize,
        pool_mode: PoolMode,
    ) -> Arc<Lanes> {
        Arc::new(Lanes {
            pool,
            statements: match pool_mode {
                PoolMode::Session => Statements::Prepared,
                PoolMode::Transaction => Statements::Unnamed,
            },
            lanes_per_tenant: lanes_per_tenant.max(1),
            pipeline_depth: pipeline_depth.max(1),
            senders: Mutex::new(HashMap::new()),
        })
    }

    /// Applies `mutation` (one that [`takes`] accepts) in the next batch of its tenant's lane. `None` means the
    /// lane is gone (the service is stopping) or the batch failed as a whole: apply it the ordinary way.
    pub async fn submit(
        self: &Arc<Self>,
        call: &CallContext,
        merchant_id: Uuid,
        mutation: &Mutation,
    ) -> Option<ServiceResult<Applied>> {
        let (_, uid, _) = fast_operation(&mutation.kind)?;
        let lane = {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            uid.hash(&mut hasher);
            (hasher.finish() % self.lanes_per_tenant as u64) as usize
        };
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            mutation: mutation.clone(),
            audit: crate::call::NewRecord::for_call(call, crate::call::Outcome::Ok),
            reply,
        };
        let sender = {
            let mut senders = self
                .senders
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            senders
                .entry((merchant_id, lane))
                .or_insert_with(|| {
                    let (sender, receiver) = mpsc::unbounded_channel();
                    tokio::spawn(run_lane(
                        self.pool.clone(),
                        self.statements,
                        self.pipeline_depth,
                        merchant_id,
                        receiver,
                    ));
                    sender
                })
                .clone()
        };
        sender.send(pending).ok()?;
        // A dropped reply means the batch failed as a whole and nothing of this operation committed.
        answer.await.ok()
    }
}

/// A lane's worker. Its batches go, in order, to one connection (taken from the pool while the lane has work,
/// given back when it is idle): on one server session they run one after another in the order sent, so each
/// uid's operations keep their arrival order. Up to `pipeline_depth` batches are sent and not yet done: with 2 (the
/// default), one runs in PostgreSQL and the next waits behind it on the connection, so the server never waits for
/// the service between two batches. A batch is sent as soon as there is room in the pipeline: at once when the
/// lane is idle (an operation alone does not wait), else when the oldest batch's statement is done; it is made of
/// what queued meanwhile, up to [`BATCH_MAX`]. No timer.
async fn run_lane(
    pool: deadpool_postgres::Pool,
    statements: Statements,
    pipeline_depth: usize,
    merchant_id: Uuid,
    mut receiver: mpsc::UnboundedReceiver<Pending>,
) {
    let schema = TenantSchema::for_merchant(merchant_id);
    let mut connection: Option<Arc<deadpool_postgres::Object>> = None;
    // Each sent batch's signal: sent once its statement is done, dropped if it failed before.
    let mut in_flight: VecDeque<oneshot::Receiver<()>> = VecDeque::new();
    loop {
        let full = in_flight.len() >= pipeline_depth;
        let first = match in_flight.front_mut() {
            None => {
                // Idle: the connection goes back to the pool (once the batches still committing let go of it).
                connection = None;
                match receiver.recv().await {
                    Some(pending) => pending,
                    None => return,
                }
            }
            Some(oldest) if full => {
                let _ = oldest.await;
                in_flight.pop_front();
                continue;
            }
            Some(oldest) => tokio::select! {
                biased;
                _ = oldest => {
                    in_flight.pop_front();
                    continue;
                }
                pending = receiver.recv() => match pending {
                    Some(pending) => pending,
                    None => return,
                },
            },
        };
        let mut batch = Vec::new();
        batch.push(first);
        while batch.len() < BATCH_MAX {
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        metrics::histogram!("ledger_batch_operations").record(batch.len() as f64);
        // A connection that broke under an earlier batch is not used again. And while others wait for a connection
        // (other lanes, the ordinary path, reads), a busy lane does not keep its own: it lets its pipeline drain and
        // takes one again behind them (the pool serves waiters in turn).
        if connection
            .as_ref()
            .is_some_and(|client| client.is_closed() || pool.status().waiting > 0)
        {
            while let Some(oldest) = in_flight.pop_front() {
                let _ = oldest.await;
            }
            connection = None;
        }
        let client = match &connection {
            Some(client) => Arc::clone(client),
            None => match pool.get().await {
                Ok(client) => Arc::clone(connection.insert(Arc::new(client))),
                Err(error) => {
                    // Nothing was sent: dropping the replies sends each caller to the ordinary path.
                    fell_back(merchant_id, &ServiceError::from(error), batch.len());
                    continue;
                }
            },
        };
        let sql = batch_call(&schema, batch.len());
        let prepared = match statements {
            Statements::Prepared => match client.prepare_cached(&sql).await {
                Ok(statement) => Some(statement),
                Err(error) => {
                    fell_back(merchant_id, &batch_failed(error), batch.len());
                    continue;
                }
            },
            Statements::Unnamed => None,
        };
        let (applied, statement_done) = oneshot::channel();
        in_flight.push_back(statement_done);
        let mut task = Box::pin(run_batch(
            client,
            prepared,
            sql,
            merchant_id,
            batch,
            applied,
        ));
        // The first poll sends the batch's BEGIN, statement and COMMIT to the connection: they are queued there
        // before the next batch's, whatever the order the tasks run in afterwards.
        if futures::poll!(task.as_mut()).is_pending() {
            tokio::spawn(task);
        }
    }
}

/// The statement that applies a batch of `count` operations in `schema`. One operation alone is applied by plain
/// statements: the set-based statement costs more than it saves below two (migration V8). Both functions take
/// the same arguments and answer the same rows.
fn batch_call(schema: &TenantSchema, count: usize) -> String {
    let function = if count == 1 {
        "ledger_apply_ops"
    } else {
        "ledger_apply_batch"
    };
    format!(
        // The fast path writes no entry of a hold (captures take the ordinary path): hold_id is NULL.
        "SELECT *, NULL::bigint AS hold_id FROM {}.{function}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                 $14, $15, $16, $17, $18)",
        schema.quoted()
    )
}

fn fell_back(merchant_id: Uuid, error: &ServiceError, operations: usize) {
    metrics::counter!("ledger_batch_fallbacks_total").increment(1);
    tracing::debug!(%merchant_id, %error, operations, "batch fell back to single operations");
}

/// Applies and commits one batch and answers each of its callers.
async fn run_batch(
    client: Arc<deadpool_postgres::Object>,
    prepared: Option<tokio_postgres::Statement>,
    sql: String,
    merchant_id: Uuid,
    batch: Vec<Pending>,
    applied: oneshot::Sender<()>,
) {
    match apply_batch(
        &client,
        prepared.as_ref(),
        &sql,
        merchant_id,
        &batch,
        applied,
    )
    .await
    {
        Ok(results) => {
            for (pending, result) in batch.into_iter().zip(results) {
                let _ = pending.reply.send(result);
            }
        }
        // Nothing committed: dropping the replies sends each caller to the ordinary path.
        Err(error) => fell_back(merchant_id, &error, batch.len()),
    }
}

/// Applies `batch` in one statement in a transaction of its own, tells `applied` once the statement is done (the
/// batch's account locks are held until the commit), then commits; each operation's result in order. Sends all
/// three on its first poll.
async fn apply_batch(
    client: &tokio_postgres::Client,
    prepared: Option<&tokio_postgres::Statement>,
    sql: &str,
    merchant_id: Uuid,
    batch: &[Pending],
    applied: oneshot::Sender<()>,
) -> Result<Vec<ServiceResult<Applied>>, ServiceError> {
    let count = batch.len();
    let mut kinds = Vec::with_capacity(count);
    let mut uids = Vec::with_capacity(count);
    let mut points = Vec::with_capacity(count);
    let mut keys = Vec::with_capacity(count);
    let mut digests = Vec::with_capacity(count);
    let mut references: Vec<Option<&str>> = Vec::with_capacity(count);
    let mut descriptions: Vec<Option<&str>> = Vec::with_capacity(count);
    let mut metadata: Vec<Option<&serde_json::Value>> = Vec::with_capacity(count);
    let mut expires: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(count);
    let mut occurred = Vec::with_capacity(count);
    let mut key_ids = Vec::with_capacity(count);
    let mut key_prefixes = Vec::with_capacity(count);
    let mut transports = Vec::with_capacity(count);
    let mut methods = Vec::with_capacity(count);
    let mut request_ids = Vec::with_capacity(count);
    let mut latencies = Vec::with_capacity(count);
    for pending in batch {
        let (kind, uid, amount) = fast_operation(&pending.mutation.kind)
            .ok_or_else(|| ServiceError::invalid("not a fast-path operation"))?;
        kinds.push(kind);
        uids.push(uid);
        points.push(amount);
        keys.push(pending.mutation.idempotency_key.as_str());
        digests.push(pending.mutation.request_digest.as_str());
        let (reference, description, meta, expires_at) = match &pending.mutation.kind {
            MutationKind::Earn {
                reference,
                description,
                metadata,
                expires_at,
                ..
            } => (
                reference.as_deref(),
                description.as_deref(),
                Some(metadata),
                *expires_at,
            ),
            MutationKind::Spend {
                reference,
                description,
                metadata,
                ..
            } => (
                reference.as_deref(),
                description.as_deref(),
                Some(metadata),
                None,
            ),
            MutationKind::Adjust { reason, .. } => (None, Some(reason.as_str()), None, None),
            MutationKind::Reverse { .. } => (None, None, None, None),
        };
        references.push(reference);
        descriptions.push(description);
        metadata.push(meta);
        expires.push(expires_at);
        occurred.push(pending.audit.occurred_at);
        key_ids.push(pending.audit.key_id);
        key_prefixes.push(pending.audit.key_prefix.as_deref());
        transports.push(pending.audit.transport.as_str());
        methods.push(pending.audit.method.as_str());
        request_ids.push(pending.audit.request_id.as_str());
        latencies.push(pending.audit.latency_us);
    }
    let now = Utc::now();
    let params = params![
        &now,
        &merchant_id,
        &kinds,
        &uids,
        &points,
        &keys,
        &digests,
        &references,
        &descriptions,
        &metadata,
        &expires,
        &occurred,
        &key_ids,
        &key_prefixes,
        &transports,
        &methods,
        &request_ids,
        &latencies,
    ];
    // BEGIN, the statement and COMMIT go out together: one round trip. The statement's rows arrive before the
    // commit is done (and `applied` lets the lane's next batch start then); a failed statement turns the COMMIT
    // into a rollback. All three answers are awaited, so the connection goes back to the pool outside a transaction.
    let statement = async {
        let rows = match prepared {
            // Prepared once per connection and tenant where server sessions are the service's own.
            Some(prepared) => {
                let values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    params.iter().map(|(value, _)| *value).collect();
                client.query(prepared, &values).await
            }
            None => client.query_typed(sql, &params).await,
        };
        if rows.is_ok() {
            let _ = applied.send(());
        }
        rows
    };
    let (begun, rows, committed) = futures::join!(
        client.batch_execute("BEGIN"),
        statement,
        client.batch_execute("COMMIT")
    );
    begun.map_err(batch_failed)?;
    let rows = rows.map_err(batch_failed)?;
    committed.map_err(batch_failed)?;
    // Rows come in any order (set-based ones first); `idx` (1-based) names the operation each answers.
    let mut results: Vec<Option<ServiceResult<Applied>>> = (0..count).map(|_| None).collect();
    for row in &rows {
        let idx: i32 = row.get("idx");
        let slot = usize::try_from(idx)
            .ok()
            .and_then(|idx| idx.checked_sub(1))
            .filter(|index| results.get(*index).is_some_and(Option::is_none))
            .ok_or_else(|| {
                batch_answer_error(format!("a result for operation {idx}, unexpected"))
            })?;
        results[slot] = Some(result_of(row, &batch[slot].mutation));
    }
    results
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| batch_answer_error(format!("{} results for {count} operations", rows.len())))
}

/// Why a batch failed as a whole. A key that another transaction recorded after the batch looked (a concurrent
/// duplicate) is expected now and then, not an internal error: its operations are retried one at a time.
fn batch_failed(error: tokio_postgres::Error) -> ServiceError {
    if store::is_unique_violation(&error, store::ledger::IDEMPOTENCY_CONSTRAINT) {
        return ServiceError::unavailable("a concurrent duplicate idempotency key");
    }
    ServiceError::from(error)
}

fn batch_answer_error(what: String) -> ServiceError {
    ServiceError::internal(&std::io::Error::other(format!(
        "the batch function answered {what}"
    )))
}

/// One row of the batch function as the operation's result.
fn result_of(row: &tokio_postgres::Row, mutation: &Mutation) -> ServiceResult<Applied> {
    let result: &str = row.get("result");
    let entry = || Entry::from_row(row);
    let outcome = match result {
        "applied" => Outcome::Applied,
        "replayed" => Outcome::Replayed,
        "conflict" => {
            return Err(ServiceError::new(
                ErrorCode::IdempotencyConflict,
                "idempotency_key was already used for a different request",
            ));
        }
        "insufficient" => {
            let wanted = fast_operation(&mutation.kind).map_or(0, |(_, _, points)| points.abs());
            return Err(insufficient(row.get("balance_after"), wanted));
        }
        "overflow" => {
            return Err(ServiceError::invalid(
                "the balance would exceed the largest supported value",
            ));
        }
        "expired" => return Err(ServiceError::invalid("expires_at must be in the future")),
        other => {
            return Err(ServiceError::internal(&std::io::Error::other(format!(
                "the batch function answered an unknown result {other:?}"
            ))));
        }
    };
    let entry = entry();
    Ok(Applied {
        result: MutationResult {
            balance: entry.balance_after,
            created_entry_ids: if outcome == Outcome::Applied {
                row.get("created_entry_ids")
            } else {
                Vec::new()
            },
            entry,
            outcome,
        },
        audit_id: row.get("audit_id"),
    })
}
