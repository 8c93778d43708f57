-- `wa-sender demo`: its progress line.

-- name: demo_progress
-- $1 campaign, $2 the contact states not yet final.
SELECT count(*) AS total, count(*) FILTER (WHERE state::text = ANY($2)) AS pending,
       (SELECT state::text FROM campaigns WHERE id = $1) AS campaign_state,
       (SELECT pause_reason FROM campaigns WHERE id = $1) AS pause_reason
FROM contacts WHERE campaign_id = $1;

-- name: demo_pending_phone
-- $1 campaign: the phone of its last contact not sent yet (the demo's opt-out comes from it).
SELECT phone FROM contacts
WHERE campaign_id = $1 AND state IN ('initial', 'in_progress', 'retry_scheduled')
ORDER BY id DESC LIMIT 1;

-- name: demo_listening
-- $1 campaign: the replies and opt-outs the webhook stored, the campaign's contacts an
-- opt-out stopped, the phones on the suppression list from a reply.
SELECT (SELECT count(*) FROM inbound_messages WHERE NOT opt_out) AS replies,
       (SELECT count(*) FROM inbound_messages WHERE opt_out) AS opt_outs,
       (SELECT count(*) FROM contacts
        WHERE campaign_id = $1 AND state = 'sending_failed'
          AND error_title LIKE 'opted out:%') AS stopped,
       (SELECT count(*) FROM suppressions WHERE source = 'inbound') AS suppressed;
