-- The sender's hot path: claim, record, release, recover; daemon heartbeats; limit guard.

-- name: running_campaigns
-- The running campaigns, each row with the highest stop number as of the same snapshot: a
-- campaign stopped after this read (a higher number) is not taken for running by it.
SELECT k.*, s.stop_seq_now
FROM campaigns k, (SELECT coalesce(max(stop_seq), 0) AS stop_seq_now FROM campaigns) s
WHERE k.state = 'running'
ORDER BY k.id;

-- name: claim_contacts
-- $1 campaign, $2 daemon id, $3 lease seconds, $4 how many, ($7, $5) the cursor: the
-- (not_before, id) of the last contact claimed from this campaign so far ('-infinity', 0 to
-- start over); $6 now, for the send windows. One statement; the inner select walks
-- contacts_claimable_window from the cursor on and skips rows other daemons hold. The cursor
-- keeps every claim as cheap as the first: without it, stale statistics after a bulk import
-- make the planner walk the primary key over every contact already sent.
-- Send windows (migration 0013): a contact is taken only while not_before <= now < open_until
-- (both precomputed per time zone, engine.windows); a campaign without a window has them all
-- at -infinity .. infinity and is walked in import order.
-- counted_attempts: this attempt's number within sender.max_attempts, the budget for what the
-- API answers; attempts whose outcome stayed unknown (unknown_attempts) do not use it up.
UPDATE contacts
SET state = 'in_progress',
    attempts = attempts + 1,
    claimed_by = $2,
    claimed_at = now(),
    lease_until = now() + make_interval(secs => $3),
    updated_at = now()
WHERE id = ANY(ARRAY(
-- include: claimable_contacts columns=id campaign=$1 limit=$4 after_at=$7 after_id=$5 now=$6
))
RETURNING id, campaign_id, phone, params, attempts, attempts - unknown_attempts AS counted_attempts,
          not_before;

