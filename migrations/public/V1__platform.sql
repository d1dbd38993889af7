-- The platform schema: merchants, API keys, per-tenant migration status and the platform audit.
-- Every name is schema-qualified: `public` is never on a request's search path.

CREATE TABLE public.merchants (
    merchant_id uuid PRIMARY KEY,
    slug text NOT NULL CONSTRAINT merchants_slug_key UNIQUE,
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    status text NOT NULL CHECK (status IN ('active', 'suspended')),
    schema_name text NOT NULL UNIQUE CHECK (schema_name ~ '^merchant_[0-9a-f]{32}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.api_keys (
    key_id uuid PRIMARY KEY,
    -- NULL for platform (admin) keys.
    merchant_id uuid REFERENCES public.merchants (merchant_id),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    -- blake3 keyed hash of the plaintext; the plaintext is never stored.
    key_hash bytea NOT NULL CONSTRAINT api_keys_key_hash_key UNIQUE,
    prefix text NOT NULL,
    last4 text NOT NULL,
    scopes text[] NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'revoked')),
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    last_used_at timestamptz,
    rotated_to uuid,
    CHECK ((merchant_id IS NULL) = ('admin' = ANY (scopes)))
);
CREATE INDEX api_keys_merchant ON public.api_keys (merchant_id, created_at, key_id);

CREATE TABLE public.tenant_migrations (
    merchant_id uuid PRIMARY KEY REFERENCES public.merchants (merchant_id),
    schema_name text NOT NULL,
    version integer NOT NULL,
    error text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every running instance LISTENs on `points_auth` and drops cached keys when a key, its merchant or the merchant's
-- migration status changes, so revocation and suspension reach all instances within a second.
CREATE FUNCTION public.notify_auth_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'api_keys' THEN
        PERFORM pg_notify('points_auth', 'key:' || NEW.key_id::text);
    ELSE
        PERFORM pg_notify('points_auth', 'merchant:' || NEW.merchant_id::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_auth_change AFTER UPDATE ON public.api_keys FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.scopes IS DISTINCT FROM NEW.scopes OR OLD.key_hash IS DISTINCT FROM NEW.key_hash)
    EXECUTE FUNCTION public.notify_auth_change();

CREATE TRIGGER merchants_auth_change AFTER UPDATE ON public.merchants FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION public.notify_auth_change();
CREATE TRIGGER tenant_migrations_auth_change AFTER INSERT OR UPDATE ON public.tenant_migrations FOR EACH ROW
    EXECUTE FUNCTION public.notify_auth_change();

-- Keys and merchants are revoked or suspended, never deleted: a DELETE would bypass the notification above.
CREATE FUNCTION public.forbid_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never deleted', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER api_keys_no_delete BEFORE DELETE ON public.api_keys FOR EACH ROW EXECUTE FUNCTION public.forbid_delete();
CREATE TRIGGER merchants_no_delete BEFORE DELETE ON public.merchants FOR EACH ROW EXECUTE FUNCTION public.forbid_delete();

-- The platform audit: merchant and key operations, and calls rejected before a merchant was known.
-- Same shape as each tenant's audit_records; see src/audit.rs for the chain.
CREATE TABLE public.platform_audit_records (
    audit_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    merchant_id uuid,
    key_id uuid,
    key_prefix text,
    transport text NOT NULL,
    method text NOT NULL,
    request_id text NOT NULL,
    request_digest text NOT NULL,
    outcome_code integer NOT NULL,
    outcome text NOT NULL,
    latency_us bigint NOT NULL,
    entry_ids bigint[] NOT NULL DEFAULT '{}',
    entries_digest text,
    uid text,
    amount numeric,
    currency text,
    rule_code text,
    rule_version integer,
    points bigint,
    seq bigint UNIQUE,
    record_hash bytea,
    sealed_at timestamptz
);
CREATE INDEX platform_audit_occurred ON public.platform_audit_records (occurred_at DESC, audit_id DESC);
CREATE INDEX platform_audit_unsealed ON public.platform_audit_records (audit_id) WHERE seq IS NULL;
