-- The merchant's audit chain (see src/audit.rs): the head of the blake3 chain, a guard that lets a record be
-- updated only once (to seal it) and never deleted, and indexes for the audit queries.
-- Numbered 3: version 2 is reserved for the rules migration.

-- The last sealed record: sealing appends after it, and verification compares the end of the chain with it, so
-- deleting the newest records is detected too. One row; sealers lock it, which serializes them across instances.
CREATE TABLE audit_chain_head (
    chain text PRIMARY KEY CHECK (chain = 'merchant'),
    last_seq bigint NOT NULL CHECK (last_seq >= 0),
    last_audit_id bigint,
    last_hash bytea NOT NULL CHECK (octet_length(last_hash) = 32),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_chain_head (chain, last_seq, last_hash) VALUES ('merchant', 0, decode(repeat('00', 32), 'hex'));

-- Records are written unsealed and sealed exactly once; anything else is refused. (A superuser can bypass
-- triggers; the chain is what detects that.) The triggers are chosen so the sealing UPDATE, which sets only
-- seq, record_hash, entries_digest and sealed_at of unsealed rows, fires none of them: `UPDATE OF` fires only
-- when a listed column is in the SET list, and the WHEN clause is checked without calling the function.
CREATE FUNCTION audit_records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are never changed or deleted, only sealed once' USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER audit_records_immutable
    BEFORE UPDATE OF audit_id, occurred_at, merchant_id, key_id, key_prefix, transport, method, request_id,
        request_digest, outcome_code, outcome, latency_us, entry_ids, uid, amount, currency, rule_code,
        rule_version, points
    OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_refuse_change();
CREATE TRIGGER audit_records_sealed_once BEFORE UPDATE ON audit_records
    FOR EACH ROW WHEN (OLD.seq IS NOT NULL OR NEW.seq IS NULL) EXECUTE FUNCTION audit_records_refuse_change();

CREATE INDEX audit_key ON audit_records (key_id, occurred_at DESC, audit_id DESC) WHERE key_id IS NOT NULL;
CREATE INDEX audit_uid ON audit_records (uid, occurred_at DESC, audit_id DESC) WHERE uid IS NOT NULL;
