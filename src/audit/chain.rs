//! The blake3 chain: canonical encodings, sealing and verification. The design is explained in [`crate::audit`].
//!
//! Canonical bytes are a versioned, length-prefixed encoding of every field (`None` and `Some("")` differ, and no
//! two field sequences encode alike), fed straight into blake3. Values are hashed as the database returns them
//! (timestamps in microseconds, decimals and JSON as PostgreSQL's text), so sealing and verification, which both
//! read them back, always agree.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use std::{collections::HashSet, sync::Mutex};

use crate::{
    call::{Chain, StoredRecord},
    error::{ServiceError, ServiceResult},
    store::{
        self,
        audit::{ChainHead, LedgerEntryFacts, Seal},
    },
};

/// The "previous hash" of the first record of every chain.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// Records sealed per transaction: bounds the time the chain head stays locked.
pub const SEAL_BATCH_MAX: i64 = 1000;
/// Batches one sealing pass takes at most, so a verification under constant load still starts.
const SEAL_BATCHES_PER_PASS_MAX: usize = 100;
/// Records read per page while verifying.
const VERIFY_PAGE_SIZE: i64 = 1000;
/// How often the background sealer seals the chains written since its last pass.
pub const SEAL_INTERVAL: Duration = Duration::from_secs(1);

const RECORD_DOMAIN: &str = "points.audit.record.v1";
const ENTRIES_DOMAIN: &str = "points.audit.entries.v1";

/// A streaming canonical encoder into blake3.
struct Canonical(blake3::Hasher);

impl Canonical {
    fn new(domain: &str) -> Canonical {
        let mut canonical = Canonical(blake3::Hasher::new());
        canonical.text(domain);
        canonical
    }

    fn bytes(&mut self, value: &[u8]) {
        self.0.update(&(value.len() as u64).to_be_bytes());
        self.0.update(value);
    }

