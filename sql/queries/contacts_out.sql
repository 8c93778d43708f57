-- Contacts out: export, one contact's history, retarget, delete (daemon/ops/contacts_out.py,
-- daemon/ops/retarget.py).

-- name: export_contacts
-- $2: the states to export (NULL: every state). Read through a server-side cursor.
SELECT phone, state::text AS state, invalid_reason, error_code, error_title, attempts, wamid,
       sent_at, delivered_at, read_at, failed_at, params::text AS params
FROM contacts
WHERE campaign_id = $1 AND ($2::text[] IS NULL OR state::text = ANY ($2::text[]))
ORDER BY id;

-- name: contacts_of_phone
SELECT id, phone, state::text AS state, invalid_reason, attempts, unknown_attempts, wamid,
       message_status, error_code, error_title, params::text AS params, source_line, region,
       time_zone, outcome_unknown, next_attempt_at, created_at, claimed_at, sent_at,
       delivered_at, read_at, failed_at, canceled_at, removed_at, updated_at
FROM contacts
WHERE campaign_id = $1 AND phone = $2
ORDER BY id;

-- name: attempts_of_contact
-- Every outcome recorded for the contact's attempts (migration 0010), in order.
SELECT attempt, at, outcome, error_code, error_title, wamid, unknown
FROM contact_attempts
WHERE contact_id = $1
ORDER BY attempt, at;

-- name: receipts_of_contact
SELECT received_at, status, status_at, error_code, error_title, processing_state, wamid
FROM status_receipts
WHERE contact_id = $1
ORDER BY coalesce(status_at, received_at), id;

-- name: suppression_of_phone
SELECT reason, created_at FROM suppressions WHERE phone = $1;

-- name: retarget_campaign
-- A copy of campaign $1 as a new draft named $2: template, binding, number, default country.
INSERT INTO campaigns (name, template_name, template_language, template_params, phone_number_id,
                       template_source, template_waba_id, template_category, template_spec,
                       default_country, retargeted_from)
SELECT $2, template_name, template_language, template_params, phone_number_id,
       template_source, template_waba_id, template_category, template_spec,
       default_country, id
FROM campaigns
WHERE id = $1
RETURNING id;

-- name: retarget_contacts
-- The contacts of campaign $1 in states $3 into campaign $2 as initial, with their stored
-- parameters, in their order; suppressed phones left out (a marketing-only entry, a
-- user_preferences stop, only when the new campaign's template is MARKETING or of unknown
-- category: a utility retarget takes those phones). $4: US numbers become invalid records
-- marketing_blocked_country (a MARKETING campaign with import.block_us_marketing).
-- One row: copied, suppressed, blocked.
WITH target AS (
    SELECT coalesce(upper(k.template_category), 'MARKETING') = 'MARKETING' AS marketing
    FROM campaigns k WHERE k.id = $2
), chosen AS (
    SELECT c.id, c.phone, c.params, c.region, c.time_zone, c.source_line,
           EXISTS (SELECT 1 FROM suppressions s, target t
                   WHERE s.phone = c.phone AND (s.scope = 'all' OR t.marketing)) AS suppressed,
           $4::boolean AND c.region = 'US' AS blocked
    FROM contacts c
    WHERE c.campaign_id = $1 AND c.state::text = ANY ($3::text[])
), copied AS (
    INSERT INTO contacts (campaign_id, phone, params, state, invalid_reason, source_line,
                          region, time_zone)
    SELECT $2, phone, params,
           (CASE WHEN blocked THEN 'invalid_record' ELSE 'initial' END)::contact_state,
           CASE WHEN blocked THEN 'marketing_blocked_country' END, source_line,
           CASE WHEN NOT blocked THEN region END, CASE WHEN NOT blocked THEN time_zone END
    FROM chosen
    WHERE NOT suppressed
    ORDER BY id
    RETURNING 1
)
SELECT (SELECT count(*) FROM copied) - (SELECT count(*) FROM chosen WHERE blocked AND NOT suppressed) AS copied,
       (SELECT count(*) FROM chosen WHERE suppressed) AS suppressed,
       (SELECT count(*) FROM chosen WHERE blocked AND NOT suppressed) AS blocked;

-- name: retarget_header_file
INSERT INTO campaign_header_files (campaign_id, filename, mime_type, sha256, data)
SELECT $2, filename, mime_type, sha256, data FROM campaign_header_files WHERE campaign_id = $1;

-- name: delete_draft_campaign
DELETE FROM campaigns WHERE id = $1 AND state = 'draft' RETURNING id;
