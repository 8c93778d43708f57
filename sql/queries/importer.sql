-- Contact import (daemon/db/importer.py): the parsed rows come in chunks; each chunk is COPied
-- into a temporary staging table (no WAL, no index), then one statement classifies its rows
-- against each other, the rows of the chunks before, the campaign and the suppression list,
-- and inserts them into contacts in file order. PostgreSQL applies a chunk while the next
-- one is parsed. import_phones carries what the chunks before saw, one row per phone.

-- name: import_staging_create
CREATE TEMPORARY TABLE import_rows (
    line      integer NOT NULL,
    phone     text NOT NULL,
    params    jsonb NOT NULL,  -- parsed while the COPY runs, beside the CSV parse
    reason    text,
    note      text,
    region    text,
    time_zone text
) ON COMMIT DROP;

-- name: import_phones_create
-- Every phone of the import's valid rows with the line of its first one (the one that wins),
-- and, with line 0, every phone live in the campaign before the import.
CREATE TEMPORARY TABLE import_phones (
    phone text PRIMARY KEY,
    line  integer NOT NULL
) ON COMMIT DROP;

-- name: import_phones_live
-- $1 campaign: its live phones, before the first chunk.
INSERT INTO import_phones (phone, line)
SELECT phone, 0 FROM contacts
WHERE campaign_id = $1 AND state NOT IN ('invalid_record', 'removed');

-- name: import_staging_clear
TRUNCATE import_rows;

-- name: import_work_mem
-- The classification hashes and sorts every staged row: in memory, not in temporary files.
SET LOCAL work_mem = '256MB';

-- name: import_apply
-- One chunk. $1 campaign, $2 write (false: a dry run counts and inserts nothing), $3 block US
-- numbers (a MARKETING campaign with import.block_us_marketing: Meta has not delivered marketing templates
-- to region US since 2025-04-01; other +1 regions are not blocked). The first valid row of a
-- phone wins; a phone already live in the campaign is counted (already_in_campaign), never
-- added again; a suppressed phone is an invalid record: 'suppressed' (an entry of scope all),
-- 'suppressed_marketing' (a marketing-only entry, user_preferences stop, migration 0011) only
-- when the campaign's template is MARKETING (a campaign of unknown category counts as
-- marketing); a utility or authentication campaign takes a marketing-stopped phone. One row
-- per (verdict, note) counted. firsts: each valid phone of the chunk with the line of its
-- first row in the whole file (import_phones keeps the line a chunk before found; 0: live
-- before the import), from the index insert that records it, without a join.
WITH firsts AS MATERIALIZED (
    INSERT INTO import_phones AS p (phone, line)
    SELECT phone, min(line)
    FROM import_rows
    WHERE reason IS NULL
    GROUP BY phone
    ON CONFLICT (phone) DO UPDATE SET line = p.line
    RETURNING phone, line
), classified AS MATERIALIZED (
    SELECT s.line, s.phone, s.params, s.note, s.region, s.time_zone,
           CASE
               WHEN s.reason IS NOT NULL THEN s.reason
               WHEN live.phone IS NOT NULL THEN 'already_in_campaign'
               WHEN f.line <> s.line THEN 'duplicate_phone'
               WHEN sup.scope = 'all' THEN 'suppressed'
               WHEN sup.scope = 'marketing' THEN 'suppressed_marketing'
               WHEN $3::boolean AND s.region = 'US' THEN 'marketing_blocked_country'
           END AS verdict
    FROM import_rows s
    LEFT JOIN firsts f ON s.reason IS NULL AND f.phone = s.phone
    LEFT JOIN firsts live ON s.reason IS NULL AND live.phone = s.phone AND live.line = 0
    LEFT JOIN suppressions sup
        ON s.reason IS NULL AND sup.phone = s.phone
       AND (sup.scope = 'all'
            OR (SELECT coalesce(upper(k.template_category), 'MARKETING') = 'MARKETING'
                FROM campaigns k WHERE k.id = $1))
), inserted AS (
    INSERT INTO contacts (campaign_id, phone, params, state, invalid_reason, source_line,
                          region, time_zone, not_before)
    SELECT $1, phone, params,
           (CASE WHEN verdict IS NULL THEN 'initial' ELSE 'invalid_record' END)::contact_state,
           verdict, line,
           CASE WHEN verdict IS NULL THEN region END,
           CASE WHEN verdict IS NULL THEN time_zone END,
           -- A campaign with a send window (migration 0013): not claimable until its window
           -- is computed (db.windows_store, right after the import and by the daemon).
           (SELECT CASE WHEN k.send_window IS NULL THEN '-infinity' ELSE 'infinity' END
            FROM campaigns k WHERE k.id = $1)::timestamptz
    FROM classified
    WHERE $2::boolean AND verdict IS DISTINCT FROM 'already_in_campaign'
    ORDER BY line
    RETURNING 1
)
SELECT verdict, CASE WHEN verdict IS NULL THEN note END AS note, count(*) AS n,
       (SELECT count(*) FROM inserted) AS inserted
FROM classified
GROUP BY 1, 2;
