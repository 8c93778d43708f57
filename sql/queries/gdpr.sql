-- GDPR: anonymise the contacts of old campaigns, forget one person everywhere.
--
-- Anonymised, not deleted: a contact row keeps its state, timestamps, attempts and error code
-- so reports keep their counts and rates, and loses everything that identifies the person:
-- the phone becomes 'anon:<contact id>' (unique per campaign, as the live-phone index wants),
-- and wa_id, wamid (it encodes the recipient's number) and the template parameters go.
-- A scrubbed status receipt keeps its status, timestamps, error code and processing state;
-- its raw payload, recipient id and wamid go. Messaging-limit window entries are renamed to
-- random tokens, so the rolling 24 h count of unique recipients stays right.

-- name: gdpr_purge
-- $1 days. Contacts of campaigns finished or canceled more than $1 days ago, their status
-- receipts, and orphan receipts (never matched to a contact) received more than $1 days ago.
-- Joins, not IN (subquery): a purge can cover millions of contacts, more than a hashed
-- subplan holds in work_mem.
WITH old_contacts AS (
    SELECT c.id, c.phone, c.wa_id, c.wamid,
           c.phone <> 'anon:' || c.id OR c.wa_id IS NOT NULL OR c.wamid IS NOT NULL
               OR c.params <> '{}'::jsonb AS identifying
    FROM contacts c
    JOIN campaigns k ON k.id = c.campaign_id
    WHERE CASE k.state WHEN 'finished' THEN k.finished_at WHEN 'canceled' THEN k.canceled_at END
          < now() - make_interval(days => $1)
),
old_receipts AS (
    SELECT r.id FROM status_receipts r JOIN old_contacts o ON o.id = r.contact_id
    UNION
    SELECT r.id FROM status_receipts r JOIN old_contacts o ON o.wamid = r.wamid
    UNION
    SELECT r.id FROM status_receipts r
    WHERE r.processing_state = 'orphan' AND r.received_at < now() - make_interval(days => $1)
),
receipts AS (
    UPDATE status_receipts r
    SET wamid = 'anon:' || r.id, recipient_id = NULL, user_id = NULL,
        raw = '{"gdpr_scrubbed": true}'::jsonb
    FROM old_receipts o
    WHERE r.id = o.id
      AND (r.wamid <> 'anon:' || r.id OR r.recipient_id IS NOT NULL
           OR r.raw <> '{"gdpr_scrubbed": true}'::jsonb)
    RETURNING r.id
),
-- Inbound messages (migration 0011) of those campaigns, or unmatched and older than $1 days:
-- the person and the text go, the type, times, campaign and opt-out flag stay (replies report).
inbound AS (
    UPDATE inbound_messages i
    SET phone = 'anon:' || i.id, user_id = NULL, body = NULL, payload = NULL,
        wamid = 'anon:' || i.id, context_wamid = NULL, raw = '{"gdpr_scrubbed": true}'::jsonb
    WHERE i.phone <> 'anon:' || i.id
      AND (i.contact_id IN (SELECT id FROM old_contacts)
           OR (i.contact_id IS NULL AND i.received_at < now() - make_interval(days => $1)))
    RETURNING i.id
),
window_entries AS (
    UPDATE recipient_window w
    SET phone = 'anon:' || gen_random_uuid()
    FROM (SELECT phone AS value FROM old_contacts WHERE identifying
          UNION
          SELECT wa_id FROM old_contacts WHERE identifying AND wa_id IS NOT NULL) AS ids
    WHERE w.phone = ids.value
    RETURNING 1
),
anonymised AS (
    UPDATE contacts c
    SET phone = 'anon:' || c.id, wa_id = NULL, wamid = NULL, params = '{}'::jsonb,
        user_id = NULL, prior_wamid = NULL, updated_at = now()
    FROM old_contacts o
    WHERE c.id = o.id AND o.identifying
    RETURNING c.id, c.campaign_id
)
SELECT (SELECT count(*) FROM anonymised) AS contacts,
       (SELECT count(DISTINCT campaign_id) FROM anonymised) AS campaigns,
       (SELECT count(*) FROM receipts) AS receipts,
       (SELECT count(*) FROM window_entries) AS window_entries,
       (SELECT count(*) FROM inbound) AS inbound;

-- name: gdpr_forget
-- $1 normalised phone. Its contacts in every campaign (invalid records too, whose phone is
-- kept as written in the file: matched on their digits), the receipts linked to them or
-- naming the phone or one of its wa_ids, and its messaging-limit entry. Contacts still
-- waiting to be sent (initial, retry_scheduled) are removed: there is nobody left to send to.
-- No index serves wa_id or the raw phones of invalid records: this scans contacts once.
WITH targets AS (
    SELECT c.id, c.wa_id, c.wamid, c.state IN ('initial', 'retry_scheduled') AS pending
    FROM contacts c
    WHERE c.phone = $1
       OR c.wa_id = $1
       OR (c.state = 'invalid_record'
           AND regexp_replace(regexp_replace(replace(c.phone, '(0)', ''), '\.0\s*$', ''),
                              '[^0-9]', '', 'g') IN ($1, '00' || $1))
),
identifiers (value) AS (
    SELECT $1::text
    UNION
    SELECT wa_id FROM targets WHERE wa_id IS NOT NULL
),
receipts AS (
    UPDATE status_receipts r
    SET wamid = 'anon:' || r.id, recipient_id = NULL, user_id = NULL,
        raw = '{"gdpr_scrubbed": true}'::jsonb
    WHERE (r.contact_id IN (SELECT id FROM targets)
           OR r.wamid IN (SELECT wamid FROM targets WHERE wamid IS NOT NULL)
           OR r.recipient_id IN (SELECT value FROM identifiers)
           OR EXISTS (SELECT 1 FROM identifiers i
                      WHERE strpos(r.raw::text, '"' || i.value || '"') > 0))
      AND (r.wamid <> 'anon:' || r.id OR r.recipient_id IS NOT NULL
           OR r.raw <> '{"gdpr_scrubbed": true}'::jsonb)
    RETURNING r.id
),
window_entries AS (
    UPDATE recipient_window w
    SET phone = 'anon:' || gen_random_uuid()
    WHERE w.phone IN (SELECT value FROM identifiers)
    RETURNING 1
),
inbound AS (
    -- Everything the person sent us (migration 0011).
    DELETE FROM inbound_messages i
    WHERE i.phone IN (SELECT value FROM identifiers) OR i.contact_id IN (SELECT id FROM targets)
    RETURNING 1
),
anonymised AS (
    UPDATE contacts c
    SET phone = 'anon:' || c.id, wa_id = NULL, wamid = NULL, params = '{}'::jsonb,
        user_id = NULL, prior_wamid = NULL,
        state = CASE WHEN t.pending THEN 'removed'::contact_state ELSE c.state END,
        removed_at = CASE WHEN t.pending THEN now() ELSE c.removed_at END,
        next_attempt_at = CASE WHEN t.pending THEN NULL ELSE c.next_attempt_at END,
        updated_at = now()
    FROM targets t
    WHERE c.id = t.id
    RETURNING t.pending
),
suppressed AS (
    INSERT INTO suppressions (phone, reason, source) VALUES ($1, 'gdpr forget', 'gdpr')
    ON CONFLICT (phone) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM anonymised) AS contacts,
       (SELECT count(*) FROM anonymised WHERE pending) AS removed,
       (SELECT count(*) FROM receipts) AS receipts,
       (SELECT count(*) FROM window_entries) AS window_entries,
       (SELECT count(*) FROM suppressed) AS suppressed,
       (SELECT count(*) FROM inbound) AS inbound;
