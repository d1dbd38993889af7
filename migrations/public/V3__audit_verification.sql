-- Where the last verification of the platform audit chain ended in good order: the next one starts there.
CREATE TABLE public.platform_audit_verification (
    chain text PRIMARY KEY CHECK (chain = 'platform'),
    verified_seq bigint NOT NULL CHECK (verified_seq >= 0),
    verified_hash bytea NOT NULL CHECK (octet_length(verified_hash) = 32),
    verified_at timestamptz NOT NULL DEFAULT now()
);
