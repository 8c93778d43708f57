-- Delivery funnel: sent -> delivered -> read per campaign, with failure rates.
--
-- Counts come from each contact's current state; receipts only move a contact forward, so the
-- state says how far its message got:
--   contacts       every contact except invalid records and removed ones
--   attempted      contacts whose sending is over: sent + sending_failed + error
--   sent           accepted by the API (states sent, delivered, read, delivery_failed and the
--                  legacy successfully_submitted)
--   delivered      ever delivered (delivered + read)
--   read           read
-- Rates, in percent (NULL when the denominator is 0):
--   delivered_rate       = delivered / sent
--   read_rate            = read / delivered
--   delivery_failed_rate = delivery_failed / sent
--   sending_failed_rate  = sending_failed / attempted
--   error_rate           = error / attempted
--
--   psql -v campaign_id=N -f sql/reports/delivery_funnel.sql   (no -v: every campaign)
--   wa-sender report delivery_funnel [--campaign N] [--format table|csv|json]
\if :{?campaign_id}
\else
\set campaign_id NULL
\endif
WITH funnel AS (
    SELECT k.id AS campaign_id,
           k.name AS campaign,
           count(c.id) FILTER (WHERE c.state NOT IN ('invalid_record', 'removed')) AS contacts,
           count(c.id) FILTER (WHERE c.state IN ('sent', 'delivered', 'read', 'delivery_failed',
                                                 'successfully_submitted')) AS sent,
           count(c.id) FILTER (WHERE c.state IN ('delivered', 'read')) AS delivered,
           count(c.id) FILTER (WHERE c.state = 'read') AS read,
           count(c.id) FILTER (WHERE c.state = 'delivery_failed') AS delivery_failed,
           count(c.id) FILTER (WHERE c.state = 'sending_failed') AS sending_failed,
           count(c.id) FILTER (WHERE c.state = 'error') AS error
    FROM campaigns k
    LEFT JOIN contacts c ON c.campaign_id = k.id
    WHERE (:campaign_id::bigint IS NULL OR k.id = :campaign_id::bigint)
    GROUP BY k.id, k.name
)
SELECT campaign_id,
       campaign,
       contacts,
       sent + sending_failed + error AS attempted,
       sent,
       delivered,
       read,
       delivery_failed,
       sending_failed,
       error,
       round(100.0 * delivered / nullif(sent, 0), 2) AS delivered_rate,
       round(100.0 * read / nullif(delivered, 0), 2) AS read_rate,
       round(100.0 * delivery_failed / nullif(sent, 0), 2) AS delivery_failed_rate,
       round(100.0 * sending_failed / nullif(sent + sending_failed + error, 0), 2) AS sending_failed_rate,
       round(100.0 * error / nullif(sent + sending_failed + error, 0), 2) AS error_rate
FROM funnel
ORDER BY campaign_id;
