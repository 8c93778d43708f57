-- Cost by country: the billable messages of each campaign by recipient country and pricing
-- category (statuses' pricing, one per message: its first priced status), priced by the
-- campaign's stored rate card (`campaign create|update --rate-card`, migration 0015): the
-- country's rate for the category, else the card's '*' row. price and cost are NULL for a
-- campaign without a card or a country the card does not price. Country: contacts.region
-- ('?' when unknown, e.g. anonymised contacts).
--   messages   billable messages (pricing.billable, or type 'regular' where billable is absent)
--   price      one message's price on the card; cost = messages * price
--
--   psql -v campaign_id=N -f sql/reports/cost_by_country.sql   (no -v: every campaign)
--   wa-sender report cost_by_country [--campaign N] [--format table|csv|json]
\if :{?campaign_id}
\else
\set campaign_id NULL
\endif
WITH priced AS (
    SELECT DISTINCT ON (r.wamid)
           r.contact_id, lower(r.pricing_category) AS category,
           coalesce(r.pricing_billable, r.pricing_type = 'regular') AS billable
    FROM status_receipts r
    WHERE r.contact_id IS NOT NULL AND r.pricing_category IS NOT NULL
    ORDER BY r.wamid, r.id
), billed AS (
    SELECT c.campaign_id, coalesce(c.region, '?') AS country, p.category, count(*) AS messages
    FROM priced p
    JOIN contacts c ON c.id = p.contact_id
    WHERE p.billable
      AND (:campaign_id::bigint IS NULL OR c.campaign_id = :campaign_id::bigint)
    GROUP BY 1, 2, 3
)
SELECT b.campaign_id, b.country, b.category, b.messages, rate.price,
       b.messages * rate.price AS cost, rate.currency
FROM billed b
LEFT JOIN LATERAL (
    SELECT k.price, k.currency
    FROM campaign_rates k
    WHERE k.campaign_id = b.campaign_id AND k.region IN (b.country, '*')
      AND k.category = b.category
    ORDER BY k.region = '*'
    LIMIT 1
) rate ON true
ORDER BY b.campaign_id, cost DESC NULLS LAST, b.messages DESC, b.country, b.category;
