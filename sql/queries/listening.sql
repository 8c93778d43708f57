-- What WhatsApp tells a sender besides statuses: inbound messages and opt-outs, marketing
-- preferences, template and number health (daemon/db/listening_store.py).

-- name: store_inbound
-- One POST's inbound messages, stored once (a redelivery changes nothing), in the webhook
-- request: one plain INSERT, no contact touched (apply_inbound does the rest, right after,
-- in batches). $10 opt-out, $12 why (engine.listening.opt_out_reason). How many were new.
WITH stored AS (
    INSERT INTO inbound_messages (wamid, phone, user_id, phone_number_id, type, body, payload,
                                  sent_at, context_wamid, opt_out, raw, opt_out_reason)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::bool[],
                         $11::jsonb[], $12::text[])
    ON CONFLICT (wamid) DO NOTHING
    RETURNING 1
)
SELECT count(*) AS stored FROM stored;

-- name: apply_inbound
-- Up to $1 stored inbound messages not applied yet (any webhook's: SKIP LOCKED), each matched
-- to the campaign message it answers: context.id = our wamid, else the phone's last message
-- sent (one probe per campaign on contacts_campaign_phone_live). Opt-outs put the phone on
-- the suppression list (source inbound, scope all) and, in the same statement, every pending
-- contact of that phone in every campaign (initial, retry_scheduled) becomes sending_failed
-- with error_title 'opted out: ...': nothing was sent, nothing will be, and the reason shows
-- in status, exports and errors_by_code. Contacts already claimed by a daemon are dropped by
-- it on the NOTIFY below (engine.optout_watch) and stopped by their release.
WITH pending AS MATERIALIZED (
    SELECT i.id, i.phone, i.user_id, i.sent_at, i.context_wamid, i.opt_out, i.opt_out_reason
    FROM inbound_messages i
    WHERE NOT i.applied
    ORDER BY i.id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
),
matched AS (
    SELECT p.id, coalesce(ctx.id, last.id) AS contact_id,
           coalesce(ctx.campaign_id, last.campaign_id) AS campaign_id
    FROM pending p
    LEFT JOIN LATERAL (
        SELECT c.id, c.campaign_id FROM contacts c
        WHERE p.context_wamid IS NOT NULL AND c.wamid = p.context_wamid LIMIT 1
    ) ctx ON true
    LEFT JOIN LATERAL (
        -- One probe per campaign on the partial unique index contacts_campaign_phone_live
        -- (campaign first: the LIMIT keeps the planner from one scan of the whole index).
        SELECT l.id, l.campaign_id FROM campaigns k
        CROSS JOIN LATERAL (
            SELECT c.id, c.campaign_id, c.sent_at FROM contacts c
            WHERE c.campaign_id = k.id AND c.phone = p.phone
              AND c.state NOT IN ('invalid_record', 'removed')
            LIMIT 1
        ) l
        WHERE ctx.id IS NULL AND k.state <> 'draft' AND l.sent_at IS NOT NULL
        ORDER BY l.sent_at DESC LIMIT 1
    ) last ON true
),
marked AS (
    UPDATE inbound_messages i
    SET applied = true, opt_out_reason = NULL, campaign_id = m.campaign_id,
        contact_id = m.contact_id
    FROM matched m
    WHERE i.id = m.id
    RETURNING i.id
),
opted AS (
    SELECT DISTINCT ON (p.phone) p.phone, p.user_id,
           coalesce(p.opt_out_reason, 'opt-out') AS reason
    FROM pending p
    WHERE p.opt_out
    ORDER BY p.phone, p.sent_at
),
suppressed AS (
    INSERT INTO suppressions AS x (phone, reason, source, scope, user_id)
    SELECT phone, reason, 'inbound', 'all', user_id FROM opted
    ON CONFLICT (phone) DO UPDATE
        SET reason = EXCLUDED.reason, source = EXCLUDED.source, scope = 'all',
            user_id = coalesce(EXCLUDED.user_id, x.user_id)
        WHERE x.scope <> 'all'
    RETURNING phone
),
live AS MATERIALIZED (
    -- The live contacts of the phones this batch names, in every campaign: one probe per
    -- campaign and phone on contacts_campaign_phone_live.
    SELECT l.id, l.phone, l.state, l.user_id
    FROM (SELECT DISTINCT phone FROM pending) ph
    CROSS JOIN campaigns k
    CROSS JOIN LATERAL (
        SELECT c.id, c.phone, c.state, c.user_id FROM contacts c
        WHERE c.campaign_id = k.id AND c.phone = ph.phone
          AND c.state NOT IN ('invalid_record', 'removed')
        LIMIT 1
    ) l
),
stopped AS (
    UPDATE contacts c
    SET state = 'sending_failed', error_code = NULL, error_title = 'opted out: ' || o.reason,
        failed_at = now(), next_attempt_at = NULL, updated_at = now(),
        user_id = coalesce(o.user_id, c.user_id)
    FROM live l, opted o
    WHERE c.id = l.id AND l.phone = o.phone
      AND c.state IN ('initial', 'retry_scheduled')
    RETURNING c.id
),
to_identify AS (
    -- The sender's business-scoped user id (migration 0012) on its contacts in every campaign
    -- (the contacts stopped above get it there: a row is updated once per statement). A
    -- contact locked meanwhile (the reconciler applying its status, which fills the user id
    -- from statuses too) is skipped, not waited for: a reply must not queue behind receipts.
    SELECT c.id, u.user_id
    FROM (SELECT DISTINCT ON (phone) phone, user_id FROM pending
          WHERE user_id IS NOT NULL ORDER BY phone) u
    JOIN live l ON l.phone = u.phone
    CROSS JOIN LATERAL (
        SELECT c.id FROM contacts c
        WHERE c.id = l.id AND c.user_id IS DISTINCT FROM u.user_id
          AND NOT (c.state IN ('initial', 'retry_scheduled')
                   AND c.phone IN (SELECT phone FROM opted))
        FOR UPDATE SKIP LOCKED
    ) c
),
identified AS (
    UPDATE contacts c
    SET user_id = t.user_id
    FROM to_identify t
    WHERE c.id = t.id
    RETURNING c.id
)
SELECT (SELECT count(*) FROM marked) AS applied,
       (SELECT count(*) FROM opted) AS opt_outs,
       (SELECT count(*) FROM suppressed) AS suppressed,
       (SELECT count(*) FROM stopped) AS contacts_stopped,
       (SELECT count(*) FROM identified) AS identified,
       -- Every daemon drops the claimed contacts of these phones it still holds
       -- (engine.optout_watch; delivered at commit). Too many for one payload (8000 bytes):
       -- phones null, the daemons read the list instead.
       (SELECT pg_notify('wa_sender_opt_outs', CASE WHEN length(p) < 7900 THEN p
                         ELSE '{"scope": "all", "phones": null}' END)
        FROM (SELECT json_build_object('scope', 'all', 'phones', json_agg(phone))::text AS p
              FROM opted HAVING count(*) > 0) n) IS NULL AS notified;

-- name: inbound_apply_settings
-- For the rest of apply_inbound's transaction: no JIT. Its estimates (every campaign times
-- every phone of the batch) pass jit_above_cost, and compiling the plan cost 0.2-2 s a call
-- for a statement that runs in milliseconds.
SET LOCAL jit = off;

