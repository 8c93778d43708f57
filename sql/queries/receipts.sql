-- Status receipts: the webhook's insert, the reconciler's batch, the wake-up on new sends.

-- name: store_receipts
-- Every status of one webhook POST in one statement, unless the same body was stored within
-- the replay window: $11 the body's SHA-256 (NULL: no replay check), $12 the window in
-- seconds (a digest older than that counts as new, whether or not upkeep pruned it yet).
-- A NOTIFY on channel $10 when statuses were stored, so that reconcilers wake up. Returns how
-- many rows were stored and whether the body was a replay (then nothing was stored).
WITH seen AS (
    INSERT INTO webhook_digests AS d (digest)
    SELECT $11::bytea WHERE $11::bytea IS NOT NULL
    ON CONFLICT (digest) DO UPDATE SET received_at = now()
        WHERE d.received_at < now() - make_interval(secs => $12)
    RETURNING 1
),
stored AS (
    -- $13.. (migration 0011): user_id, pricing billable/model/type/category, conversation
    -- id/origin, error details, failed action, retry after s.
    INSERT INTO status_receipts (wamid, status, status_at, recipient_id, phone_number_id,
                                 callback_data, error_code, error_title, raw,
                                 user_id, pricing_billable, pricing_model, pricing_type,
                                 pricing_category, conversation_id, conversation_origin,
                                 error_details, failed_action, retry_after_s)
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                         $6::text[], $7::int[], $8::text[], $9::jsonb[],
                         $13::text[], $14::bool[], $15::text[], $16::text[], $17::text[],
                         $18::text[], $19::text[], $20::text[], $21::text[], $22::float8[])
    WHERE $11::bytea IS NULL OR EXISTS (SELECT FROM seen)
    RETURNING 1
),
counted AS (SELECT count(*) AS n FROM stored)
SELECT n, $11::bytea IS NOT NULL AND NOT EXISTS (SELECT FROM seen) AS replay,
       CASE WHEN n > 0 THEN pg_notify($10, n::text) END AS notified
FROM counted;

-- name: store_receipt_bodies
-- The statuses of several webhook POSTs in one statement (the webhook's group commit: the POSTs
-- that came in while the previous statement ran). As store_receipts, per body: $23 each row's
-- body (1-based), $11 each body's SHA-256 (NULL: no replay check). A body is stored unless its
-- digest was stored within the replay window ($12 seconds); of two bodies with one digest in
-- the same group only the first is. Returns the bodies stored (the others were replays), how
-- many rows, and a NOTIFY on channel $10 when any were stored.
WITH bodies AS (
    SELECT b.digest, b.body::int AS body FROM unnest($11::bytea[]) WITH ORDINALITY AS b(digest, body)
),
seen AS (
    INSERT INTO webhook_digests AS d (digest)
    SELECT DISTINCT digest FROM bodies WHERE digest IS NOT NULL
    ON CONFLICT (digest) DO UPDATE SET received_at = now()
        WHERE d.received_at < now() - make_interval(secs => $12)
    RETURNING d.digest
),
fresh AS (
    SELECT b.body FROM bodies b
    WHERE b.digest IS NULL
       OR (b.digest IN (SELECT digest FROM seen)
           AND b.body = (SELECT min(o.body) FROM bodies o WHERE o.digest = b.digest))
),
stored AS (
    INSERT INTO status_receipts (wamid, status, status_at, recipient_id, phone_number_id,
                                 callback_data, error_code, error_title, raw,
                                 user_id, pricing_billable, pricing_model, pricing_type,
                                 pricing_category, conversation_id, conversation_origin,
                                 error_details, failed_action, retry_after_s)
    SELECT u.wamid, u.status, u.status_at, u.recipient_id, u.phone_number_id, u.callback_data,
           u.error_code, u.error_title, u.raw, u.user_id, u.pricing_billable, u.pricing_model,
           u.pricing_type, u.pricing_category, u.conversation_id, u.conversation_origin,
           u.error_details, u.failed_action, u.retry_after_s
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                $6::text[], $7::int[], $8::text[], $9::jsonb[],
                $13::text[], $14::bool[], $15::text[], $16::text[], $17::text[],
                $18::text[], $19::text[], $20::text[], $21::text[], $22::float8[], $23::int[])
         AS u(wamid, status, status_at, recipient_id, phone_number_id, callback_data,
              error_code, error_title, raw, user_id, pricing_billable, pricing_model,
              pricing_type, pricing_category, conversation_id, conversation_origin,
              error_details, failed_action, retry_after_s, body)
    WHERE u.body IN (SELECT body FROM fresh)
    RETURNING 1
),
counted AS (SELECT count(*) AS n FROM stored)
SELECT n, ARRAY(SELECT body FROM fresh) AS fresh,
       CASE WHEN n > 0 THEN pg_notify($10, n::text) END AS notified
