-- Account lists, the liability report's roll-up and the audit chain's verified position (SPEC §13).

-- The account list pages through uids in byte order, whatever the database's collation, and finds a uid prefix
-- as a range of that order. (No index on balance: it would turn every balance update into an index write; the
-- top-holders order sorts instead.)
CREATE INDEX accounts_uid_bytes ON accounts ((uid COLLATE "C"));

-- The transaction that wrote each entry. Entries commit out of entry_id order, so the roll-up cannot remember
-- "everything up to entry N"; it remembers a transaction horizon instead: every transaction below the oldest one
-- still running has finished, so all its entries are visible and none will ever appear later (see
-- src/service/reports.rs). Rows written before this migration keep NULL and are rolled up right here.
ALTER TABLE entries ADD COLUMN xid xid8;
ALTER TABLE entries ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX entries_xid ON entries (xid);

-- Movements per quarter hour (UTC): quarter hours, not days, so that a report can bucket by day in any time zone
-- (every zone in use today is a whole number of quarter hours from UTC). Figures are non-negative; `net` is the
-- signed sum of the deltas, so outstanding = Σ net.
CREATE TABLE liability_periods (
    period_start timestamptz PRIMARY KEY,
    issued bigint NOT NULL DEFAULT 0,
    redeemed bigint NOT NULL DEFAULT 0,
    expired bigint NOT NULL DEFAULT 0,
    adjusted_in bigint NOT NULL DEFAULT 0,
    adjusted_out bigint NOT NULL DEFAULT 0,
    reversed_in bigint NOT NULL DEFAULT 0,
    reversed_out bigint NOT NULL DEFAULT 0,
    net bigint NOT NULL DEFAULT 0,
    entries bigint NOT NULL DEFAULT 0
);

-- The roll-up's position: liability_periods holds exactly the entries written by transactions below `horizon`
-- (plus those written before this migration). One row, locked by the roller (one at a time, across instances);
-- writers never touch it.
CREATE TABLE liability_rollup_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    horizon xid8 NOT NULL,
    rolled_net bigint NOT NULL,
    rolled_entries bigint NOT NULL,
    rolled_at timestamptz NOT NULL DEFAULT now()
);

-- Back-fill: nothing else writes entries until this migration commits (ADD COLUMN holds the table's exclusive
-- lock), so the NULL rows are exactly the entries that existed before it.
INSERT INTO liability_periods (period_start, issued, redeemed, expired, adjusted_in, adjusted_out, reversed_in,
                               reversed_out, net, entries)
SELECT date_bin('15 minutes', created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       coalesce(sum(delta) FILTER (WHERE kind = 'earn'), 0),
       coalesce(-sum(delta) FILTER (WHERE kind = 'spend'), 0),
       coalesce(-sum(delta) FILTER (WHERE kind = 'expire'), 0),
       coalesce(sum(delta) FILTER (WHERE kind = 'adjust' AND delta > 0), 0),
       coalesce(-sum(delta) FILTER (WHERE kind = 'adjust' AND delta < 0), 0),
       coalesce(sum(delta) FILTER (WHERE kind = 'reverse' AND delta > 0), 0),
       coalesce(-sum(delta) FILTER (WHERE kind = 'reverse' AND delta < 0), 0),
       sum(delta),
       count(*)
FROM entries
GROUP BY 1;
INSERT INTO liability_rollup_state (horizon, rolled_net, rolled_entries)
SELECT '0'::xid8, coalesce(sum(net), 0), coalesce(sum(entries), 0) FROM liability_periods;

-- Where the last verification of this merchant's audit chain ended in good order: the next one starts there.
CREATE TABLE audit_verification (
    chain text PRIMARY KEY CHECK (chain = 'merchant'),
    verified_seq bigint NOT NULL CHECK (verified_seq >= 0),
    verified_hash bytea NOT NULL CHECK (octet_length(verified_hash) = 32),
    verified_at timestamptz NOT NULL DEFAULT now()
);
