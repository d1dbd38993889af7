-- The platform audit chain (see src/audit.rs): the head of the blake3 chain, a guard that lets a record be updated
-- only once (to seal it) and never deleted, and indexes for the audit queries.

-- The last sealed record: sealing appends after it, and verification compares the end of the chain with it, so
-- deleting the newest records is detected too. One row; sealers lock it, which serializes them across instances.
CREATE TABLE public.platform_audit_chain_head (
    chain text PRIMARY KEY CHECK (chain = 'platform'),
    last_seq bigint NOT NULL CHECK (last_seq >= 0),
    last_audit_id bigint,
    last_hash bytea NOT NULL CHECK (octet_length(last_hash) = 32),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.platform_audit_chain_head (chain, last_seq, last_hash)
VALUES ('platform', 0, decode(repeat('00', 32), 'hex'));

-- Records are written unsealed and sealed exactly once; anything else is refused. (A superuser can bypass
-- triggers; the chain is what detects that.)
CREATE FUNCTION public.audit_records_seal_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit records are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.seq IS NOT NULL OR NEW.seq IS NULL
       OR (to_jsonb(NEW) - 'seq' - 'record_hash' - 'sealed_at') IS DISTINCT FROM
          (to_jsonb(OLD) - 'seq' - 'record_hash' - 'sealed_at') THEN
        RAISE EXCEPTION 'audit records are only updated once, to seal them' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER platform_audit_seal_only BEFORE UPDATE OR DELETE ON public.platform_audit_records
    FOR EACH ROW EXECUTE FUNCTION public.audit_records_seal_only();

CREATE INDEX platform_audit_key ON public.platform_audit_records (key_id, occurred_at DESC, audit_id DESC)
    WHERE key_id IS NOT NULL;
