//! Records written off the request path: the bounded in-memory buffer ([`AuditLog`]), the per-call
//! [`CallRecorder`] the call layer uses, and the background writer ([`run_flusher`]).
//!
//! The buffer is a bounded channel of [`AUDIT_BUFFER_CAPACITY`](crate::config::Config::audit_buffer_capacity)
//! records. When it is full a call waits for room (backpressure) up to [`ENQUEUE_WAIT_MAX`]; a record that still
//! finds no room — the writer is stuck, i.e. the database is down — is dropped, counted in
//! `audit_records_dropped_total` and logged as a warning. The writer takes up to [`FLUSH_BATCH_MAX`] records every
//! flush interval, writes each chain's share in one statement, retries while the database is unavailable, and
//! at shutdown (after gRPC has stopped serving) writes everything left before the pool closes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;

use super::chain::{self, Unsealed};
use crate::{
    call::{
        AuthFailure, CallContext, Chain, NewRecord, Outcome, Transport, elapsed_us, recorded_method,
    },
    error::{ErrorCode, ServiceError},
    store,
};

/// The longest a call waits for room in a full buffer before its record is dropped.
pub const ENQUEUE_WAIT_MAX: Duration = Duration::from_secs(1);
/// Records written per flush.
pub const FLUSH_BATCH_MAX: usize = 500;
/// Write attempts at shutdown before the remaining records are given up (the database is down).
const SHUTDOWN_ATTEMPTS_MAX: u32 = 3;
const RETRY_DELAY_MIN: Duration = Duration::from_millis(50);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);

/// The buffer of records waiting to be written, and the chains waiting to be sealed.
pub struct AuditLog {
    sender: mpsc::Sender<NewRecord>,
    /// Taken once by [`run_flusher`].
    receiver: Mutex<Option<mpsc::Receiver<NewRecord>>>,
    unsealed: Arc<Unsealed>,
}

impl AuditLog {
    /// A buffer holding at most `capacity` records.
    pub fn new(capacity: usize) -> AuditLog {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        AuditLog {
            sender,
            receiver: Mutex::new(Some(receiver)),
            unsealed: Arc::default(),
        }
    }

    /// Buffers a record, waiting up to [`ENQUEUE_WAIT_MAX`] for room; drops it loudly after that.
    pub async fn enqueue(&self, record: NewRecord) {
        let record = match self.sender.try_send(record) {
            Ok(()) => return,
            Err(TrySendError::Closed(_)) => return self.dropped("writer stopped", 1),
            Err(TrySendError::Full(record)) => record,
        };
        metrics::counter!("audit_buffer_full_total").increment(1);
        if self
            .sender
            .send_timeout(record, ENQUEUE_WAIT_MAX)
            .await
            .is_err()
        {
            self.dropped("buffer full", 1);
        }
    }

    /// Buffers a record without waiting (from `Drop`, which cannot wait); drops it loudly when there is no room.
    pub fn enqueue_now(&self, record: NewRecord) {
        if let Err(error) = self.sender.try_send(record) {
            let reason = match error {
                TrySendError::Full(_) => "buffer full",
                TrySendError::Closed(_) => "writer stopped",
            };
            self.dropped(reason, 1);
        }
    }

    fn dropped(&self, reason: &'static str, count: usize) {
        metrics::counter!("audit_records_dropped_total", "reason" => reason)
            .increment(count as u64);
        tracing::warn!(reason, count, "audit records dropped");
    }

    /// Records that `chain` has unsealed records for the sealer.
    pub fn mark_unsealed(&self, chain: Chain) {
        self.unsealed.mark(chain);
    }

    /// The chains waiting for the sealer ([`chain::run_sealer`] takes them).
    pub fn unsealed(&self) -> &Arc<Unsealed> {
        &self.unsealed
    }