    fn text(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    fn int(&mut self, value: i64) {
        self.0.update(&value.to_be_bytes());
    }

    fn present(&mut self, present: bool) {
        self.0.update(&[u8::from(present)]);
    }

    fn opt_text(&mut self, value: Option<&str>) {
        self.present(value.is_some());
        if let Some(value) = value {
            self.text(value);
        }
    }

    fn opt_int(&mut self, value: Option<i64>) {
        self.present(value.is_some());
        if let Some(value) = value {
            self.int(value);
        }
    }

    fn opt_uuid(&mut self, value: Option<Uuid>) {
        self.present(value.is_some());
        if let Some(value) = value {
            self.0.update(value.as_bytes());
        }
    }

    fn time(&mut self, value: DateTime<Utc>) {
        self.int(value.timestamp_micros());
    }

    fn opt_time(&mut self, value: Option<DateTime<Utc>>) {
        self.opt_int(value.map(|at| at.timestamp_micros()));
    }

    fn finish(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// The ledger entries of a page of records by entry id: built once per page, so digesting each record costs
/// only its own entries (a map per record made sealing quadratic in the page size).
pub type EntriesById = HashMap<i64, LedgerEntryFacts>;

/// Indexes `entries` by entry id.
pub fn entries_by_id(entries: Vec<LedgerEntryFacts>) -> EntriesById {
    entries
        .into_iter()
        .map(|entry| (entry.entry_id, entry))
        .collect()
}

/// The digest of the ledger entries a record lists, in the record's order; a listed entry that no longer exists
/// is encoded as absent, so deleting it changes the digest as well. Hex.
pub fn entries_digest(entry_ids: &[i64], by_id: &EntriesById) -> String {
    let mut canonical = Canonical::new(ENTRIES_DOMAIN);
    canonical.int(entry_ids.len() as i64);
    for entry_id in entry_ids {
        canonical.int(*entry_id);
        let Some(entry) = by_id.get(entry_id) else {
            canonical.present(false);
            continue;
        };
        canonical.present(true);
        canonical.text(&entry.uid);
        canonical.text(&entry.kind);
        canonical.int(entry.delta);
        canonical.int(entry.balance_after);
        canonical.opt_text(entry.idempotency_key.as_deref());
        canonical.opt_text(entry.reference.as_deref());
        canonical.opt_text(entry.description.as_deref());
        canonical.text(&entry.metadata);
        canonical.opt_text(entry.rule_code.as_deref());
        canonical.opt_int(entry.rule_version.map(i64::from));
        canonical.opt_text(entry.amount.as_deref());
        canonical.opt_text(entry.currency.as_deref());
        canonical.opt_int(entry.reverses_entry_id);
        canonical.opt_int(entry.lot_id);
        canonical.opt_time(entry.expires_at);
        canonical.time(entry.created_at);
    }
    canonical
        .finish()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `blake3(previous ‖ canonical bytes of the record sealed as seq at sealed_at)`.
pub fn record_hash(
    previous: &[u8],
    record: &StoredRecord,
    seq: i64,
    sealed_at: DateTime<Utc>,
) -> [u8; 32] {
    let mut canonical = Canonical::new(RECORD_DOMAIN);
    canonical.bytes(previous);
    canonical.int(record.audit_id);
    canonical.int(seq);
    canonical.time(sealed_at);
    canonical.time(record.occurred_at);
    canonical.opt_uuid(record.merchant_id);
    canonical.opt_uuid(record.key_id);
    canonical.opt_text(record.key_prefix.as_deref());
    canonical.text(&record.transport);
    canonical.text(&record.method);
    canonical.text(&record.request_id);
    canonical.text(&record.request_digest);
    canonical.int(i64::from(record.outcome_code));
    canonical.text(&record.outcome);
    canonical.int(record.latency_us);
    canonical.int(record.entry_ids.len() as i64);
    for entry_id in &record.entry_ids {
        canonical.int(*entry_id);
    }
    canonical.opt_text(record.entries_digest.as_deref());
    canonical.opt_text(record.uid.as_deref());
    canonical.opt_text(record.amount.as_deref());
    canonical.opt_text(record.currency.as_deref());
    canonical.opt_text(record.rule_code.as_deref());
    canonical.opt_int(record.rule_version.map(i64::from));
    canonical.opt_int(record.points);
    canonical.finish()
}

/// The ledger entries the records list (none for the platform chain, which has no ledger).
async fn listed_entries(
    transaction: &tokio_postgres::Transaction<'_>,
    chain: &Chain,
    records: &[StoredRecord],
) -> ServiceResult<EntriesById> {
    let Chain::Merchant(schema) = chain else {
        return Ok(EntriesById::new());
    };
    let entry_ids: Vec<i64> = records
        .iter()
        .flat_map(|record| record.entry_ids.iter().copied())
        .collect();
    if entry_ids.is_empty() {
        return Ok(EntriesById::new());
    }
    Ok(entries_by_id(
        store::audit::ledger_entries(transaction, schema, &entry_ids).await?,
    ))
}

/// Now, at the microsecond precision the database stores, so the hashed `sealed_at` is the stored one.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// What one sealing transaction did.
enum SealBatch {
    /// Another sealer holds the chain (only when not waiting).
    Busy,
    Sealed(usize),
}

/// Seals one batch of committed unsealed records of `chain`, in one transaction holding the head row's lock.
async fn seal_batch(
    pool: &deadpool_postgres::Pool,
    chain: &Chain,
    wait: bool,
) -> ServiceResult<SealBatch> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let Some(head) = store::audit::lock_head(&*transaction, chain, wait).await? else {
        // Without waiting: another sealer holds the head. Waiting: the head row is gone, which the verification
        // that asked for this sealing reports.
        return Ok(if wait {
            SealBatch::Sealed(0)
        } else {
            SealBatch::Busy
        });
    };
    let mut records = store::audit::unsealed(&*transaction, chain, SEAL_BATCH_MAX).await?;
    if records.is_empty() {
        return Ok(SealBatch::Sealed(0));
    }
    // The entries each record lists committed with it; digest them now, in one query for the batch.
    let entries = listed_entries(&transaction, chain, &records).await?;
    let sealed_at = now_micros();
    let mut previous = head.last_hash.clone();
    let mut seq = head.last_seq;
    let mut seals = Vec::with_capacity(records.len());
    for record in &mut records {
        seq += 1;
        if !record.entry_ids.is_empty() {
            record.entries_digest = Some(entries_digest(&record.entry_ids, &entries));
        }
        let hash = record_hash(&previous, record, seq, sealed_at).to_vec();
        seals.push(Seal {
            audit_id: record.audit_id,
            seq,
            record_hash: hash.clone(),
            entries_digest: record.entries_digest.clone(),
        });
        previous = hash;
    }
    let updated = store::audit::apply_seals(&*transaction, chain, &seals, sealed_at).await?;
    if updated != records.len() as u64 {
        // Only sealers update records and they hold the head lock, so this means someone else wrote to the table.
        tracing::error!(
            chain = chain.name(),
            expected = records.len(),
            updated,
            "sealing updated an unexpected number of records"
        );
        return Err(ServiceError::internal(&std::io::Error::other(
            "audit sealing raced with another writer",
        )));
    }
    let last_audit_id = seals.last().map(|seal| seal.audit_id);
    store::audit::advance_head(
        &*transaction,
        chain,
        &ChainHead {
            last_seq: seq,
            last_audit_id,
            last_hash: previous,
        },
    )
    .await?;
    transaction.commit().await?;
    metrics::counter!("audit_records_sealed_total").increment(records.len() as u64);
    Ok(SealBatch::Sealed(records.len()))
}

/// Seals what is pending in `chain`, batch after batch (bounded). With `wait`, waits for a concurrent sealer
/// instead of skipping the chain. Returns how many records were sealed, or None when skipped because busy.
pub async fn seal(
    pool: &deadpool_postgres::Pool,
    chain: &Chain,
    wait: bool,
) -> ServiceResult<Option<usize>> {
    let mut total = 0;
    for _ in 0..SEAL_BATCHES_PER_PASS_MAX {
        match seal_batch(pool, chain, wait).await? {
            SealBatch::Busy => return Ok(None),
            SealBatch::Sealed(count) => {
                total += count;
                if (count as i64) < SEAL_BATCH_MAX {
                    break;
                }
            }
        }
    }
    Ok(Some(total))
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub ok: bool,
    /// Records checked by this pass and found good (before the first bad one, if any).
    pub checked: i64,
    pub first_bad_audit_id: Option<i64>,
    pub reason: Option<String>,
    /// Sealed records in the chain (the head's seq).
    pub chain_length: i64,
    /// True when this pass walked from the first record.
    pub full: bool,
    pub verified_at: DateTime<Utc>,
}

/// What to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyScope {
    /// From where the last good verification ended to the head (from the first record if none did); the
    /// default, so that a large chain answers quickly.
    #[default]
    SinceLastVerified,
    /// From the first record to the head.
    Full,
    /// Between two records (inclusive, in chain order); `None` bounds mean the first record or the head.
    Range { from: Option<i64>, to: Option<i64> },
}

/// Seals what is pending, then checks the chain over `scope` and reports the first bad record. Runs in one
/// repeatable-read snapshot, so sealing by others during the walk does not disturb it.
///
/// # Incremental verification
/// A verification that reaches the head in good order remembers the head's seq and hash; the next one starts
/// after it, chained from that hash. Its soundness rests on the remembered hash: the record at the remembered
/// seq must still carry it, else (a change at the junction, or records deleted so the head is now behind) the
/// pass falls back to a full walk, which names the bad record. A change to an *older* record is found only by a
/// full pass (`?full=true`), which is why the position is a shortcut for the routine check, not a replacement.
pub async fn verify(
    pool: &deadpool_postgres::Pool,
    chain: &Chain,
    scope: VerifyScope,
) -> ServiceResult<Verification> {
    seal(pool, chain, true).await?;
    let verified_at = Utc::now();
    let mut client = pool.get().await?;
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let Some(head) = store::audit::read_head(&*transaction, chain).await? else {
        return Ok(Verification::bad(0, None, "the chain head is missing").at(
            verified_at,
            0,
            true,
        ));
    };
    let (from_audit_id, to_audit_id) = match scope {
        VerifyScope::Range { from, to } => (from, to),
        _ => (None, None),
    };
    // Where the walk starts: (seq before the first record to check, that record's hash).
    let mut start: Option<(i64, Vec<u8>)> = None;
    if scope == VerifyScope::SinceLastVerified
        && let Some(position) = store::audit::verified_position(&*transaction, chain).await?
        && position.seq <= head.last_seq
        && position.seq > 0
        && store::audit::hash_at(&*transaction, chain, position.seq).await?
            == Some(Some(position.hash.clone()))
    {
        start = Some((position.seq, position.hash));
    }
    let full = start.is_none() && from_audit_id.is_none();
    let start_seq = match (&start, from_audit_id) {
        (Some((seq, _)), _) => seq + 1,
        (None, Some(audit_id)) => sealed_seq(&transaction, chain, audit_id).await?,
        (None, None) => 1,
    };
    let end_seq = match to_audit_id {
        Some(audit_id) => sealed_seq(&transaction, chain, audit_id).await?,
        None => head.last_seq,
    };
    let finish = |verification: Verification| verification.at(verified_at, head.last_seq, full);
    if end_seq < start_seq && to_audit_id.is_some() {
        return Err(ServiceError::invalid(
            "to_audit_id comes before from_audit_id in the chain",
        ));
    }
    let mut previous_hash = match start {
        Some((_, hash)) => hash,
        None if start_seq == 1 => GENESIS_HASH.to_vec(),
        None => match store::audit::hash_at(&*transaction, chain, start_seq - 1).await? {
            Some(Some(hash)) => hash,
            _ => {
                return Ok(finish(Verification::bad(
                    0,
                    from_audit_id,
                    "the record before it is missing or unsealed",
                )));
            }
        },
    };
    let mut previous_seq = start_seq - 1;
    let mut checked = 0;
    while previous_seq < end_seq {
        let page = store::audit::sealed_range(
            &*transaction,
            chain,
            previous_seq + 1,
            end_seq,
            VERIFY_PAGE_SIZE,
        )
        .await?;
        if page.is_empty() {
            break;
        }
        let entries = listed_entries(&transaction, chain, &page).await?;
        for record in &page {
            if let Some(problem) = check_record(record, previous_seq, &previous_hash, &entries) {
                return Ok(finish(Verification::bad(
                    checked,
                    Some(record.audit_id),
                    problem,
                )));
            }
            checked += 1;
            previous_seq = record.seq.unwrap_or(previous_seq + 1);
            previous_hash = record.record_hash.clone().unwrap_or_default();
        }
    }
    if to_audit_id.is_none() {
        // The end of the chain must be the head: records missing after the last one found were deleted, and
        // records sealed beyond it were not written by a sealer.
        if previous_seq < head.last_seq {
            let missing = head.last_seq - previous_seq;
            return Ok(finish(Verification::bad(
                checked,
                head.last_audit_id,
                format!("{missing} record(s) at the end of the chain are missing (deleted?)"),
            )));
        }
        if previous_seq > 0 && previous_hash != head.last_hash {
            return Ok(finish(Verification::bad(
                checked,
                head.last_audit_id,
                "the chain head does not match the last record",
            )));
        }
        if let Some(audit_id) =
            store::audit::first_sealed_after(&*transaction, chain, head.last_seq).await?
        {
            return Ok(finish(Verification::bad(
                checked,
                Some(audit_id),
                "record sealed beyond the chain head (inserted?)",
            )));
        }
    }
    transaction.commit().await?;
    // Only a pass that covered everything from the first record (directly, or through a trusted position) to
    // the head may move the position.
    if from_audit_id.is_none() && to_audit_id.is_none() && previous_seq > 0 {
        let position = store::audit::VerifiedPosition {
            seq: previous_seq,
            hash: previous_hash,
        };
        store::audit::remember_verified_position(&**client, chain, &position).await?;
    }
    Ok(finish(Verification {
        ok: true,
        checked,
        first_bad_audit_id: None,
        reason: None,
        chain_length: 0,
        full: false,
        verified_at,
    }))
}

impl Verification {
    fn bad(checked: i64, audit_id: Option<i64>, reason: impl Into<String>) -> Verification {
        Verification {
            ok: false,
            checked,
            first_bad_audit_id: audit_id,
            reason: Some(reason.into()),
            chain_length: 0,
            full: false,
            verified_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    fn at(self, verified_at: DateTime<Utc>, chain_length: i64, full: bool) -> Verification {
        Verification {
            verified_at,
            chain_length,
            full,
            ..self
        }
    }
}

/// The seq of a record named as a verification bound: NOT_FOUND when absent, UNAVAILABLE while still unsealed.
async fn sealed_seq(
    transaction: &deadpool_postgres::Transaction<'_>,
    chain: &Chain,
    audit_id: i64,
) -> ServiceResult<i64> {
    match store::audit::seq_of(&**transaction, chain, audit_id).await? {
        None => Err(ServiceError::not_found(format!(
            "audit record {audit_id} not found"
        ))),
        Some(None) => Err(ServiceError::unavailable(format!(
            "audit record {audit_id} is not sealed yet; retry shortly"
        ))),
        Some(Some(seq)) => Ok(seq),
    }
}

/// What is wrong with `record`, given the record before it in the chain; None when it is good.
fn check_record(
    record: &StoredRecord,
    previous_seq: i64,
    previous_hash: &[u8],
    entries: &EntriesById,
) -> Option<String> {
    let seq = record.seq?;
    let expected_seq = previous_seq + 1;
    if seq != expected_seq {
        let missing = seq - expected_seq;
        return Some(format!(
            "sequence gap: {missing} record(s) before this one are missing (deleted?)"
        ));
    }
    let (Some(stored_hash), Some(sealed_at)) = (&record.record_hash, record.sealed_at) else {
        return Some("sealed record without its hash or seal time".to_owned());
    };
    if record_hash(previous_hash, record, seq, sealed_at).as_slice() != stored_hash.as_slice() {
        return Some(
            "record hash mismatch: the record was changed, or the one before it was".to_owned(),
        );
    }
    if !record.entry_ids.is_empty() {
        let digest = entries_digest(&record.entry_ids, entries);
        if record.entries_digest.as_deref() != Some(digest.as_str()) {
            return Some(
                "entries digest mismatch: a ledger entry this record lists was changed or deleted"
                    .to_owned(),
            );
        }
    }
    None
}

/// Seals, every [`SEAL_INTERVAL`], the chains this instance wrote to; at start it sweeps every chain once, so
/// records a crashed instance left unsealed are sealed too. A chain another sealer holds is retried next time.
pub async fn run_sealer(
    unsealed: Arc<Unsealed>,
    pool: deadpool_postgres::Pool,
    shutdown: CancellationToken,
) {
    match chains_with_unsealed(&pool).await {
        Ok(chains) => chains.into_iter().for_each(|chain| unsealed.mark(chain)),
        Err(error) => {
            tracing::warn!(%error, "audit start-up sweep failed; chains are sealed as they are written")
        }
    }
    let mut ticks = crate::periodic::Ticks::new(SEAL_INTERVAL, &shutdown);
    while ticks.next().await {
        seal_marked(&unsealed, &pool).await;
    }
}

/// The chains with records waiting to be sealed, marked by the writers and taken by the sealer.
#[derive(Debug, Default)]
pub struct Unsealed(Mutex<HashSet<Chain>>);

impl Unsealed {
    /// Records that `chain` has unsealed records.
    pub fn mark(&self, chain: Chain) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(chain);
    }

    /// The chains marked since the last call.
    pub fn take(&self) -> Vec<Chain> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain()
            .collect()
    }
}

/// Seals every chain marked unsealed; a chain that could not be sealed now is marked again.
pub async fn seal_marked(unsealed: &Unsealed, pool: &deadpool_postgres::Pool) {
    for chain in unsealed.take() {
        match seal(pool, &chain, false).await {
            Ok(Some(_)) => {}
            Ok(None) => unsealed.mark(chain),
            Err(error) => {
                tracing::warn!(chain = chain.name(), %error, "could not seal audit records");
                // The database being away is retried next pass; anything else (e.g. a schema whose migration
                // failed) waits for the next write, verification or start rather than failing every second.
                if error.code == crate::error::ErrorCode::Unavailable {
                    unsealed.mark(chain);
                }
            }
        }
    }
}

async fn chains_with_unsealed(pool: &deadpool_postgres::Pool) -> ServiceResult<Vec<Chain>> {
    let client = pool.get().await?;
    let merchants =
        store::audit::healthy_merchants(&**client, store::migrations::tenant_version_latest())
            .await?;
    let mut chains = Vec::new();
    for chain in std::iter::once(Chain::Platform)
        .chain(merchants.into_iter().map(|id| Chain::of_merchant(Some(id))))
    {
        if store::audit::has_unsealed(&**client, &chain).await? {
            chains.push(chain);
        }
    }
    Ok(chains)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> StoredRecord {
        StoredRecord {
            audit_id: 7,
            occurred_at: DateTime::from_timestamp_micros(1_700_000_000_000_000).expect("time"),
            merchant_id: Some(Uuid::nil()),
            key_id: None,
            key_prefix: Some("lp_live_AbCd".into()),
            transport: "grpc".into(),
            method: "/points.v1.PointsService/Earn".into(),
            request_id: "r-1".into(),
            request_digest: "00".into(),
            outcome_code: 0,
            outcome: "OK".into(),
            latency_us: 12,
            entry_ids: vec![1, 2],
            entries_digest: Some("ab".into()),
            uid: Some("u".into()),
            amount: Some("10.50".into()),
            currency: Some("EUR".into()),
            rule_code: Some("default".into()),
            rule_version: Some(1),
            points: Some(10),
            seq: None,
            record_hash: None,
            sealed_at: None,
        }
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_record_hash() {
        let sealed_at = DateTime::from_timestamp_micros(1_700_000_000_000_001).expect("time");
        let base = record_hash(&GENESIS_HASH, &record(), 1, sealed_at);
        assert_eq!(
            base,
            record_hash(&GENESIS_HASH, &record(), 1, sealed_at),
            "deterministic"
        );
        let changes: [fn(&mut StoredRecord); 8] = [
            |r| r.audit_id = 8,
            |r| r.key_id = Some(Uuid::nil()),
            |r| r.outcome_code = 40001,
            |r| r.entry_ids = vec![1],
            |r| r.entries_digest = None,
            |r| r.amount = Some("10.5".into()),
            |r| r.uid = Some(String::new()),
            |r| r.points = None,
        ];
        for change in changes {
            let mut changed = record();
            change(&mut changed);
            assert_ne!(base, record_hash(&GENESIS_HASH, &changed, 1, sealed_at));
        }
        assert_ne!(base, record_hash(&[1; 32], &record(), 1, sealed_at));
        assert_ne!(base, record_hash(&GENESIS_HASH, &record(), 2, sealed_at));
    }

    #[test]
    fn entries_digest_covers_each_field_and_missing_entries() {
        let entry = LedgerEntryFacts {
            entry_id: 1,
            uid: "u".into(),
            kind: "earn".into(),
            delta: 10,
            balance_after: 10,
            idempotency_key: Some("k".into()),
            reference: None,
            description: None,
            metadata: "{}".into(),
            rule_code: None,
            rule_version: None,
            amount: None,
            currency: None,
            reverses_entry_id: None,
            lot_id: None,
            expires_at: None,
            created_at: DateTime::from_timestamp_micros(1).expect("time"),
        };
        let base = entries_digest(&[1], &entries_by_id(vec![entry.clone()]));
        let changed = LedgerEntryFacts {
            delta: 11,
            ..entry.clone()
        };
        assert_ne!(base, entries_digest(&[1], &entries_by_id(vec![changed])));
        assert_ne!(
            base,
            entries_digest(&[1], &EntriesById::new()),
            "a deleted entry changes the digest"
        );
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn a_record_is_checked_for_gaps_hashes_and_entries() {
        let sealed_at = DateTime::from_timestamp_micros(5).expect("time");
        let mut good = record();
        good.entry_ids = vec![];
        good.entries_digest = None;
        good.seq = Some(3);
        good.sealed_at = Some(sealed_at);
        good.record_hash = Some(record_hash(&GENESIS_HASH, &good, 3, sealed_at).to_vec());
        assert_eq!(
            check_record(&good, 2, &GENESIS_HASH, &EntriesById::new()),
            None
        );
        assert!(
            check_record(&good, 1, &GENESIS_HASH, &EntriesById::new())
                .is_some_and(|reason| reason.contains("gap"))
        );
        assert!(
            check_record(&good, 2, &[9; 32], &EntriesById::new())
                .is_some_and(|reason| reason.contains("hash"))
        );
        let mut changed = good.clone();
        changed.outcome_code = 50001;
        assert!(
            check_record(&changed, 2, &GENESIS_HASH, &EntriesById::new())
                .is_some_and(|reason| reason.contains("hash"))
        );
    }
}
