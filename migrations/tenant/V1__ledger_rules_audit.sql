-- A merchant's own schema. Runs with search_path set to that schema only, so names are unqualified here and
-- nothing refers outside the schema (no cross-schema foreign keys: keeps Citus schema-based sharding possible).

-- One row per uid: the lock that serializes its mutations and the balance of its entries.
CREATE TABLE accounts (
    uid text PRIMARY KEY,
    balance bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The point log. Append-only: a trigger refuses UPDATE and DELETE.
CREATE TABLE entries (
    entry_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('earn', 'spend', 'adjust', 'reverse', 'expire')),
    delta bigint NOT NULL CHECK (delta <> 0),
    balance_after bigint NOT NULL CHECK (balance_after >= 0),
    -- NULL only for entries the system writes itself (expire).
    idempotency_key text,
    reference text,
    description text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    rule_code text,
    rule_version integer,
    amount numeric,
    currency text,
    -- Unique: an entry is reversed at most once.
    reverses_entry_id bigint CONSTRAINT entries_reverses_entry_id_key UNIQUE REFERENCES entries (entry_id),
    -- For expire entries: the lot whose remainder expired.
    lot_id bigint,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX entries_uid_created ON entries (uid, created_at DESC, entry_id DESC);

CREATE FUNCTION entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'entries are append-only' USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER entries_no_update BEFORE UPDATE OR DELETE ON entries FOR EACH ROW EXECUTE FUNCTION entries_append_only();

-- What remains of each credit (earn, positive adjust), with its expiry. Spending takes earliest expiry first.
CREATE TABLE lots (
    lot_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid text NOT NULL,
    entry_id bigint NOT NULL REFERENCES entries (entry_id),
    points bigint NOT NULL CHECK (points > 0),
    remaining bigint NOT NULL CHECK (remaining >= 0 AND remaining <= points),
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lots_open_by_uid ON lots (uid, expires_at ASC NULLS LAST, lot_id) WHERE remaining > 0;
CREATE INDEX lots_open_by_expiry ON lots (expires_at) WHERE remaining > 0 AND expires_at IS NOT NULL;

-- Which lots a debit (spend, negative adjust) took points from, so a reversal gives them back.
CREATE TABLE lot_consumptions (
    entry_id bigint NOT NULL REFERENCES entries (entry_id),
    lot_id bigint NOT NULL REFERENCES lots (lot_id),
    points bigint NOT NULL CHECK (points > 0),
    PRIMARY KEY (entry_id, lot_id)
);

-- Completed mutations by idempotency key. Failed requests are never recorded.
CREATE TABLE idempotency_records (
    idempotency_key text PRIMARY KEY,
    operation text NOT NULL,
    request_digest text NOT NULL,
    entry_id bigint NOT NULL REFERENCES entries (entry_id),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Conversion rules: one row per code (the lock for numbering versions), and immutable versions.
CREATE TABLE rules (
    code text PRIMARY KEY CHECK (code ~ '^[a-z0-9_-]{1,40}$'),
    latest_version integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rule_versions (
    code text NOT NULL REFERENCES rules (code),
    version integer NOT NULL CHECK (version > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    unit_amount numeric NOT NULL CHECK (unit_amount > 0),
    points_per_unit bigint NOT NULL CHECK (points_per_unit > 0),
    rounding text NOT NULL CHECK (rounding IN ('floor', 'round', 'ceil')),
    min_amount numeric CHECK (min_amount >= 0),
    max_points bigint CHECK (max_points > 0),
    points_ttl_days integer CHECK (points_ttl_days > 0),
    effective_from timestamptz NOT NULL,
    effective_to timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (code, version),
    CHECK (effective_to IS NULL OR effective_to > effective_from)
);

-- The merchant's audit trail; see src/audit.rs for the blake3 chain kept in seq/record_hash.
CREATE TABLE audit_records (
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
CREATE INDEX audit_occurred ON audit_records (occurred_at DESC, audit_id DESC);
CREATE INDEX audit_unsealed ON audit_records (audit_id) WHERE seq IS NULL;
