-- Errors by code: the last error recorded on each contact (API refusal, delivery failure,
-- transient error of a scheduled retry, transport error or unknown outcome), grouped by
-- campaign, error code and title, and contact state.
--   contacts        contacts in this state with this error
--   code_contacts   contacts of the campaign with this error, whatever their state
--   percent         code_contacts / all contacts of the campaign
--
--   psql -v campaign_id=N -f sql/reports/errors_by_code.sql   (no -v: every campaign)
--   wa-sender report errors_by_code [--campaign N] [--format table|csv|json]
\if :{?campaign_id}
\else
\set campaign_id NULL
\endif
WITH states (state, label, position) AS (
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
errors AS (
    SELECT c.campaign_id, c.error_code, c.error_title, c.state, count(*) AS contacts
    FROM contacts c
    WHERE (c.error_code IS NOT NULL OR c.error_title IS NOT NULL)
      AND (:campaign_id::bigint IS NULL OR c.campaign_id = :campaign_id::bigint)
    GROUP BY c.campaign_id, c.error_code, c.error_title, c.state
),
totals AS (
    SELECT campaign_id, count(*) AS total
    FROM contacts
    WHERE campaign_id IN (SELECT campaign_id FROM errors)
    GROUP BY campaign_id
)
SELECT e.campaign_id,
       e.error_code,
       e.error_title,
       e.state::text AS state,
       s.label,
       e.contacts,
       (sum(e.contacts) OVER code)::bigint AS code_contacts,
       round(100.0 * sum(e.contacts) OVER code / t.total, 2) AS percent
FROM errors e
JOIN states s ON s.state = e.state
JOIN totals t ON t.campaign_id = e.campaign_id
WINDOW code AS (PARTITION BY e.campaign_id, e.error_code, e.error_title)
ORDER BY e.campaign_id, code_contacts DESC, e.error_code NULLS LAST, e.error_title NULLS LAST,
         s.position;
