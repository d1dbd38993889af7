-- The fast path's functions, once more, measured at the batch sizes they meet (issue 12): a batch of one
-- operation is what a tenant sends when its lane is idle (light load, or many tenants sharing the machine), and
-- there the set-based statement of V6 costs more than it saves: starting its plan (a dozen nodes, five tables)
-- costs more than writing the rows one by one. Measured in PostgreSQL alone (pgbench, 10 calls per transaction,
-- 2 clients): one earn per call, 3,470 earns/s set-based against 5,350/s as plain statements; two per call, even;
-- four per call, 8,100/s set-based.
--
-- * `ledger_apply_ops` is the per-operation loop of V7 as a function of its own, with the same arguments and
--   result columns as `ledger_apply_batch`, and one more: `only_uids`, the uids whose operations it applies
--   (NULL: all). It locks each account itself, creating it at 0 if new. The service calls it for a batch of one.
-- * `ledger_apply_batch` is V7's, unchanged in what it does: its set-based statement, then, for the uids that
--   need the loop (which that statement has locked), a call of `ledger_apply_ops` instead of a copy of the loop.

CREATE FUNCTION ledger_apply_ops(
    now timestamptz,
    merchant uuid,
    op_kind text[],
    op_uid text[],
    op_points bigint[],
    op_key text[],
    op_digest text[],
    op_reference text[],
    op_description text[],
    op_metadata jsonb[],
    op_expires_at timestamptz[],
    audit_occurred_at timestamptz[],
    audit_key_id uuid[],
    audit_key_prefix text[],
    audit_transport text[],
    audit_method text[],
    audit_request_id text[],
    audit_latency_us bigint[],
    only_uids text[] DEFAULT NULL
) RETURNS TABLE (
    idx integer,
    result text,
    audit_id bigint,
    created_entry_ids bigint[],
    entry_id bigint,
    uid text,
    kind text,
    delta bigint,
    balance_after bigint,
    idempotency_key text,
    reference text,
    description text,
    metadata jsonb,
    rule_code text,
    rule_version integer,
    amount numeric,
    currency text,
    reverses_entry_id bigint,
    lot_id bigint,
    expires_at timestamptz,
    created_at timestamptz
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    i integer;
    v_uid text;
    v_points bigint;
    v_delta bigint;
    v_balance bigint;
    v_expired bigint;
    v_held bigint;
    v_needed bigint;
    v_take bigint;
    v_credited boolean;
    v_recorded record;
    v_lot record;
    v_entry entries%ROWTYPE;
BEGIN
    FOR i IN 1 .. coalesce(array_length(op_kind, 1), 0) LOOP
        v_uid := op_uid[i];
        CONTINUE WHEN only_uids IS NOT NULL AND v_uid <> ALL (only_uids);
        idx := i;
        audit_id := NULL;
        created_entry_ids := '{}';

        SELECT r.operation, r.request_digest, r.entry_id INTO v_recorded
        FROM idempotency_records AS r WHERE r.idempotency_key = op_key[i];
        IF FOUND THEN
            IF v_recorded.operation <> op_kind[i] OR v_recorded.request_digest <> op_digest[i] THEN
                result := 'conflict';
                RETURN NEXT;
                CONTINUE;
            END IF;
            SELECT * INTO v_entry FROM entries AS e WHERE e.entry_id = v_recorded.entry_id;
            result := 'replayed';
            entry_id := v_entry.entry_id; uid := v_entry.uid; kind := v_entry.kind; delta := v_entry.delta;
            balance_after := v_entry.balance_after; idempotency_key := v_entry.idempotency_key;
            reference := v_entry.reference; description := v_entry.description; metadata := v_entry.metadata;
            rule_code := v_entry.rule_code; rule_version := v_entry.rule_version; amount := v_entry.amount;
            currency := v_entry.currency; reverses_entry_id := v_entry.reverses_entry_id;
            lot_id := v_entry.lot_id; expires_at := v_entry.expires_at; created_at := v_entry.created_at;
            RETURN NEXT;
            CONTINUE;
        END IF;

        v_points := op_points[i];
        v_delta := CASE WHEN op_kind[i] = 'spend' THEN -v_points ELSE v_points END;
        IF op_kind[i] = 'earn' AND op_expires_at[i] IS NOT NULL AND op_expires_at[i] <= now THEN
            result := 'expired';
            RETURN NEXT;
            CONTINUE;
        END IF;

        IF v_delta > 0 AND NOT EXISTS (
            SELECT FROM lots AS l WHERE l.uid = v_uid AND l.remaining > 0 AND l.expires_at <= now
        ) THEN
            -- A credit of a uid without expired points (most operations): its account created if new, locked and
            -- credited in one statement; none at all (NOT FOUND) if the balance would overflow. (`now` is the
            -- argument: Citus refuses a function that is not immutable in DO UPDATE SET.)
            INSERT INTO accounts AS a (uid, balance) VALUES (v_uid, v_delta)
            ON CONFLICT ON CONSTRAINT accounts_pkey DO UPDATE
                SET balance = a.balance + excluded.balance, updated_at = now
                WHERE a.balance <= 9223372036854775807 - excluded.balance
            RETURNING a.balance INTO v_balance;
            IF NOT FOUND THEN
                result := 'overflow';
                RETURN NEXT;
                CONTINUE;
            END IF;
            v_credited := true;
        ELSE
            -- The account, locked (ledger_apply_batch has locked it already; alone, this is where it is locked).
            -- A uid's first operation creates it at 0, as the set-based statement of ledger_apply_batch does.
            SELECT a.balance INTO v_balance FROM accounts AS a WHERE a.uid = v_uid FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO accounts (uid, balance) VALUES (v_uid, 0) ON CONFLICT ON CONSTRAINT accounts_pkey DO NOTHING;
                SELECT a.balance INTO v_balance FROM accounts AS a WHERE a.uid = v_uid FOR UPDATE;
            END IF;
            SELECT coalesce(sum(l.remaining), 0) INTO v_expired
            FROM lots AS l WHERE l.uid = v_uid AND l.remaining > 0 AND l.expires_at <= now;
            -- V7: a debit needs enough available points: the unexpired balance less what active holds reserve.
            v_held := 0;
            IF v_delta < 0 THEN
                SELECT coalesce(sum(h.points), 0) INTO v_held
                FROM holds AS h WHERE h.uid = v_uid AND h.status = 'active' AND h.expires_at > now;
            END IF;
            IF v_delta < 0 AND v_balance - v_expired - v_held < -v_delta THEN
                result := 'insufficient';
                balance_after := v_balance - v_expired - v_held;
                RETURN NEXT;
                CONTINUE;
            END IF;
            IF v_delta > 0 AND v_delta > 9223372036854775807 - (v_balance - v_expired) THEN
                result := 'overflow';
                RETURN NEXT;
                CONTINUE;
            END IF;

            -- Write off what expired, oldest expiry first.
            IF v_expired > 0 THEN
                FOR v_lot IN
                    SELECT l.lot_id, l.remaining, l.expires_at FROM lots AS l
                    WHERE l.uid = v_uid AND l.remaining > 0 AND l.expires_at <= now
                    ORDER BY l.expires_at, l.lot_id FOR UPDATE
                LOOP
                    v_balance := v_balance - v_lot.remaining;
                    INSERT INTO entries AS e (uid, kind, delta, balance_after, lot_id, expires_at)
                    VALUES (v_uid, 'expire', -v_lot.remaining, v_balance, v_lot.lot_id, v_lot.expires_at)
                    RETURNING e.entry_id INTO v_take;
                    created_entry_ids := created_entry_ids || v_take;
                    UPDATE lots AS l SET remaining = 0 WHERE l.lot_id = v_lot.lot_id;
                END LOOP;
            END IF;
            v_balance := v_balance + v_delta;
            v_credited := false;
        END IF;
        INSERT INTO entries AS e (uid, kind, delta, balance_after, idempotency_key, reference, description, metadata,
                                  expires_at)
        VALUES (v_uid, op_kind[i], v_delta, v_balance, op_key[i], op_reference[i], op_description[i],
                coalesce(op_metadata[i], '{}'::jsonb), CASE WHEN op_kind[i] = 'earn' THEN op_expires_at[i] END)
        RETURNING e.* INTO v_entry;
        created_entry_ids := created_entry_ids || v_entry.entry_id;

        IF v_delta > 0 THEN
            INSERT INTO lots (uid, entry_id, points, remaining, expires_at)
            VALUES (v_uid, v_entry.entry_id, v_delta, v_delta, v_entry.expires_at);
        ELSE
            v_needed := -v_delta;
            FOR v_lot IN
                SELECT l.lot_id, l.remaining FROM lots AS l
                WHERE l.uid = v_uid AND l.remaining > 0 AND (l.expires_at IS NULL OR l.expires_at > now)
                ORDER BY l.expires_at ASC NULLS LAST, l.lot_id FOR UPDATE
            LOOP
                EXIT WHEN v_needed = 0;
                v_take := least(v_needed, v_lot.remaining);
                UPDATE lots AS l SET remaining = l.remaining - v_take WHERE l.lot_id = v_lot.lot_id;
                INSERT INTO lot_consumptions (entry_id, lot_id, points) VALUES (v_entry.entry_id, v_lot.lot_id, v_take);
                v_needed := v_needed - v_take;
            END LOOP;
            IF v_needed <> 0 THEN
                RAISE EXCEPTION 'lots of uid hold % points fewer than its balance', v_needed
                    USING ERRCODE = 'data_corrupted';
            END IF;
        END IF;

        IF NOT v_credited THEN
            UPDATE accounts AS a SET balance = v_balance, updated_at = now() WHERE a.uid = v_uid;
        END IF;
        INSERT INTO idempotency_records (idempotency_key, operation, request_digest, entry_id)
        VALUES (op_key[i], op_kind[i], op_digest[i], v_entry.entry_id);
        INSERT INTO audit_records AS r (occurred_at, merchant_id, key_id, key_prefix, transport, method, request_id,
                                        request_digest, outcome_code, outcome, latency_us, entry_ids, uid, points)
        VALUES (audit_occurred_at[i], merchant, audit_key_id[i], audit_key_prefix[i], audit_transport[i],
                audit_method[i], audit_request_id[i], op_digest[i], 0, 'OK', audit_latency_us[i],
                created_entry_ids, v_uid, v_delta)
        RETURNING r.audit_id INTO audit_id;

        result := 'applied';
        entry_id := v_entry.entry_id; uid := v_entry.uid; kind := v_entry.kind; delta := v_entry.delta;
        balance_after := v_entry.balance_after; idempotency_key := v_entry.idempotency_key;
        reference := v_entry.reference; description := v_entry.description; metadata := v_entry.metadata;
        rule_code := NULL; rule_version := NULL; amount := NULL; currency := NULL; reverses_entry_id := NULL;
        lot_id := NULL; expires_at := v_entry.expires_at; created_at := v_entry.created_at;
        RETURN NEXT;
        -- The next operation starts from clean output columns.
        entry_id := NULL; uid := NULL; kind := NULL; delta := NULL; balance_after := NULL; idempotency_key := NULL;
        reference := NULL; description := NULL; metadata := NULL; expires_at := NULL; created_at := NULL;
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION ledger_apply_batch(
    now timestamptz,
    merchant uuid,
    op_kind text[],
    op_uid text[],
    op_points bigint[],
    op_key text[],
    op_digest text[],
    op_reference text[],
    op_description text[],
    op_metadata jsonb[],
    op_expires_at timestamptz[],
    audit_occurred_at timestamptz[],
    audit_key_id uuid[],
    audit_key_prefix text[],
    audit_transport text[],
    audit_method text[],
    audit_request_id text[],
    audit_latency_us bigint[]
) RETURNS TABLE (
    idx integer,
    result text,
    audit_id bigint,
    created_entry_ids bigint[],
    entry_id bigint,
    uid text,
    kind text,
    delta bigint,
    balance_after bigint,
    idempotency_key text,
    reference text,
    description text,
    metadata jsonb,
    rule_code text,
    rule_version integer,
    amount numeric,
    currency text,
    reverses_entry_id bigint,
    lot_id bigint,
    expires_at timestamptz,
    created_at timestamptz
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_slow text[];
BEGIN
    -- The uids that need the per-operation loop. The look-ups are LATERAL probes (one index probe per
    -- operation): as EXISTS under OR, a plan cached while the tables were small hashed them whole on every call,
    -- and went on doing so as they grew.
    SELECT coalesce(array_agg(DISTINCT o.uid), '{}') INTO v_slow
    FROM (
        SELECT o.*, count(*) OVER (PARTITION BY o.key) AS uses
        FROM unnest(op_kind, op_uid, op_points, op_key, op_expires_at) AS o(kind, uid, points, key, expires_at)
    ) AS o
    LEFT JOIN LATERAL (
        SELECT true AS recorded FROM idempotency_records AS r WHERE r.idempotency_key = o.key LIMIT 1
    ) AS r ON true
    LEFT JOIN LATERAL (
        SELECT true AS expired FROM lots AS l
        WHERE l.uid = o.uid AND l.remaining > 0 AND l.expires_at <= now LIMIT 1
    ) AS l ON true
    WHERE o.uses > 1
       OR o.kind NOT IN ('earn', 'adjust') OR o.points <= 0
       OR (o.kind = 'earn' AND o.expires_at IS NOT NULL AND o.expires_at <= now)
       OR r.recorded OR l.expired;

    -- Lock every account of the batch in byte order, creating those that do not exist, adding the credits of the
    -- set-based uids; then write those credits' entries, lots, idempotency and audit records.
    RETURN QUERY
    WITH o AS (
        SELECT o.*, o.uid <> ALL (v_slow) AS fast
        FROM unnest(op_kind, op_uid, op_points, op_key, op_digest, op_reference, op_description, op_metadata,
                    op_expires_at, audit_occurred_at, audit_key_id, audit_key_prefix, audit_transport, audit_method,
                    audit_request_id, audit_latency_us)
             WITH ORDINALITY AS o(kind, uid, points, key, digest, reference, description, metadata, expires_at,
                                  occurred_at, key_id, key_prefix, transport, method, request_id, latency_us, i)
    ), account AS (
        INSERT INTO accounts AS a (uid, balance)
        SELECT o.uid COLLATE "C", coalesce(sum(o.points) FILTER (WHERE o.fast), 0)
        FROM o GROUP BY o.uid COLLATE "C" ORDER BY 1
        ON CONFLICT ON CONSTRAINT accounts_pkey DO UPDATE
            SET balance = a.balance + excluded.balance,
                updated_at = CASE WHEN excluded.balance = 0 THEN a.updated_at ELSE now() END
        RETURNING a.uid, a.balance
    ), credit AS (
        -- balance_after: the balance before the batch plus the credits up to this one, in arrival order.
        SELECT o.*, account.balance - sum(o.points) OVER (PARTITION BY o.uid)
                    + sum(o.points) OVER (PARTITION BY o.uid ORDER BY o.i) AS balance_after
        FROM o JOIN account ON account.uid = o.uid
        WHERE o.fast
    ), written AS (
        INSERT INTO entries AS e (uid, kind, delta, balance_after, idempotency_key, reference, description, metadata,
                                  expires_at)
        SELECT c.uid, c.kind, c.points, c.balance_after, c.key, c.reference, c.description,
               coalesce(c.metadata, '{}'::jsonb), CASE WHEN c.kind = 'earn' THEN c.expires_at END
        FROM credit AS c ORDER BY c.i
        RETURNING e.*
    ), applied AS (
        SELECT c.i, c.digest, c.occurred_at, c.key_id, c.key_prefix, c.transport, c.method, c.request_id,
               c.latency_us, w.*
        FROM written AS w JOIN credit AS c ON c.key = w.idempotency_key
    ), lot AS (
        INSERT INTO lots (uid, entry_id, points, remaining, expires_at)
        SELECT p.uid, p.entry_id, p.delta, p.delta, p.expires_at FROM applied AS p ORDER BY p.i
    ), recorded AS (
        INSERT INTO idempotency_records (idempotency_key, operation, request_digest, entry_id)
        SELECT p.idempotency_key, p.kind, p.digest, p.entry_id FROM applied AS p
    ), audited AS (
        INSERT INTO audit_records AS r (occurred_at, merchant_id, key_id, key_prefix, transport, method, request_id,
                                        request_digest, outcome_code, outcome, latency_us, entry_ids, uid, points)
        SELECT p.occurred_at, merchant, p.key_id, p.key_prefix, p.transport, p.method, p.request_id, p.digest, 0, 'OK',
               p.latency_us, ARRAY[p.entry_id], p.uid, p.delta
        FROM applied AS p ORDER BY p.i
        RETURNING r.audit_id, r.entry_ids[1] AS entry_id
    )
    SELECT p.i::integer, 'applied'::text, d.audit_id, ARRAY[p.entry_id], p.entry_id, p.uid, p.kind, p.delta,
           p.balance_after, p.idempotency_key, p.reference, p.description, p.metadata, p.rule_code, p.rule_version,
           p.amount, p.currency, p.reverses_entry_id, p.lot_id, p.expires_at, p.created_at
    FROM applied AS p JOIN audited AS d ON d.entry_id = p.entry_id;

    IF cardinality(v_slow) > 0 THEN
        RETURN QUERY SELECT * FROM ledger_apply_ops(
        now, merchant, op_kind, op_uid, op_points, op_key, op_digest, op_reference, op_description, op_metadata,
        op_expires_at, audit_occurred_at, audit_key_id, audit_key_prefix, audit_transport, audit_method, audit_request_id,
        audit_latency_us,
        v_slow);
    END IF;
END;
$$;