-- name: inbound_pending
-- Whether a stored inbound message waits to be applied (engine.inbound's fallback look).
SELECT EXISTS (SELECT 1 FROM inbound_messages WHERE NOT applied);

-- name: marketing_stop
-- user_preferences stop: $1 phone, $2 user id, $3 detail. On the list with scope marketing
-- (a full suppression stays as it is); pending contacts of MARKETING campaigns (a campaign of
-- unknown category counts as marketing) of that phone stop like an opt-out.
WITH suppressed AS (
    INSERT INTO suppressions (phone, reason, source, scope, user_id)
    VALUES ($1, $3, 'user_preferences', 'marketing', $2)
    ON CONFLICT (phone) DO NOTHING
    RETURNING phone
),
stopped AS (
    UPDATE contacts c
    SET state = 'sending_failed', error_code = NULL,
        error_title = 'opted out: stopped marketing messages (user_preferences)',
        failed_at = now(), next_attempt_at = NULL, updated_at = now(),
        user_id = coalesce($2, c.user_id)
    FROM campaigns k
    WHERE c.campaign_id = k.id AND c.phone = $1
      AND coalesce(upper(k.template_category), 'MARKETING') = 'MARKETING'
      AND c.state IN ('initial', 'retry_scheduled')
    RETURNING c.id
),
identified AS (
    -- its user id on its other contacts (migration 0012)
    UPDATE contacts c
    SET user_id = $2
    FROM campaigns k
    WHERE $2::text IS NOT NULL AND c.campaign_id = k.id AND c.phone = $1
      AND c.user_id IS DISTINCT FROM $2
      AND NOT (coalesce(upper(k.template_category), 'MARKETING') = 'MARKETING'
               AND c.state IN ('initial', 'retry_scheduled'))
    RETURNING c.id
)
SELECT (SELECT count(*) FROM suppressed) AS suppressed,
       (SELECT count(*) FROM stopped) AS contacts_stopped,
       -- claimed contacts of marketing campaigns dropped by every daemon (engine.optout_watch)
       pg_notify('wa_sender_opt_outs',
                 json_build_object('scope', 'marketing', 'phones', json_build_array($1::text))::text)
           IS NULL AS notified;

-- name: marketing_resume
-- user_preferences resume: $1 phone. Lifts a marketing-only suppression (not an opt-out
-- reply's, nor an operator's).
DELETE FROM suppressions WHERE phone = $1 AND scope = 'marketing' RETURNING phone;

-- name: template_status_event
-- $1 WABA, $2 name, $3 language, $4 template id, $5 catalogue status, $6 reason, $7 category.
-- The catalogue row is updated (made when never synced).
INSERT INTO templates AS t (waba_id, name, language, template_id, status, category, document,
                            status_reason, status_updated_at)
VALUES ($1, $2, $3, $4, $5, coalesce($7, ''), '{}', $6, now())
ON CONFLICT (waba_id, name, language) DO UPDATE
SET status = EXCLUDED.status, status_reason = EXCLUDED.status_reason,
    status_updated_at = now(), template_id = coalesce(EXCLUDED.template_id, t.template_id),
    category = CASE WHEN $7 IS NULL THEN t.category ELSE EXCLUDED.category END;

-- name: pause_template_campaigns
-- Meta paused, disabled, rejected or flagged template $2/$3 (WABA $1): every running
-- campaign sending it is paused by Meta with reason $4 (a stop every daemon confirms).
UPDATE campaigns k
SET state = 'paused', paused_at = now(), pause_reason = $4, paused_by = 'meta',
    updated_at = now(), stop_seq = nextval('campaign_stop_seq')
WHERE k.state = 'running' AND k.template_name = $2 AND k.template_language = $3
  AND (k.template_waba_id IS NULL OR k.template_waba_id = $1 OR $1 = '')
RETURNING k.id;

-- name: resume_template_campaigns
-- Template $2/$3 (WABA $1) is APPROVED again: the campaigns Meta paused resume (never an
-- operator's pause), and their contacts held by 132015 are due now.
WITH resumed AS (
    UPDATE campaigns k
    SET state = 'running', pause_reason = NULL, paused_by = NULL, hold_reason = NULL,
        hold_until = NULL, updated_at = now()
    WHERE k.state = 'paused' AND k.paused_by = 'meta'
      AND k.template_name = $2 AND k.template_language = $3
      AND (k.template_waba_id IS NULL OR k.template_waba_id = $1 OR $1 = '')
    RETURNING k.id
),
released AS (
    UPDATE contacts c
    SET next_attempt_at = now(), updated_at = now()
    FROM campaigns k
    WHERE c.campaign_id = k.id AND c.state = 'retry_scheduled' AND c.error_code = 132015
      AND k.template_name = $2 AND k.template_language = $3
      AND (k.template_waba_id IS NULL OR k.template_waba_id = $1 OR $1 = '')
    RETURNING c.id
)
SELECT array(SELECT id FROM resumed) AS resumed, (SELECT count(*) FROM released) AS released;

-- name: template_quality_event
-- $1 WABA, $2 name, $3 language, $4 template id, $5 new score.
INSERT INTO templates AS t (waba_id, name, language, template_id, status, document,
                            quality_score, quality_updated_at)
VALUES ($1, $2, $3, $4, 'UNKNOWN', '{}', $5, now())
ON CONFLICT (waba_id, name, language) DO UPDATE
SET quality_score = EXCLUDED.quality_score, quality_updated_at = now(),
    template_id = coalesce(EXCLUDED.template_id, t.template_id);

-- name: template_category_event
-- $1 WABA, $2 name, $3 language, $4 template id, $5 new category, $6 previous category.
INSERT INTO templates AS t (waba_id, name, language, template_id, status, category, document,
                            previous_category, category_updated_at)
VALUES ($1, $2, $3, $4, 'UNKNOWN', $5, '{}', $6, now())
ON CONFLICT (waba_id, name, language) DO UPDATE
SET category = EXCLUDED.category, previous_category = coalesce($6, t.category),
    category_updated_at = now(), template_id = coalesce(EXCLUDED.template_id, t.template_id);

-- name: recategorise_template_campaigns
-- template_category_update: template $2/$3 (WABA $1) is now of category $4. Every campaign of
-- it that may still send (draft, scheduled, running, paused) takes the new category, in its
-- column (what caps, pricing and marketing suppression read) and in its stored binding's
-- definition (what the preparer reads: a MARKETING template may go through
-- /marketing_messages, another may not). Their ids.
UPDATE campaigns k
SET template_category = $4,
    template_spec = CASE
        WHEN k.template_spec IS NULL OR jsonb_typeof(k.template_spec -> 'definitions') <> 'array'
            THEN k.template_spec
        ELSE jsonb_set(k.template_spec, '{definitions}', (
            SELECT coalesce(jsonb_agg(CASE WHEN d ->> 'language' = $3
                                           THEN jsonb_set(d, '{category}', to_jsonb($4::text))
                                           ELSE d END ORDER BY o), '[]'::jsonb)
            FROM jsonb_array_elements(k.template_spec -> 'definitions') WITH ORDINALITY AS e(d, o)))
    END,
    updated_at = now()
WHERE k.state IN ('draft', 'scheduled', 'running', 'paused')
  AND k.template_name = $2 AND k.template_language = $3
  AND (k.template_waba_id IS NULL OR k.template_waba_id = $1 OR $1 = '')
  AND k.template_category IS DISTINCT FROM $4
RETURNING k.id;

-- name: template_health
-- What `campaign status` shows of its template: $1 name, $2 language, $3 WABA ('' = any).
SELECT status, status_reason, quality_score, category, previous_category,
       status_updated_at, quality_updated_at, category_updated_at
FROM templates
WHERE name = $1 AND language = $2 AND ($3 = '' OR waba_id = $3)
ORDER BY greatest(status_updated_at, quality_updated_at, category_updated_at, synced_at) DESC
LIMIT 1;

-- name: numbers_seen
-- display number <-> phone_number_id pairs from the changes' metadata ($1, $2 arrays).
INSERT INTO phone_numbers AS p (display_phone_number, phone_number_id)
SELECT DISTINCT ON (d) d, i FROM unnest($1::text[], $2::text[]) AS n(d, i)
WHERE NOT EXISTS (SELECT 1 FROM phone_numbers q
                  WHERE q.display_phone_number = n.d AND q.phone_number_id = n.i)
ON CONFLICT (display_phone_number) DO UPDATE
SET phone_number_id = EXCLUDED.phone_number_id, updated_at = now()
WHERE p.phone_number_id IS DISTINCT FROM EXCLUDED.phone_number_id;

-- name: number_event
-- $1 display number, $2 event, $3 marketing rate factor (NULL: unchanged), $4 throughput
-- upgraded (NULL: unchanged), $5 current limit, $6 event time.
INSERT INTO phone_numbers AS p (display_phone_number, quality_event, marketing_rate_factor,
                                throughput_upgraded, current_limit, event_at)
VALUES ($1, $2, coalesce($3, 1.0), coalesce($4, false), $5, $6)
ON CONFLICT (display_phone_number) DO UPDATE
SET quality_event = $2,
    marketing_rate_factor = coalesce($3, p.marketing_rate_factor),
    throughput_upgraded = coalesce($4, p.throughput_upgraded),
    current_limit = coalesce($5, p.current_limit),
    event_at = $6, updated_at = now()
RETURNING phone_number_id;

-- name: number_health
-- Every known number's quality event and rate factors (the sender polls this).
SELECT display_phone_number, phone_number_id, quality_event, marketing_rate_factor,
       throughput_upgraded, current_limit, event_at
FROM phone_numbers ORDER BY display_phone_number;

-- name: replies_count
-- Inbound messages and opt-outs per campaign.
SELECT campaign_id, count(*) AS replies, count(*) FILTER (WHERE opt_out) AS opt_outs
FROM inbound_messages GROUP BY campaign_id ORDER BY campaign_id;

-- name: number_rates
-- What the sender's buckets need per sending number that Meta reported on: its marketing
-- rate factor, whether it was upgraded, and whether it now sends a MARKETING campaign (a
-- campaign of unknown category counts as marketing).
SELECT p.phone_number_id, p.quality_event, p.marketing_rate_factor, p.throughput_upgraded,
       EXISTS (SELECT 1 FROM campaigns k
               WHERE k.phone_number_id = p.phone_number_id AND k.state = 'running'
                 AND coalesce(upper(k.template_category), 'MARKETING') = 'MARKETING')
           AS sends_marketing
FROM phone_numbers p
WHERE p.phone_number_id IS NOT NULL;

-- name: campaign_health
-- `campaign status`: who paused it, its template and number as Meta last reported them,
-- its replies and opt-outs. One jsonb (keys with NULL values are left out).
SELECT jsonb_strip_nulls(jsonb_build_object(
    'paused_by', k.paused_by,
    'category', k.template_category,
    'template', (SELECT jsonb_build_object(
                     'status', t.status, 'reason', t.status_reason,
                     'quality', t.quality_score, 'category', nullif(t.category, ''),
                     'previous_category', t.previous_category)
                 FROM templates t
                 WHERE t.name = k.template_name AND t.language = k.template_language
                   AND (k.template_waba_id IS NULL OR t.waba_id = k.template_waba_id)
                 ORDER BY greatest(t.status_updated_at, t.quality_updated_at,
                                   t.category_updated_at, t.synced_at) DESC
                 LIMIT 1),
    'number', (SELECT jsonb_build_object(
                   'quality_event', p.quality_event,
                   'marketing_rate_factor', p.marketing_rate_factor,
                   'throughput_upgraded', p.throughput_upgraded)
               FROM phone_numbers p WHERE p.phone_number_id = k.phone_number_id),
    'replies', (SELECT jsonb_build_object('replies', count(*),
                                          'opt_outs', count(*) FILTER (WHERE i.opt_out))
                FROM inbound_messages i WHERE i.campaign_id = k.id)
)) AS health
FROM campaigns k WHERE k.id = $1;

-- name: suppressions_since
-- Phones put on the suppression list at or after $1 (engine.optout_watch's fallback), with
-- their scope; the newest time read, for the next look.
SELECT phone, scope, created_at FROM suppressions WHERE created_at >= $1 ORDER BY created_at;

-- name: suppressions_now
-- Where engine.optout_watch starts reading: the database's clock.
SELECT now();
