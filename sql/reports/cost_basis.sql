-- Cost basis: billable messages by campaign, pricing category and country, from the
-- statuses' pricing (stored in columns, kept by GDPR purge). A message counts once (its first
-- status with pricing). Country: contacts.region when known, else the phone's calling code
-- ('+420'), else '?' (anonymised contacts).
--   messages        messages with a pricing object
--   billable        of them, billable (pricing.billable, or type 'regular' where billable is
--                   absent: Meta deprecates billable in favour of type + category)
--   free            of them, free (free_customer_service, free_entry_point)
--
--   psql -v campaign_id=N -f sql/reports/cost_basis.sql   (no -v: every campaign)
--   wa-sender report cost_basis [--campaign N] [--format table|csv|json]
\if :{?campaign_id}
\else
\set campaign_id NULL
\endif
WITH priced AS (
    SELECT DISTINCT ON (r.contact_id, r.wamid)
           r.contact_id, r.pricing_category, r.pricing_model, r.pricing_type,
           coalesce(r.pricing_billable, r.pricing_type = 'regular') AS billable
    FROM status_receipts r
    WHERE r.contact_id IS NOT NULL AND r.pricing_category IS NOT NULL
    ORDER BY r.contact_id, r.wamid, r.id
)
SELECT c.campaign_id,
       p.pricing_category AS category,
       coalesce(c.region,
                CASE WHEN c.phone ~ '^[0-9]+$' THEN '+' || substr(c.phone, 1,
                     CASE WHEN substr(c.phone, 1, 1) IN ('1', '7') THEN 1
                          WHEN substr(c.phone, 1, 2) IN ('20', '27', '30', '31', '32', '33',
                               '34', '36', '39', '40', '41', '43', '44', '45', '46', '47',
                               '48', '49', '51', '52', '53', '54', '55', '56', '57', '58',
                               '60', '61', '62', '63', '64', '65', '66', '81', '82', '84',
                               '86', '90', '91', '92', '93', '94', '95', '98') THEN 2
                          ELSE 3 END) END,
                '?') AS country,
       count(*) AS messages,
       count(*) FILTER (WHERE p.billable) AS billable,
       count(*) FILTER (WHERE NOT p.billable) AS free,
       string_agg(DISTINCT p.pricing_model, ',') AS pricing_models
FROM priced p
JOIN contacts c ON c.id = p.contact_id
WHERE (:campaign_id::bigint IS NULL OR c.campaign_id = :campaign_id::bigint)
GROUP BY c.campaign_id, p.pricing_category, 3
ORDER BY c.campaign_id, billable DESC, category, country;
