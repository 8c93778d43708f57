-- Campaign summary: for each campaign, every contact state with its label, count and share of
-- the campaign's contacts, and the campaign's progress (contacts in a final state / all).
-- The legacy state successfully_submitted is listed only when some contact has it.
--
--   psql -v campaign_id=N -f sql/reports/campaign_summary.sql   (no -v: every campaign)
--   wa-sender report campaign_summary [--campaign N] [--format table|csv|json]
\if :{?campaign_id}
\else
\set campaign_id NULL
\endif
WITH selected AS (
    SELECT id, name, state
    FROM campaigns
    WHERE (:campaign_id::bigint IS NULL OR id = :campaign_id::bigint)
),
states (state, label, position) AS (
    VALUES ('initial'::contact_state, 'Initial', 1),
           ('invalid_record', 'Invalid record', 2),
           ('in_progress', 'In progress', 3),
           ('retry_scheduled', 'Retry scheduled', 4),
           ('sent', 'Sent', 5),
           ('delivered', 'Delivered', 6),
           ('read', 'Read', 7),
           ('delivery_failed', 'Delivery failed', 8),
           ('sending_failed', 'Sending failed', 9),
           ('error', 'Error', 10),
           ('canceled_by_admin', 'Canceled by admin', 11),
           ('removed', 'Removed', 12),
           ('successfully_submitted', 'Successfully Submitted', 13)
),
counts AS (
    SELECT c.campaign_id, c.state, count(*) AS contacts
    FROM contacts c
    WHERE c.campaign_id IN (SELECT id FROM selected)
    GROUP BY c.campaign_id, c.state
),
totals AS (
    SELECT k.id AS campaign_id,
           coalesce(sum(n.contacts), 0)::bigint AS total,
           coalesce(sum(n.contacts) FILTER (
               WHERE n.state NOT IN ('initial', 'in_progress', 'retry_scheduled')), 0)::bigint AS done
    FROM selected k
    LEFT JOIN counts n ON n.campaign_id = k.id
    GROUP BY k.id
)
SELECT k.id AS campaign_id,
       k.name AS campaign,
       k.state::text AS campaign_state,
       s.state::text AS state,
       s.label,
       coalesce(n.contacts, 0) AS contacts,
       coalesce(round(100.0 * coalesce(n.contacts, 0) / nullif(t.total, 0), 2), 0.00) AS percent,
       t.done,
       t.total,
       coalesce(round(100.0 * t.done / nullif(t.total, 0), 2), 100.00) AS progress_percent
FROM selected k
JOIN totals t ON t.campaign_id = k.id
CROSS JOIN states s
LEFT JOIN counts n ON n.campaign_id = k.id AND n.state = s.state
WHERE s.state <> 'successfully_submitted' OR n.contacts > 0
ORDER BY k.id, s.position;
