-- The load-test harness (daemon/loadtest/): seeding, watching a run, reading its figures.

-- name: loadtest_seed_contacts
-- $1 campaign, $2 how many, $3 offset of the first contact (phones stay unique across
-- campaigns). Phones and parameters follow daemon/loadtest/seeding.py's phone_for and
-- params_for, so every system posts the same bodies.
INSERT INTO contacts (campaign_id, phone, params, state, source_line)
SELECT $1::bigint,
       '1555' || lpad(($3::bigint + g)::text, 7, '0'),
       jsonb_build_object('first_name', 'Name' || ($3::bigint + g)::text),
       'initial',
       g + 1
FROM generate_series(0, $2::bigint - 1) AS g;

-- name: loadtest_analyze_contacts
ANALYZE contacts;

-- name: loadtest_registered_daemons
-- $1 pids: those of them whose daemon has written its heartbeat row.
SELECT pid FROM daemons WHERE pid = ANY($1);

-- name: loadtest_pending_contacts
-- $1 campaigns: their contacts not yet final.
SELECT count(*) FROM contacts
WHERE campaign_id = ANY($1::bigint[]) AND state IN ('initial', 'in_progress', 'retry_scheduled');

-- name: loadtest_contact_rows
SELECT id, state::text AS state, attempts,
       extract(epoch FROM claimed_at)::float8 AS claimed_at,
       extract(epoch FROM sent_at)::float8 AS sent_at,
       wamid
FROM contacts WHERE campaign_id = ANY($1::bigint[]);

-- name: loadtest_attempt_knowledge
-- Per attempt of the contacts sent more than once (contact_attempts, migration 0010): whether
-- the daemon declared its outcome unknown (lease recovery, shutdown cut-off), and whether it
-- recorded a known send for it. What explains a second copy of a message.
SELECT a.contact_id, a.attempt, bool_or(a.unknown) AS unknown,
       bool_or(NOT a.unknown AND a.wamid IS NOT NULL) AS known_sent
FROM contacts c JOIN contact_attempts a ON a.contact_id = c.id
WHERE c.campaign_id = ANY($1::bigint[]) AND c.attempts > 1
GROUP BY 1, 2;

-- name: loadtest_last_change
SELECT extract(epoch FROM max(updated_at))::float8 FROM contacts
WHERE campaign_id = ANY($1::bigint[]);

-- name: loadtest_receipt_times
SELECT extract(epoch FROM received_at)::float8 AS received_at,
       extract(epoch FROM processed_at)::float8 AS processed_at,
       processing_state
FROM status_receipts;

-- name: loadtest_seed_contacts_values
-- Like loadtest_seed_contacts, for a template with other values: $4 the params keys, $5 their
-- values, $6 whether the contact's index is appended to the value (so that it differs per
-- contact), as daemon/loadtest/seeding.py's template_values describes them.
INSERT INTO contacts (campaign_id, phone, params, state, source_line)
SELECT $1::bigint,
       '1555' || lpad(($3::bigint + g)::text, 7, '0'),
       (SELECT jsonb_object_agg(x.k, x.v || CASE WHEN x.n THEN ($3::bigint + g)::text ELSE '' END)
        FROM unnest($4::text[], $5::text[], $6::bool[]) AS x(k, v, n)),
       'initial',
       g + 1
FROM generate_series(0, $2::bigint - 1) AS g;

-- name: loadtest_opt_outs
-- $1 the phones the mock's STOP replies came from (acknowledged by the webhook): those not on
-- the suppression list, messages recorded sent to an opted-out phone after its opt-out was
-- stored, opt-outs stored, inbound messages stored.
SELECT (SELECT count(*) FROM unnest($1::text[]) AS p(phone)
        WHERE NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.phone = p.phone))
           AS not_suppressed,
       (SELECT count(*) FROM contacts c JOIN suppressions s ON s.phone = c.phone
        WHERE s.source = 'inbound' AND c.sent_at > s.created_at) AS sent_after_opt_out,
       (SELECT count(*) FROM suppressions WHERE source = 'inbound') AS suppressed,
       (SELECT count(*) FROM inbound_messages) AS inbound,
       (SELECT count(*) FROM inbound_messages WHERE campaign_id IS NOT NULL) AS inbound_matched;

-- name: loadtest_pgss_available
-- Whether pg_stat_statements is loaded (the embedded cluster of `wa-sender loadtest` preloads
-- it); the harness then creates the extension in the run's database.
SELECT coalesce(current_setting('shared_preload_libraries', true), '') ~ 'pg_stat_statements';

-- name: loadtest_pgss_create
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

-- name: loadtest_pgss_reset
-- Statement statistics of this database from now on (seeding left out).
SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database
                                    WHERE datname = current_database()), 0);

-- name: loadtest_wal_lsn
-- Where the WAL is now (bytes written since: the difference of two of these).
SELECT pg_current_wal_lsn() - '0/0'::pg_lsn;

-- name: loadtest_pgss_statements
-- This database's statements since loadtest_pgss_reset: calls, rows, time planning and
-- executing (ms), WAL bytes; the harness names each by the query file it came from.
SELECT s.query, sum(s.calls)::bigint AS calls, sum(s.rows)::bigint AS rows,
       sum(s.total_exec_time)::float8 AS exec_ms, sum(s.total_plan_time)::float8 AS plan_ms,
       sum(s.wal_bytes)::float8 AS wal_bytes
FROM pg_stat_statements s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
GROUP BY s.query;