FROM counted;

-- name: ingest_receipts
-- The webhook's group commit (engine/group_commit.py): the statuses of several POSTs stored
-- and, in the same statement, applied to their contacts by the rules of reconcile_receipts
-- (the CTEs from probed to verdicts are the same text; tests compare them), so that a status
-- whose contact is there is written once, already applied or duplicate, and never read back.
-- Only what cannot be applied yet is stored pending for the reconciler: no contact yet (the
-- send result not recorded), or its contact locked by another transaction; then a NOTIFY on
-- channel $10.
-- Parameters as store_receipt_bodies ($1-$9, $13-$22 the status columns, $23 each row's
-- body, $11 each body's digest, $12 the replay window), then $24 the error codes that add the
-- phone to the suppression list, $25 their reason, $26 seconds after which an unmatched
-- receipt becomes an orphan (never at once: it is stored pending), $27 the busy back-off.
-- Planned with custom plans (custom_plans, ~1-3 ms a call): the generic plan estimates every
-- CTE at a few rows and, measured, took twice as long per status at 1,000 a call.
-- Returns the bodies stored (the others were replays), how many rows by verdict, the ids of
-- applied failed statuses (for retry_failed_contacts), whether a status of an earlier
-- attempt carried a user id (fill_contact_user_ids), and the orphans (another number's).
WITH bodies AS (
    SELECT b.digest, b.body::int AS body FROM unnest($11::bytea[]) WITH ORDINALITY AS b(digest, body)
),
seen AS (
    INSERT INTO webhook_digests AS d (digest)
    SELECT DISTINCT digest FROM bodies WHERE digest IS NOT NULL
    ON CONFLICT (digest) DO UPDATE SET received_at = now()
        WHERE d.received_at < now() - make_interval(secs => $12)
    RETURNING d.digest
),
fresh AS (
    SELECT b.body FROM bodies b
    WHERE b.digest IS NULL
       OR (b.digest IN (SELECT digest FROM seen)
           AND b.body = (SELECT min(o.body) FROM bodies o WHERE o.digest = b.digest))
),
input AS (
    SELECT u.*
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                $6::text[], $7::int[], $8::text[], $9::jsonb[],
                $13::text[], $14::bool[], $15::text[], $16::text[], $17::text[],
                $18::text[], $19::text[], $20::text[], $21::text[], $22::float8[], $23::int[])
         WITH ORDINALITY
         AS u(wamid, status, status_at, recipient_id, phone_number_id, callback_data,
              error_code, error_title, raw, user_id, pricing_billable, pricing_model,
              pricing_type, pricing_category, conversation_id, conversation_origin,
              error_details, failed_action, retry_after_s, body, id)
    WHERE u.body IN (SELECT body FROM fresh)
),
decoded AS (
    -- id: the row's place in the group (ORDINALITY), the order of arrival as receipt ids are
    SELECT i.id, i.wamid, i.status, coalesce(i.status_at, now()) AS at, now() AS received_at,
           i.recipient_id, i.callback_data, i.error_code, i.error_title, i.phone_number_id,
           i.user_id,
           CASE WHEN i.callback_data ~ '^ws1:[0-9]{1,18}:[0-9]{1,18}:[0-9]{1,9}$'
                THEN string_to_array(i.callback_data, ':') END AS cb
    FROM input i
),
-- include: receipt_rules codes=$24 reason=$25 contact_probe=ingest_contact_probe orphan_after=$26
stored AS (
    INSERT INTO status_receipts (wamid, status, status_at, recipient_id, phone_number_id,
                                 callback_data, error_code, error_title, raw,
                                 user_id, pricing_billable, pricing_model, pricing_type,
                                 pricing_category, conversation_id, conversation_origin,
                                 error_details, failed_action, retry_after_s,
                                 processing_state, contact_id, processed_at, next_try_at,
                                 orphan_reason)
    SELECT i.wamid, i.status, i.status_at, i.recipient_id, i.phone_number_id, i.callback_data,
           i.error_code, i.error_title, i.raw, i.user_id, i.pricing_billable, i.pricing_model,
           i.pricing_type, i.pricing_category, i.conversation_id, i.conversation_origin,
           i.error_details, i.failed_action, i.retry_after_s,
           CASE WHEN v.verdict = 'busy' THEN 'pending' ELSE v.verdict END,
           v.contact_id,
           CASE WHEN v.verdict IN ('pending', 'busy') THEN NULL ELSE now() END,
           CASE WHEN v.verdict = 'busy' THEN now() + make_interval(secs => $27) ELSE now() END,
           v.orphan_reason
    FROM input i JOIN verdicts v ON v.id = i.id
    ORDER BY i.id
    RETURNING id, wamid, status, processing_state, recipient_id, callback_data, received_at,
              orphan_reason
),
counted AS (
    SELECT count(*) AS n,
           count(*) FILTER (WHERE processing_state = 'pending') AS pending,
           count(*) FILTER (WHERE processing_state = 'applied') AS applied,
           count(*) FILTER (WHERE processing_state = 'duplicate') AS duplicate,
           coalesce(array_agg(id) FILTER (WHERE processing_state = 'applied'
                                           AND status = 'failed'), '{}') AS failed_ids,
           coalesce(array_agg(id) FILTER (WHERE processing_state = 'duplicate'), '{}')
               AS duplicate_ids
    FROM stored
)
SELECT c.n, c.pending, c.applied, c.duplicate, c.failed_ids,
       CASE WHEN EXISTS (SELECT FROM verdicts WHERE stale_user_id) THEN c.duplicate_ids
            ELSE '{}' END AS stale_user_ids,
       ARRAY(SELECT body FROM fresh) AS fresh,
       (SELECT count(*) FROM updated WHERE changes) AS contacts_changed,
       (SELECT count(*) FROM suppressed) AS suppressed,
       (SELECT coalesce(json_agg(json_build_object(
            'id', s.id, 'wamid', s.wamid, 'status', s.status, 'recipient_id', s.recipient_id,
            'callback_data', s.callback_data, 'received_at', s.received_at,
            'reason', s.orphan_reason)), '[]')
        FROM stored s WHERE s.processing_state = 'orphan') AS orphans,
       CASE WHEN c.pending > 0 THEN pg_notify($10, c.pending::text) END AS notified
FROM counted c;

-- name: prune_webhook_digests
-- Up to $2 digests older than the replay window ($1 seconds), deleted; rows another pruner
-- holds are skipped. Returns how many.
WITH old AS (
    SELECT ctid FROM webhook_digests
    WHERE received_at < now() - make_interval(secs => $1)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
deleted AS (
    DELETE FROM webhook_digests WHERE ctid = ANY(ARRAY(SELECT ctid FROM old)) RETURNING 1
)
SELECT count(*) FROM deleted;

-- name: custom_plans
-- For the rest of the transaction: plan with the real parameters and the table's current
-- size. A generic plan cached while status_receipts was nearly empty (a fresh database, stats
-- not yet analyzed) would keep scanning it sequentially as it grows.
SET LOCAL plan_cache_mode = force_custom_plan;

-- name: due_receipt_ids
-- Up to $1 due pending receipts, for reconcile_receipts. A separate statement so that the
-- planner of the big one sees how many receipts it handles: estimated from the statistics,
-- "pending" was near zero whenever autoanalyze had run with no backlog, every CTE then looked
-- like one row, and the joins between them became nested loops, quadratic in the batch
-- (1,000 receipts: 0.7 s; 4,000: 11 s; 16,000: 185 s, and a backlog only grows the batch).
SELECT id FROM status_receipts
WHERE processing_state = 'pending' AND next_try_at <= now()
-- No ORDER BY: any due receipts will do (the rules do not depend on the order), and a sort
-- would read the whole backlog when the planner underestimates it (stale stats).
LIMIT $1;

-- name: reconcile_receipts
-- One batch of due pending receipts applied to their contacts, in one statement.
-- $1 the ids from due_receipt_ids (still pending and due when locked), $2 error codes that add the phone to the suppression list, $3 their reason,
-- $4 seconds after which an unmatched receipt becomes an orphan, $5 back-off factor of an
-- unmatched receipt's age, $6 and $7 the back-off's floor and ceiling in seconds.
--
-- picked:  those of $1 still due and pending, locked; receipts another reconciler holds are
--          skipped.
-- matched: by wamid (contacts_wamid), else by our callback data ws1:<campaign>:<contact>:
--          <attempt> when that contact belongs to that campaign and made that attempt.
-- locked:  the matched contacts, locked; a contact another transaction holds is skipped and
--          its receipts ("busy") stay pending for a short back-off, so receipts of one contact
--          are never applied by two transactions at once.
-- ranked:  per contact, the batch applied in rank order sent < delivered < read, then failed:
--          the highest of sent/delivered/read wins (monotonic), and failed counts only if
--          the contact is then still sent or unconfirmed (failed after delivered/read is an
--          event only). The state rules are those of daemon/core/states.py (tests compare).
--          sent_at/delivered_at/read_at/failed_at are set once, from the payload timestamps
--          (a read fills a missing delivered_at), clamped so that they never go backwards
--          (dated); an unknown outcome that a receipt proves
--          is resolved (outcome_unknown, next_attempt_at, lease cleared).
-- verdicts: applied (the receipt changed its contact: state or a timestamp), duplicate
--          (matched, changed nothing: duplicates, backward or unknown statuses), pending
--          (no contact yet: retried after a back-off of a quarter of its age), orphan (still
--          unmatched after $4 seconds), busy (contact locked elsewhere: pending, retried soon).
WITH picked AS (
    -- Still pending and due is checked after the lock, in decoded: in this WHERE clause the
    -- planner would estimate it from the statistics again (see due_receipt_ids).
    SELECT id, wamid, status, coalesce(status_at, received_at) AS at, received_at,
           recipient_id, callback_data, error_code, error_title, phone_number_id, user_id,
           processing_state = 'pending' AND next_try_at <= now() AS due
    FROM status_receipts
    WHERE id = ANY($1::bigint[])
    FOR UPDATE SKIP LOCKED
),
decoded AS (
    SELECT p.*,
           CASE WHEN p.callback_data ~ '^ws1:[0-9]{1,18}:[0-9]{1,18}:[0-9]{1,9}$'
                THEN string_to_array(p.callback_data, ':') END AS cb
    FROM picked p
    WHERE p.due
),
-- include: receipt_rules codes=$2 reason=$3 contact_probe=reconcile_contact_probe orphan_after=$4
marked AS (
    UPDATE status_receipts s
    SET processing_state = CASE WHEN v.verdict = 'busy' THEN 'pending' ELSE v.verdict END,
        contact_id = v.contact_id,
        processed_at = CASE WHEN v.verdict IN ('pending', 'busy') THEN NULL ELSE now() END,
        orphan_reason = coalesce(v.orphan_reason, s.orphan_reason),
        next_try_at = CASE
            WHEN v.verdict = 'pending'
                THEN now() + least(greatest((now() - s.received_at) * $5::float8,
                                            make_interval(secs => $6)),
                                   make_interval(secs => $7))
            WHEN v.verdict = 'busy' THEN now() + make_interval(secs => $6)
            ELSE s.next_try_at END
    FROM verdicts v
    WHERE s.id = v.id AND s.id = ANY(ARRAY(SELECT id FROM verdicts))
    RETURNING s.id
)
SELECT count(*) AS picked,
       count(*) FILTER (WHERE verdict = 'applied') AS applied,
       count(*) FILTER (WHERE verdict = 'duplicate') AS duplicate,
       count(*) FILTER (WHERE verdict = 'pending') AS unmatched,
       count(*) FILTER (WHERE verdict = 'busy') AS busy,
       count(*) FILTER (WHERE verdict = 'orphan') AS orphaned,
       (SELECT count(*) FROM updated WHERE changes) AS contacts_changed,
       count(*) FILTER (WHERE stale_user_id) AS stale_user_ids,
       (SELECT count(*) FROM suppressed) AS suppressed,
       (SELECT count(*) FROM marked) AS marked,
       coalesce(json_agg(json_build_object(
           'id', id, 'wamid', wamid, 'status', status, 'recipient_id', recipient_id,
           'callback_data', callback_data, 'received_at', received_at,
           'reason', orphan_reason))
           FILTER (WHERE verdict = 'orphan'), '[]') AS orphans
FROM verdicts;

-- name: retry_failed_contacts
-- After reconcile_receipts, in its transaction: the failed statuses of batch $1 it applied
-- whose failed_action asks for another attempt (core/failed_status.py: retry, retry_later,
-- template_held) send their contact back, retry_scheduled, due after the status's
-- retry_after_s (132015: until the template is approved again, see
-- resume_template_campaigns), while its counted attempts are below $2 (sender.max_attempts)
-- and its campaign runs or is paused; else it stays delivery_failed. The attempt's wamid moves
-- to prior_wamid, so that the new attempt gets its own and a duplicate of the old attempt's
-- statuses changes nothing. Every failed status applied also leaves error_data.details.
WITH failed AS (
    SELECT DISTINCT ON (r.contact_id) r.contact_id, r.wamid, r.failed_action, r.retry_after_s,
           r.error_details
    FROM status_receipts r
    WHERE r.id = ANY($1::bigint[]) AND r.processing_state = 'applied' AND r.status = 'failed'
    ORDER BY r.contact_id, r.id
),
retried AS (
    UPDATE contacts c
    SET state = 'retry_scheduled', prior_wamid = c.wamid, wamid = NULL,
        next_attempt_at = now() + make_interval(secs => coalesce(f.retry_after_s, 0)),
        failed_at = NULL, error_details = f.error_details, updated_at = now()
    FROM failed f, campaigns k
    WHERE c.id = f.contact_id AND k.id = c.campaign_id
      AND f.failed_action IN ('retry', 'retry_later', 'template_held')
      AND c.state = 'delivery_failed' AND c.wamid = f.wamid
      AND c.attempts - c.unknown_attempts < $2
      AND k.state IN ('running', 'paused')
    RETURNING c.id
),
detailed AS (
    UPDATE contacts c
    SET error_details = f.error_details
    FROM failed f
    WHERE c.id = f.contact_id AND c.state = 'delivery_failed' AND f.error_details IS NOT NULL
      AND c.error_details IS DISTINCT FROM f.error_details
      AND c.id <> ALL(ARRAY(SELECT id FROM retried))
    RETURNING c.id
)
SELECT (SELECT count(*) FROM retried) AS retried, (SELECT count(*) FROM detailed) AS detailed;

-- name: wake_receipts_for_wamids
-- Sends just recorded: their receipts that wait on a back-off are due again now.
UPDATE status_receipts
SET next_try_at = now()
WHERE processing_state = 'pending' AND next_try_at > now() AND wamid = ANY($1::text[]);

-- name: any_pending_receipt
SELECT EXISTS (SELECT 1 FROM status_receipts WHERE processing_state = 'pending');

-- name: ping
SELECT 1;

-- name: receipt_counts
SELECT processing_state, count(*) AS n FROM status_receipts GROUP BY processing_state;

-- name: pending_receipts
-- How many receipts wait to be applied (the demo and the load test wait for none).
SELECT count(*) FROM status_receipts WHERE processing_state = 'pending';

-- fragment: receipt_rules
-- The rules of applying statuses to contacts, shared by reconcile_receipts and ingest_receipts
-- (from probed to verdicts; the statement before it defines `decoded`, the one after it
-- uses `verdicts`). Slots: codes, the error codes that add the phone to the suppression list;
-- reason, their reason; contact_probe, the last condition of the contacts' UPDATE;
-- orphan_after, seconds after which an unmatched receipt becomes an orphan.
probed AS (
    SELECT d.id, d.wamid, d.status, d.at, d.received_at, d.recipient_id, d.callback_data,
           d.error_code, d.error_title, d.phone_number_id, d.user_id,
           coalesce(w.id, k.id, pw.id) AS contact_id,
           w.id IS NULL AND k.id IS NOT NULL AS by_callback,
           -- a status of an attempt a failed status sent back to be retried (migration
           -- 0011): matched, but it changes nothing (the contact is on its next attempt)
           pw.id IS NOT NULL AS stale,
           n.id AS campaign_id, n.phone_number_id AS campaign_number
    FROM decoded d
    -- LATERAL ... LIMIT 1: one index probe per receipt, whatever the table sizes.
    LEFT JOIN LATERAL (
        SELECT c.id, c.campaign_id FROM contacts c
        WHERE c.wamid = d.wamid AND c.wamid IS NOT NULL LIMIT 1
    ) w ON true
    LEFT JOIN LATERAL (
        SELECT c.id, c.campaign_id FROM contacts c
        WHERE w.id IS NULL AND d.cb IS NOT NULL
          AND c.id = d.cb[3]::bigint
          AND c.campaign_id = d.cb[2]::bigint
          AND d.cb[4]::int BETWEEN 1 AND c.attempts
          AND c.prior_wamid IS DISTINCT FROM d.wamid
        LIMIT 1
    ) k ON true
    LEFT JOIN LATERAL (
        SELECT c.id, c.campaign_id FROM contacts c
        WHERE w.id IS NULL AND k.id IS NULL AND c.prior_wamid = d.wamid
        LIMIT 1
    ) pw ON true
    LEFT JOIN campaigns n ON n.id = coalesce(w.campaign_id, k.campaign_id, pw.campaign_id)
),
matched AS (
    -- A status of another business number than its campaign's (migration 0012) is an orphan
    -- with the reason, never applied: as if it matched no contact.
    SELECT p.id, p.wamid, p.status, p.at, p.received_at, p.recipient_id, p.callback_data,
           p.error_code, p.error_title, p.user_id,
           CASE WHEN NOT f.foreign THEN p.contact_id END AS contact_id,
           p.by_callback AND NOT f.foreign AS by_callback,
           p.stale AND NOT f.foreign AS stale,
           CASE WHEN f.foreign
                THEN format('number_mismatch: phone_number_id %s is not the number of campaign %s (%s)',
                            p.phone_number_id, p.campaign_id, p.campaign_number)
           END AS orphan_reason
    FROM probed p
    CROSS JOIN LATERAL (
        SELECT coalesce(p.phone_number_id <> p.campaign_number, false) AS foreign
    ) f
),
locked AS (
    SELECT c.id, c.phone, c.state, c.wamid, c.sent_at, c.delivered_at, c.read_at, c.user_id
    FROM contacts c
    WHERE c.id = ANY(ARRAY(SELECT contact_id FROM matched WHERE contact_id IS NOT NULL))
    FOR UPDATE SKIP LOCKED
),
per_contact AS (
    SELECT m.contact_id,
           max(CASE m.status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3
                             ELSE 0 END) AS top_rank,
           bool_or(m.status = 'failed') AS has_failed,
           bool_or(m.status = 'failed' AND m.error_code = ANY(<<codes>>::int[])) AS suppress,
           min(m.at) FILTER (WHERE m.status = 'sent') AS sent_ts,
           min(m.at) FILTER (WHERE m.status = 'delivered') AS delivered_ts,
           min(m.at) FILTER (WHERE m.status = 'read') AS read_ts,
           min(m.at) FILTER (WHERE m.status = 'failed') AS failed_ts,
           (array_agg(m.error_code ORDER BY m.id) FILTER (WHERE m.status = 'failed'))[1]
               AS failed_code,
           (array_agg(m.error_title ORDER BY m.id) FILTER (WHERE m.status = 'failed'))[1]
               AS failed_title,
           (array_agg(m.wamid ORDER BY m.id)
               FILTER (WHERE m.by_callback
                       AND m.status IN ('sent', 'delivered', 'read', 'failed')))[1]
               AS callback_wamid,
           -- the business-scoped user id (migration 0012): the latest status's
           (array_agg(m.user_id ORDER BY m.id DESC) FILTER (WHERE m.user_id IS NOT NULL))[1]
               AS user_id
    FROM matched m
    WHERE m.contact_id IS NOT NULL AND NOT m.stale
    GROUP BY m.contact_id
),
ranked AS (
    SELECT pc.*, l.phone, l.state AS old_state, l.wamid AS old_wamid,
           l.sent_at AS old_sent_at, l.delivered_at AS old_delivered_at, l.read_at AS old_read_at,
           l.user_id AS old_user_id,
           l.state IN ('in_progress', 'retry_scheduled', 'error', 'canceled_by_admin', 'sent',
                       'successfully_submitted', 'delivered', 'read', 'delivery_failed')
               AS receptive,
           CASE
               WHEN pc.top_rank = 3
                    AND l.state IN ('in_progress', 'retry_scheduled', 'error', 'canceled_by_admin',
                                    'sent', 'successfully_submitted', 'delivered',
                                    'delivery_failed')
                   THEN 'read'::contact_state
               WHEN pc.top_rank = 2
                    AND l.state IN ('in_progress', 'retry_scheduled', 'error', 'canceled_by_admin',
                                    'sent', 'successfully_submitted', 'delivery_failed')
                   THEN 'delivered'::contact_state
               WHEN pc.top_rank = 1
                    AND l.state IN ('in_progress', 'retry_scheduled', 'error', 'canceled_by_admin',
                                    'successfully_submitted')
                   THEN 'sent'::contact_state
               ELSE l.state
           END AS mid_state
    FROM per_contact pc JOIN locked l ON l.id = pc.contact_id
),
planned AS (
    SELECT r.*,
           r.has_failed AND r.mid_state IN ('in_progress', 'retry_scheduled', 'error',
                                             'canceled_by_admin', 'sent', 'successfully_submitted')
               AS fails
    FROM ranked r
),
outcome AS (
    SELECT p.*,
           CASE WHEN p.fails THEN 'delivery_failed'::contact_state ELSE p.mid_state END
               AS new_state
    FROM planned p
),
settled AS (
    SELECT o.*,
           o.old_state IN ('in_progress', 'retry_scheduled', 'error', 'canceled_by_admin')
               AND o.new_state <> o.old_state AS resolved,
           o.receptive AND (
               o.new_state <> o.old_state
               OR (o.old_sent_at IS NULL AND o.sent_ts IS NOT NULL)
               OR (o.old_delivered_at IS NULL AND coalesce(o.delivered_ts, o.read_ts) IS NOT NULL)
               OR (o.old_read_at IS NULL AND o.read_ts IS NOT NULL)
               OR (o.old_wamid IS NULL AND o.callback_wamid IS NOT NULL)
           ) AS changes,
           o.user_id IS DISTINCT FROM o.old_user_id AND o.user_id IS NOT NULL AS new_user
    FROM outcome o
),
dated AS (
    -- Timestamps never go backwards: sent_at <= delivered_at <= read_at, failed_at >= sent_at.
    -- Meta's are whole seconds from its clock, ours (sent_at of an accepted send) have
    -- microseconds from ours: a receipt dated before the message was sent is clamped to the
    -- time before it (its state still applies), a late sent receipt to the delivery it
    -- preceded.
    SELECT s.*, t.new_sent_at,
           coalesce(s.old_delivered_at,
                    CASE WHEN coalesce(s.delivered_ts, s.read_ts) IS NOT NULL
                         THEN greatest(coalesce(s.delivered_ts, s.read_ts), t.new_sent_at) END)
               AS new_delivered_at
    FROM settled s
    CROSS JOIN LATERAL (
        SELECT coalesce(s.old_sent_at,
                        CASE WHEN s.sent_ts IS NOT NULL
                             THEN least(s.sent_ts, s.old_delivered_at, s.old_read_at) END)
                   AS new_sent_at
    ) t
),
updated AS (
    -- A contact whose only change is its user id (a duplicate status carrying it) keeps all
    -- else as it is: hence the CASE WHEN f.changes.
    UPDATE contacts c
    SET state = f.new_state,
        sent_at = CASE WHEN f.changes THEN f.new_sent_at ELSE c.sent_at END,
        delivered_at = CASE WHEN f.changes THEN f.new_delivered_at ELSE c.delivered_at END,
        read_at = CASE WHEN NOT f.changes THEN c.read_at
                       ELSE coalesce(c.read_at, CASE WHEN f.read_ts IS NOT NULL
                                                     THEN greatest(f.read_ts, f.new_delivered_at)
                                                END) END,
        failed_at = CASE WHEN f.fails THEN coalesce(c.failed_at, greatest(f.failed_ts, f.new_sent_at))
                         ELSE c.failed_at END,
        error_code = CASE WHEN f.fails THEN f.failed_code
                          WHEN f.resolved THEN NULL ELSE c.error_code END,
        error_title = CASE WHEN f.fails THEN f.failed_title
                           WHEN f.resolved THEN NULL ELSE c.error_title END,
        wamid = CASE WHEN f.changes AND c.wamid IS NULL AND f.callback_wamid IS NOT NULL
                          AND NOT EXISTS (SELECT 1 FROM contacts x WHERE x.wamid = f.callback_wamid)
                     THEN f.callback_wamid ELSE c.wamid END,
        outcome_unknown = CASE WHEN f.resolved THEN false ELSE c.outcome_unknown END,
        next_attempt_at = CASE WHEN f.resolved THEN NULL ELSE c.next_attempt_at END,
        claimed_by = CASE WHEN f.resolved THEN NULL ELSE c.claimed_by END,
        lease_until = CASE WHEN f.resolved THEN NULL ELSE c.lease_until END,
        user_id = CASE WHEN f.new_user THEN f.user_id ELSE c.user_id END,
        updated_at = CASE WHEN f.changes THEN now() ELSE c.updated_at END
    FROM dated f
    WHERE c.id = f.contact_id AND (f.changes OR f.new_user)
<<contact_probe>>
    RETURNING c.id, f.changes
),
suppressed AS (
    INSERT INTO suppressions (phone, reason)
    SELECT DISTINCT f.phone, <<reason>>::text FROM settled f WHERE f.suppress
    ON CONFLICT (phone) DO NOTHING
    RETURNING phone
),
verdicts AS (
    SELECT m.id, m.wamid, m.status, m.recipient_id, m.callback_data, m.received_at,
           m.orphan_reason, m.stale AND m.user_id IS NOT NULL AS stale_user_id,
           CASE
               WHEN m.orphan_reason IS NOT NULL THEN 'orphan'
               WHEN m.contact_id IS NULL THEN
                   CASE WHEN m.received_at < now() - make_interval(secs => <<orphan_after>>)
                        THEN 'orphan' ELSE 'pending' END
               WHEN m.stale THEN 'duplicate'
               WHEN f.contact_id IS NULL THEN 'busy'
               WHEN f.receptive
                    AND m.id = min(m.id) OVER (PARTITION BY m.contact_id, m.status)
                    AND ((m.status = 'sent'
                          AND (f.old_sent_at IS NULL
                               OR (f.top_rank = 1 AND f.mid_state <> f.old_state)))
                      OR (m.status = 'delivered'
                          AND (f.old_delivered_at IS NULL
                               OR (f.top_rank = 2 AND f.mid_state <> f.old_state)))
                      OR (m.status = 'read'
                          AND (f.old_read_at IS NULL
                               OR (f.top_rank = 3 AND f.mid_state <> f.old_state)))
                      OR (m.status = 'failed' AND f.fails))
                   THEN 'applied'
               ELSE 'duplicate'
           END AS verdict,
           CASE WHEN f.contact_id IS NOT NULL OR m.stale THEN m.contact_id END AS contact_id
    FROM matched m LEFT JOIN settled f ON f.contact_id = m.contact_id AND NOT m.stale
),

-- fragment: reconcile_contact_probe
      AND c.id = ANY(ARRAY(SELECT contact_id FROM settled WHERE changes OR new_user))

-- fragment: ingest_contact_probe
    -- (not reconcile_receipts' id = ANY(...): with the CTEs' low estimates that became a
    -- nested loop over the ids, quadratic; this is one index probe per contact)
