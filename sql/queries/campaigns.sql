-- Campaign lifecycle and contact administration.

-- name: create_campaign
-- $6.. the template binding (migration 0005): source, WABA, category, spec (NULL: none).
INSERT INTO campaigns (name, template_name, template_language, template_params, phone_number_id,
                       template_source, template_waba_id, template_category, template_spec)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id;

-- name: set_campaign_default_country
UPDATE campaigns SET default_country = $2, updated_at = now() WHERE id = $1;

-- name: get_campaign
SELECT * FROM campaigns WHERE id = $1;

-- name: lock_campaign
SELECT * FROM campaigns WHERE id = $1 FOR UPDATE;

-- name: list_campaigns
SELECT * FROM campaigns ORDER BY id;

-- name: campaign_state_counts
SELECT state::text AS state, count(*) AS n
FROM contacts
WHERE campaign_id = $1
GROUP BY state;

-- name: start_campaign
UPDATE campaigns
SET state = 'running', started_at = coalesce(started_at, now()), pause_reason = NULL,
    updated_at = now()
WHERE id = $1
RETURNING *;

-- name: schedule_campaign
-- `campaign start ID --at TIME` (migration 0013): a daemon starts it at $2 (engine.schedule).
UPDATE campaigns
SET state = 'scheduled', start_at = $2, updated_at = now()
WHERE id = $1
RETURNING *;

-- name: start_due_campaigns
-- The scheduled campaigns whose start time ($1, the daemon's clock) has come: running, and
-- the daemons told (same NOTIFY as `campaign start`). Several daemons may race: the row lock
-- lets one start each.
WITH due AS (
    UPDATE campaigns
    SET state = 'running', started_at = coalesce(started_at, now()), updated_at = now()
    WHERE state = 'scheduled' AND start_at <= $1
    RETURNING id
)
SELECT id, pg_notify('wa_sender_campaigns', id::text || ':start') FROM due;

-- name: next_scheduled_start
SELECT min(start_at) FROM campaigns WHERE state = 'scheduled';

-- name: pause_campaign
-- A stop: the next stop number, which every daemon confirms (daemons.acked_stop_seq).
-- An operator's pause: never undone by Meta's template events (paused_by, migration 0011).
UPDATE campaigns
SET state = 'paused', paused_at = now(), pause_reason = $2, paused_by = 'operator',
    updated_at = now(),
    stop_seq = nextval('campaign_stop_seq')
WHERE id = $1
RETURNING *;

-- name: resume_campaign
-- A campaign paused before its start time came goes back to waiting for it.
UPDATE campaigns
SET state = CASE WHEN started_at IS NULL AND start_at > now() THEN 'scheduled'::campaign_state
                 ELSE 'running' END, pause_reason = NULL, paused_by = NULL, hold_reason = NULL,
    hold_until = NULL,
    updated_at = now()
WHERE id = $1
RETURNING *;

-- name: cancel_campaign
-- A stop, like pause; the contacts are moved afterwards, in batches (cancel_pending_batch).
UPDATE campaigns
SET state = 'canceled', canceled_at = now(), hold_reason = NULL, hold_until = NULL,
    updated_at = now(), stop_seq = nextval('campaign_stop_seq')
WHERE id = $1
RETURNING *;

-- name: cancel_pending_batch
-- Up to $3 contacts of canceled campaign $1 not sent yet (ids above $2, walking
-- contacts_claimable) become canceled_by_admin; how many, and the highest id done.
WITH done AS (
    UPDATE contacts
    SET state = 'canceled_by_admin', canceled_at = now(), next_attempt_at = NULL,
        updated_at = now()
    WHERE id = ANY(ARRAY(
        SELECT id FROM contacts
        WHERE campaign_id = $1 AND state IN ('initial', 'retry_scheduled') AND id > $2
        ORDER BY campaign_id, id
        LIMIT $3
        FOR UPDATE
    ))
    RETURNING id
)
SELECT count(*) AS n, max(id) AS last_id FROM done;

-- name: cancel_unheld_in_progress
-- Contacts of canceled campaign $1 still in progress, claimed by a daemon that can no longer
-- send (gone, or silent for longer than its send bound): canceled_by_admin, their outcome
-- unknown (a receipt may still prove the message left, and moves them on).
UPDATE contacts AS c
SET state = 'canceled_by_admin', canceled_at = now(), outcome_unknown = true,
    unknown_attempts = c.unknown_attempts + 1, claimed_by = NULL, lease_until = NULL,
    next_attempt_at = NULL, updated_at = now()
WHERE c.campaign_id = $1 AND c.state = 'in_progress'
  AND NOT EXISTS (
      SELECT 1 FROM daemons d
      WHERE d.id = c.claimed_by AND d.heartbeat_at > now() - make_interval(secs => d.send_bound_s)
  );

-- name: pending_contact_count
SELECT count(*) FROM contacts
WHERE campaign_id = $1 AND state IN ('initial', 'retry_scheduled', 'in_progress');

-- name: notify_campaigns_changed
SELECT pg_notify('wa_sender_campaigns', $1::text);

-- name: remove_contacts
UPDATE contacts
SET state = 'removed', removed_at = now(), next_attempt_at = NULL, updated_at = now()
WHERE campaign_id = $1
  AND phone = ANY($2::text[])
  AND state IN ('initial', 'retry_scheduled')
RETURNING phone;

-- name: contacts_by_phone
SELECT phone, state::text AS state FROM contacts
WHERE campaign_id = $1 AND phone = ANY($2::text[]);

-- name: live_phones_of_campaign
SELECT phone FROM contacts
WHERE campaign_id = $1 AND state NOT IN ('invalid_record', 'removed') AND phone = ANY($2::text[]);

-- name: live_phones_of_campaign_all
SELECT phone FROM contacts
WHERE campaign_id = $1 AND state NOT IN ('invalid_record', 'removed');

-- name: all_suppressed_phones
-- Marketing-only entries (user_preferences stop, migration 0011) are left out here: they do not
-- stop a utility campaign's import; their marketing contacts are stopped when the stop arrives.
SELECT phone FROM suppressions WHERE scope = 'all';

-- name: suppressed_among
SELECT phone FROM suppressions WHERE phone = ANY($1::text[]);

-- name: add_suppression
INSERT INTO suppressions (phone, reason, source) VALUES ($1, $2, 'operator')
ON CONFLICT (phone) DO NOTHING
RETURNING phone;

-- name: add_suppressions
INSERT INTO suppressions (phone, reason)
SELECT DISTINCT ON (p.phone) p.phone, p.reason FROM unnest($1::text[], $2::text[]) AS p(phone, reason)
ON CONFLICT (phone) DO NOTHING;

-- name: remove_suppression
DELETE FROM suppressions WHERE phone = $1 RETURNING phone;

-- name: list_suppressions
SELECT phone, reason, source, scope, created_at FROM suppressions ORDER BY created_at, phone;