    fn take_receiver(&self) -> Option<mpsc::Receiver<NewRecord>> {
        self.receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// Records one call that passes the call layer. Exactly one of [`refused`](CallRecorder::refused) and
/// [`served`](CallRecorder::served) finishes it; if neither does (the client went away, or the request timeout
/// dropped the call), dropping it records the call as [`Outcome::Cancelled`].
pub struct CallRecorder {
    audit: Arc<AuditLog>,
    started: Instant,
    started_at: DateTime<Utc>,
    method: String,
    request_id: String,
    transport: Transport,
    call: Option<Arc<CallContext>>,
    finished: bool,
}

impl CallRecorder {
    pub fn start(
        audit: Arc<AuditLog>,
        method: &str,
        request_id: &str,
        transport: Transport,
    ) -> CallRecorder {
        CallRecorder {
            audit,
            started: Instant::now(),
            started_at: Utc::now(),
            method: method.to_owned(),
            request_id: request_id.to_owned(),
            transport,
            call: None,
            finished: false,
        }
    }

    /// The authenticated call, whose notes the record is made from.
    pub fn attach(&mut self, call: Arc<CallContext>) {
        self.call = Some(call);
    }

    /// Records a call the auth layer refused: in its merchant's audit when the key revealed one, else in the
    /// platform audit. The request body was never read, so the digest is empty.
    pub async fn refused(mut self, failure: &AuthFailure) -> Outcome {
        self.finished = true;
        let outcome = Outcome::from_error(failure.error.code);
        let record = self.anonymous_record(
            outcome,
            failure.key_id,
            failure.key_prefix.clone(),
            failure.merchant_id,
        );
        self.audit.enqueue(record).await;
        outcome
    }

    /// Finishes a refused call without a record of its own: its source is over its recording budget and the call
    /// is counted into that source's summary record instead (see `auth::sources`).
    pub fn summarised(mut self, failure: &AuthFailure) -> Outcome {
        self.finished = true;
        Outcome::from_error(failure.error.code)
    }

    /// Records a served call, unless its handler already wrote its record in its transaction and succeeded.
    /// `status` is the gRPC status the response carries in its headers, if any (for calls the handler's notes do
    /// not explain, e.g. a request tonic could not decode).
    pub async fn served(mut self, status: Option<tonic::Status>) -> Outcome {
        self.finished = true;
        let Some(call) = self.call.clone() else {
            return Outcome::Ok;
        };
        let (outcome, in_transaction) = {
            let notes = call.notes();
            let outcome = match notes.outcome {
                Some(code) => Outcome::from_error(code),
                None if notes.succeeded => Outcome::Ok,
                None => status.map_or(Outcome::Ok, |status| Outcome::from_status(&status)),
            };
            (outcome, notes.in_transaction_audit_id.is_some())
        };
        if outcome.is_ok() && in_transaction {
            self.audit.mark_unsealed(Chain::of_auth(&call.auth));
            return outcome;
        }
        let mut record = NewRecord::for_call(&call, outcome);
        record.latency_us = elapsed_us(self.started);
        self.audit.enqueue(record).await;
        outcome
    }

    /// A record made without a call context: the call was refused, or cut off before authentication finished.
    fn anonymous_record(
        &self,
        outcome: Outcome,
        key_id: Option<uuid::Uuid>,
        key_prefix: Option<String>,
        merchant_id: Option<uuid::Uuid>,
    ) -> NewRecord {
        NewRecord {
            chain: Chain::of_merchant(merchant_id),
            occurred_at: self.started_at,
            merchant_id,
            key_id,
            key_prefix,
            transport: self.transport,
            method: recorded_method(&self.method),
            request_id: self.request_id.clone(),
            request_digest: String::new(),
            outcome,
            latency_us: elapsed_us(self.started),
            entry_ids: Vec::new(),
            uid: None,
            amount: None,
            currency: None,
            rule_code: None,
            rule_version: None,
            points: None,
            unless_committed: None,
        }
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let record = match &self.call {
            Some(call) => {
                let mut record = NewRecord::for_call(call, Outcome::Cancelled);
                record.latency_us = elapsed_us(self.started);
                record
            }
            None => self.anonymous_record(Outcome::Cancelled, None, None, None),
        };
        self.audit.enqueue_now(record);
    }
}

/// Writes buffered records every `interval` (sooner when a full batch is waiting) until `shutdown`, then writes
/// everything left and seals what was written. Run it after gRPC stops serving is what makes the final flush
/// complete: [`crate::app::Application::run`] cancels `shutdown` only then.
pub async fn run_flusher(
    audit: Arc<AuditLog>,
    pool: deadpool_postgres::Pool,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let Some(mut receiver) = audit.take_receiver() else {
        tracing::error!("the audit writer was started twice; this one stops");
        return;
    };
    let mut batch = Vec::with_capacity(FLUSH_BATCH_MAX);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            received = receiver.recv_many(&mut batch, FLUSH_BATCH_MAX) => if received == 0 { break },
        }
        // Gather for one interval, so records are written in batches rather than one by one.
        if batch.len() < FLUSH_BATCH_MAX {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => {}
            }
            top_up(&mut receiver, &mut batch);
        }
        write_with_retry(&audit, &pool, std::mem::take(&mut batch), &shutdown).await;
    }
    // gRPC has stopped serving: nothing new arrives. Write what is left, then seal it.
    receiver.close();
    loop {
        top_up(&mut receiver, &mut batch);
        if batch.is_empty() {
            break;
        }
        write_with_retry(&audit, &pool, std::mem::take(&mut batch), &shutdown).await;
    }
    chain::seal_marked(&audit.unsealed, &pool).await;
    tracing::info!("audit buffer flushed");
}

