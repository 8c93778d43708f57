-- Throughput: messages sent (accepted by the API), delivered and read per minute, per campaign,
-- from the contacts' sent_at, delivered_at and read_at. Minutes with no event are not listed.
--
--   psql -v campaign_id=N -f sql/reports/throughput.sql   (no -v: every campaign)
--   wa-sender report throughput [--campaign N] [--format table|csv|json]
\if :{?campaign_id}
\else
\set campaign_id NULL
\endif
SELECT c.campaign_id,
       date_trunc('minute', e.at) AS minute,
       count(*) FILTER (WHERE e.kind = 'sent') AS sent,
       count(*) FILTER (WHERE e.kind = 'delivered') AS delivered,
       count(*) FILTER (WHERE e.kind = 'read') AS read
FROM contacts c
CROSS JOIN LATERAL (
    VALUES ('sent', c.sent_at), ('delivered', c.delivered_at), ('read', c.read_at)
) AS e (kind, at)
WHERE e.at IS NOT NULL
  AND (:campaign_id::bigint IS NULL OR c.campaign_id = :campaign_id::bigint)
GROUP BY c.campaign_id, date_trunc('minute', e.at)
ORDER BY c.campaign_id, minute;