-- name: record_results
-- One flush of send results, $1 a JSON array of {id, attempt, state, wamid, ...} objects. A result counts only for the attempt it belongs to; an accepted
-- send also lands when a receipt or lease recovery moved the contact on meanwhile (its wamid,
-- wa_id and message_status are kept; a receipt's later state is not moved back).
-- Each result that lands is logged in contact_attempts by the same statement (migration
-- 0010): the status stays "INSERT 0 n", n the contacts updated.
WITH recorded AS (
UPDATE contacts AS c
SET state = CASE
        WHEN c.state = 'in_progress' THEN r.state::contact_state
        WHEN r.state = 'sent' AND c.state IN ('retry_scheduled', 'error') THEN 'sent'
        ELSE c.state
    END,
    wamid = coalesce(c.wamid, r.wamid),
    wa_id = coalesce(r.wa_id, c.wa_id),
    message_status = coalesce(r.message_status, c.message_status),
    error_code = CASE WHEN c.state = 'in_progress' THEN r.error_code ELSE c.error_code END,
    error_title = CASE WHEN c.state = 'in_progress' THEN r.error_title ELSE c.error_title END,
    next_attempt_at = CASE WHEN c.state = 'in_progress' THEN r.next_attempt_at ELSE c.next_attempt_at END,
    -- Never after a delivery or read a receipt recorded first (timestamps do not go back).
    sent_at = CASE WHEN r.state = 'sent'
                   THEN coalesce(c.sent_at, least(r.at, c.delivered_at, c.read_at,
                                                  CASE WHEN c.state = 'delivery_failed'
                                                       THEN c.failed_at END))
                   ELSE c.sent_at END,
    failed_at = CASE WHEN c.state = 'in_progress' AND r.state IN ('sending_failed', 'error')
                     THEN r.at ELSE c.failed_at END,
    outcome_unknown = CASE WHEN r.state = 'sent' THEN false
                           WHEN c.state = 'in_progress' AND r.unknown THEN true
                           ELSE c.outcome_unknown END,
    -- An answer that left the outcome unknown (decided in core.decide.decide_unknown): one
    -- more unknown attempt, not counted against sender.max_attempts.
    unknown_attempts = c.unknown_attempts
        + CASE WHEN c.state = 'in_progress' AND r.unknown THEN 1 ELSE 0 END,
    claimed_by = NULL,
    lease_until = NULL,
    updated_at = now()
FROM json_to_recordset($1::text::json)
     AS r(id bigint, attempt int, state text, wamid text, wa_id text, message_status text,
          error_code int, error_title text, next_attempt_at timestamptz, at timestamptz,
          unknown boolean)
WHERE c.id = r.id
  AND c.attempts = r.attempt
  AND (c.state = 'in_progress' OR r.state = 'sent')
RETURNING c.id, r.attempt, r.at, r.state, r.error_code, r.error_title, r.wamid, r.unknown
)
INSERT INTO contact_attempts (contact_id, attempt, at, outcome, error_code, error_title, wamid,
                              unknown)
SELECT id, attempt, at, state, error_code, error_title, wamid, coalesce(unknown, false)
FROM recorded;

-- name: release_contacts
-- Claimed but never sent (shutdown, campaign paused, phone opted out): back to where they
-- were, attempt undone (it was neither counted nor unknown: unknown_attempts is left alone);
-- in a campaign canceled meanwhile they become canceled_by_admin like its other unsent ones.
-- A phone on the suppression list meanwhile (an opt-out stored while the contact was claimed,
-- engine.optout_watch; scope marketing only for a MARKETING or uncategorised campaign) makes
-- it sending_failed 'opted out: ...', like the opt-out statement does to unclaimed contacts.
WITH released AS (
    SELECT c.id, k.state = 'canceled' AS canceled,
           (SELECT CASE WHEN s.scope = 'marketing'
                        THEN 'opted out: stopped marketing messages (user_preferences)'
                        ELSE 'opted out: ' || s.reason END
            FROM suppressions s
            WHERE s.phone = c.phone
              AND (s.scope = 'all'
                   OR coalesce(upper(k.template_category), 'MARKETING') = 'MARKETING')) AS opted
    FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
    WHERE c.id = ANY($1::bigint[]) AND c.state = 'in_progress' AND c.claimed_by = $2
)
UPDATE contacts AS c
SET state = CASE
        WHEN r.canceled THEN 'canceled_by_admin'::contact_state
        WHEN r.opted IS NOT NULL THEN 'sending_failed'
        WHEN c.attempts > 1 THEN 'retry_scheduled'
        ELSE 'initial'
    END,
    canceled_at = CASE WHEN r.canceled THEN now() ELSE c.canceled_at END,
    error_code = CASE WHEN r.opted IS NOT NULL AND NOT r.canceled THEN NULL ELSE c.error_code END,
    error_title = CASE WHEN r.opted IS NOT NULL AND NOT r.canceled THEN r.opted
                       ELSE c.error_title END,
    failed_at = CASE WHEN r.opted IS NOT NULL AND NOT r.canceled THEN now() ELSE c.failed_at END,
    next_attempt_at = CASE WHEN r.opted IS NOT NULL AND NOT r.canceled THEN NULL
                           ELSE c.next_attempt_at END,
    attempts = c.attempts - 1,
    claimed_by = NULL,
    lease_until = NULL,
    updated_at = now()
FROM released AS r
WHERE c.id = r.id AND c.state = 'in_progress' AND c.claimed_by = $2;

-- name: expire_leases
-- Contacts whose attempt has an unknown outcome: lease expired, or claimed by a daemon that
-- stopped heartbeating. $1 policy (reconcile | error | retry), $2 grace seconds,
-- $3 max attempts, $4 seconds after which a silent daemon counts as dead, $5 batch size,
-- $6 this daemon: its own claims are never taken back from under it (it still holds them in
-- memory, possibly with a result waiting for the database); its next incarnation, or another
-- daemon, recovers them once it is gone. $7 max unknown outcomes per contact.
-- reconcile: wait the grace period for a receipt carrying the attempt's callback data.
-- error or retry_scheduled by unknown_outcome_state (migration 0004: the expired attempt does
-- not count against $3; error when the counted attempts are used up, at the $7-th unknown
-- outcome, or under the error policy).
WITH expired AS (
UPDATE contacts AS c
SET state = unknown_outcome_state($1, c.attempts, c.unknown_attempts, $3, $7),
    unknown_attempts = c.unknown_attempts + 1,
    next_attempt_at = CASE WHEN $1 = 'reconcile' THEN now() + make_interval(secs => $2) ELSE now() END,
    outcome_unknown = true,
    error_title = 'outcome unknown: lease expired before the send result was recorded',
    failed_at = CASE
        WHEN unknown_outcome_state($1, c.attempts, c.unknown_attempts, $3, $7) = 'error'
            THEN now()
        ELSE c.failed_at
    END,
    claimed_by = NULL,
    lease_until = NULL,
    updated_at = now()
WHERE c.id = ANY(ARRAY(
    SELECT id FROM contacts
    WHERE state = 'in_progress'
      AND claimed_by <> $6
      AND (lease_until < now()
           OR claimed_by NOT IN (SELECT id FROM daemons
                                 WHERE heartbeat_at > now() - make_interval(secs => $4)))
    LIMIT $5
    FOR UPDATE SKIP LOCKED
))
RETURNING c.id, c.attempts, c.state, c.error_title
), logged AS (
    -- The attempt's row in contact_attempts (migration 0010): outcome unknown.
    INSERT INTO contact_attempts (contact_id, attempt, at, outcome, error_title, unknown)
    SELECT id, attempts, now(), state::text, error_title, true FROM expired
)
SELECT id, state::text AS state FROM expired;

-- name: expire_own_contacts
-- At shutdown: in-flight sends that were cut off have an unknown outcome, like an expired lease
-- (same rules as expire_leases). $1 ids, $2 policy, $3 grace seconds, $4 max attempts,
-- $5 this daemon, $6 max unknown outcomes per contact.
WITH expired AS (
UPDATE contacts AS c
SET state = unknown_outcome_state($2, c.attempts, c.unknown_attempts, $4, $6),
    unknown_attempts = c.unknown_attempts + 1,
    next_attempt_at = CASE WHEN $2 = 'reconcile' THEN now() + make_interval(secs => $3) ELSE now() END,
    outcome_unknown = true,
    error_title = 'outcome unknown: send interrupted by shutdown',
    failed_at = CASE
        WHEN unknown_outcome_state($2, c.attempts, c.unknown_attempts, $4, $6) = 'error'
            THEN now()
        ELSE c.failed_at
    END,
    claimed_by = NULL,
    lease_until = NULL,
    updated_at = now()
WHERE c.id = ANY($1::bigint[]) AND c.state = 'in_progress' AND c.claimed_by = $5
RETURNING c.id, c.attempts, c.state, c.error_title
)
-- The attempt's row in contact_attempts (migration 0010): outcome unknown.
INSERT INTO contact_attempts (contact_id, attempt, at, outcome, error_title, unknown)
SELECT id, attempts, now(), state::text, error_title, true FROM expired;

-- name: renew_claims
-- After this daemon lost the database for a while: keep only the claims that are still its
-- own, with a fresh lease (others may have recovered the rest meanwhile).
UPDATE contacts
SET lease_until = now() + make_interval(secs => $3)
WHERE id = ANY($1::bigint[]) AND state = 'in_progress' AND claimed_by = $2
RETURNING id;

-- name: finish_campaign_if_done
UPDATE campaigns
SET state = 'finished', finished_at = now(), hold_reason = NULL, hold_until = NULL,
    updated_at = now()
WHERE id = $1 AND state = 'running'
  AND NOT EXISTS (
      SELECT 1 FROM contacts
      WHERE campaign_id = $1 AND state IN ('initial', 'retry_scheduled', 'in_progress')
  )
RETURNING id;

-- name: next_retry_due
SELECT min(c.next_attempt_at)
FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
WHERE c.state = 'retry_scheduled' AND k.state = 'running';

-- name: pause_campaign_fatal
-- A stop like an operator's pause (the next stop number): every daemon drops the campaign.
-- $3 who: 'meta' (its template is not APPROVED: resumed when Meta approves it) or 'daemon'.
UPDATE campaigns
SET state = 'paused', paused_at = now(), pause_reason = $2, paused_by = $3, updated_at = now(),
    stop_seq = nextval('campaign_stop_seq')
WHERE id = $1 AND state = 'running'
RETURNING id;

-- name: set_campaign_hold
UPDATE campaigns
SET hold_reason = $2, hold_until = $3, updated_at = now()
WHERE id = ANY($1::bigint[]) AND state = 'running'
  AND hold_reason IS DISTINCT FROM $2;

-- name: clear_campaign_hold
UPDATE campaigns
SET hold_reason = NULL, hold_until = NULL, updated_at = now()
WHERE id = $1 AND hold_reason IS NOT NULL;

-- name: register_daemon
-- A daemon starting holds nothing: it confirms every stop made so far. $4 its send bound in
-- seconds, $5 its version. Returns the stop number it starts from.
INSERT INTO daemons (id, hostname, pid, send_bound_s, version, acked_stop_seq)
VALUES ($1, $2, $3, $4, $5, (SELECT coalesce(max(stop_seq), 0) FROM campaigns))
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
RETURNING acked_stop_seq;

-- name: heartbeat
-- $4 the stops it has confirmed (its row may have been removed meanwhile: made again),
-- $5 its numbers and rates (jsonb), $6 messages accepted since it started, $7 its send bound.
INSERT INTO daemons (id, hostname, pid, acked_stop_seq, numbers, sent, send_bound_s)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (id) DO UPDATE
SET heartbeat_at = now(),
    acked_stop_seq = greatest(daemons.acked_stop_seq, EXCLUDED.acked_stop_seq),
    numbers = EXCLUDED.numbers,
    sent = EXCLUDED.sent;

-- name: live_daemon_count
SELECT count(*) FROM daemons WHERE heartbeat_at > now() - make_interval(secs => $1);

-- name: forget_daemon
DELETE FROM daemons WHERE id = $1;

-- name: forget_dead_daemons
DELETE FROM daemons WHERE heartbeat_at < now() - interval '1 day';

-- name: limit_lock
SELECT pg_advisory_xact_lock(7303517002);

-- name: limit_window_used
SELECT count(*) AS used, min(last_sent_at) AS oldest
FROM recipient_window WHERE last_sent_at > now() - interval '24 hours';

-- name: limit_window_add
INSERT INTO recipient_window (phone, last_sent_at)
SELECT p, now() FROM unnest($1::text[]) AS p
ON CONFLICT (phone) DO UPDATE SET last_sent_at = now();

-- name: limit_window_prune
DELETE FROM recipient_window WHERE last_sent_at < now() - interval '24 hours';

-- name: next_window_open
-- When the send window of a waiting contact of the running campaigns $1 next opens ($2 now):
-- one index probe per campaign (contacts_claimable_window). 'infinity': not computed yet.
SELECT min(o.not_before)
FROM unnest($1::bigint[]) AS k(id),
LATERAL (
    SELECT not_before FROM contacts
    WHERE campaign_id = k.id AND state IN ('initial', 'retry_scheduled')
      AND not_before > $2 AND not_before < 'infinity'
    ORDER BY campaign_id, not_before
    LIMIT 1
) AS o;

-- fragment: claimable_contacts
-- The contacts a claim may take, shared by claim_contacts and caps_candidates: of campaign
-- <campaign>, pending and due, after the cursor (after_at, after_id) in the claim's order,
-- inside their send window at <now>; at most <limit>, row-locked, locked ones skipped (walks
-- contacts_claimable_window, tests/test_claim_plan.py).
SELECT <<columns>> FROM contacts
WHERE campaign_id = <<campaign>>
  AND state IN ('initial', 'retry_scheduled')
  AND (not_before, id) > (<<after_at>>, <<after_id>>)
  AND not_before <= <<now>>
  AND open_until > <<now>>
  AND (next_attempt_at IS NULL OR next_attempt_at <= now())
ORDER BY campaign_id, not_before, id
LIMIT <<limit>>
FOR UPDATE SKIP LOCKED
