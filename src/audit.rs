//! The audit trail (SPEC §7): one record per `points.v1` call, chained with blake3 so that changing or deleting a
//! record, or changing a ledger entry a record lists, is detected.
//!
//! # Writing: one record per call
//! The handler fills [`crate::call::CallNotes`] as it goes (request digest, outcome, uid, entry ids, conversion facts).
//! - A **mutation** writes its record with [`record_in_transaction`] inside its own transaction, so the change and
//!   its record commit or vanish together.
//! - **Every other call** — reads, refusals by the auth layer (unauthenticated ones too), validation errors,
//!   idempotent replays, failed mutations, calls cut off by the request timeout — is recorded by the call layer
//!   ([`crate::auth::layer`]) after the handler returns, through the bounded in-memory [`buffer::AuditLog`] that a
//!   background task writes in batches and flushes at graceful shutdown. A crash loses only records still in that
//!   buffer (at most one flush interval of reads and refusals); never a mutation's record.
//! - When the buffer is full the call waits (backpressure) up to [`buffer::ENQUEUE_WAIT_MAX`]; only if the writer
//!   is stuck longer than that (database down) is the record dropped, counted in `audit_records_dropped_total`
//!   and logged as a warning.
//! - A failed mutation whose in-transaction record may or may not have committed (the handler failed after the
//!   insert) gets a buffered record that is written only if that in-transaction record does not exist, so each
//!   call still has exactly one record.
//! - A merchant's calls go to its schema's `audit_records`; calls without a merchant (admin operations without
//!   `x-merchant-id`, refusals before a merchant was known) go to `public.platform_audit_records`.
//! - Records hold the calling key's id and display prefix, never the key; a request id or method that looks like
//!   it carries a key is not recorded as such.
//!
//! # Tamper evidence: seal after commit
//! Audit ids come from an identity column, so concurrent transactions commit out of id order and a chain built at
//! insert time would either serialize every call or miss late commits. Records are therefore inserted *unsealed*
//! (`seq` NULL), and [`chain`] seals them afterwards: a sealer locks the chain's head row (one sealer per chain at a
//! time, also across instances), takes committed unsealed records in `audit_id` order in bounded batches, gives
//! them consecutive `seq` numbers after the head and sets
//! `record_hash = blake3(previous record_hash ‖ canonical bytes of the record)`, where the canonical bytes are a
//! length-prefixed encoding of every field, including `audit_id`, `seq`, `sealed_at` and `entries_digest`. A
//! record that commits late simply gets a later `seq`. `entries_digest` is the blake3 of the canonical form of the
//! ledger entries a record lists (every column of each `entries` row), computed by the sealer in the same pass —
//! the entries committed with the record, so they are there — which keeps the mutation's own transaction to one
//! extra INSERT; changing or deleting an entry is then detected by recomputing the digest. The head row (last
//! seq, audit id and hash) makes deleting the newest records detectable too. Records are updated exactly once, to
//! seal them; triggers refuse any other UPDATE or DELETE (and cost the sealing UPDATE nothing).
//!
//! Verification ([`chain::verify`]) first seals what is pending, then walks the chain by `seq` in one snapshot,
//! recomputing every hash and entries digest, and reports the first bad record: a changed record (hash mismatch),
//! a deleted one (gap in `seq`: the record after the gap is reported; at the end of the chain, the head's record),
//! or a changed ledger entry (digest mismatch on the record that lists it).
//!
//! Limits, stated plainly: a record is tamper-evident from the moment it is sealed (the sealer runs every second
//! and before every verification); and the hash is unkeyed, so someone who can rewrite the database can also
//! recompute every hash after their change. Anchoring the head hash outside the database (e.g. logging it
//! periodically) closes that gap.

pub mod buffer;
pub mod chain;

use crate::{
    call::{CallContext, NewRecord, Outcome},
    error::ServiceResult,
    store,
};

/// Writes the call's record inside the mutation's transaction and notes its id, so the call layer does not write
/// a second one. Call it last, just before `commit`, after noting the entry ids (`notes().entry_ids`) and any
/// conversion facts. A merchant call's record goes to the merchant's `audit_records`, a call without a merchant
/// to `public.platform_audit_records`; the table is schema-qualified, so this works inside a tenant transaction
/// and inside a transaction on `public` tables alike. The record is written unsealed, in one round trip; sealing
/// digests the entries it lists and chains it later.
pub async fn record_in_transaction(
    transaction: &tokio_postgres::Transaction<'_>,
    call: &CallContext,
) -> ServiceResult<()> {
    let record = NewRecord::for_call(call, Outcome::Ok);
    let audit_id = store::audit::insert_one(transaction, &record).await?;
    call.notes().in_transaction_audit_id = Some(audit_id);
    Ok(())
}