fn top_up(receiver: &mut mpsc::Receiver<NewRecord>, batch: &mut Vec<NewRecord>) {
    while batch.len() < FLUSH_BATCH_MAX {
        match receiver.try_recv() {
            Ok(record) => batch.push(record),
            Err(_) => break,
        }
    }
}

/// Why a chain's share of a batch was not written.
enum WriteFailure {
    /// The database is unavailable: try again.
    Transient,
    /// Anything else (e.g. the tenant's audit table is broken): do not retry as is.
    Permanent,
}

impl From<ServiceError> for WriteFailure {
    fn from(error: ServiceError) -> Self {
        if error.code == ErrorCode::Unavailable {
            WriteFailure::Transient
        } else {
            WriteFailure::Permanent
        }
    }
}

impl From<tokio_postgres::Error> for WriteFailure {
    fn from(error: tokio_postgres::Error) -> Self {
        WriteFailure::from(ServiceError::from(error))
    }
}

impl From<deadpool_postgres::PoolError> for WriteFailure {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        WriteFailure::from(ServiceError::from(error))
    }
}

/// Writes a batch chain by chain, retrying chains the database could not take while it is unavailable.
async fn write_with_retry(
    audit: &AuditLog,
    pool: &deadpool_postgres::Pool,
    batch: Vec<NewRecord>,
    shutdown: &CancellationToken,
) {
    let mut groups: HashMap<Chain, Vec<NewRecord>> = HashMap::new();
    for record in batch {
        groups.entry(record.chain.clone()).or_default().push(record);
    }
    let mut delay = RETRY_DELAY_MIN;
    let mut attempts_after_shutdown = 0;
    while !groups.is_empty() {
        let mut failed = HashMap::new();
        let mut unavailable = false;
        for (chain, records) in groups {
            match write_chain(pool, &chain, &records).await {
                Ok(()) => audit.mark_unsealed(chain),
                Err(WriteFailure::Transient) => {
                    unavailable = true;
                    failed.entry(chain).or_insert_with(Vec::new).extend(records);
                }
                Err(WriteFailure::Permanent) => rehome(audit, &mut failed, chain, records),
            }
        }
        groups = failed;
        if groups.is_empty() || !unavailable {
            // Done, or only re-homed records are left: write those at once.
            continue;
        }
        if shutdown.is_cancelled() {
            attempts_after_shutdown += 1;
            if attempts_after_shutdown >= SHUTDOWN_ATTEMPTS_MAX {
                audit.dropped(
                    "database unavailable at shutdown",
                    groups.values().map(Vec::len).sum(),
                );
                return;
            }
        }
        tracing::warn!(
            chains = groups.len(),
            retry_in_ms = delay.as_millis() as u64,
            "audit write failed; retrying"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
        }
        delay = (delay * 2).min(RETRY_DELAY_MAX);
    }
}

/// A merchant chain's records that its schema refused go to the platform audit instead (they keep their
/// `merchant_id`); records the platform audit refuses are dropped loudly.
fn rehome(
    audit: &AuditLog,
    failed: &mut HashMap<Chain, Vec<NewRecord>>,
    chain: Chain,
    records: Vec<NewRecord>,
) {
    match chain {
        Chain::Merchant(schema) => {
            tracing::error!(
                schema = schema.name(),
                count = records.len(),
                "merchant audit refused records; writing them to the platform audit"
            );
            let platform = failed.entry(Chain::Platform).or_default();
            for mut record in records {
                record.chain = Chain::Platform;
                // The platform has no ledger to digest, and the in-transaction record, if any, was in the
                // merchant's table.
                record.entry_ids.clear();
                record.unless_committed = None;
                platform.push(record);
            }
        }
        Chain::Platform => audit.dropped("platform audit refused the records", records.len()),
    }
}

/// Writes one chain's records in one transaction.
async fn write_chain(
    pool: &deadpool_postgres::Pool,
    chain: &Chain,
    records: &[NewRecord],
) -> Result<(), WriteFailure> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    store::audit::insert_batch(&*transaction, chain, records).await?;
    transaction.commit().await?;
    metrics::counter!("audit_records_written_total").increment(records.len() as u64);
    Ok(())
}
