-- Cost (issue 19, migration 0015): estimates from a rate card, a campaign's stored rates and
-- budget, and the claim-time budget check (daemon/engine/budget.py).

-- name: cost_estimate_counts
-- The contacts of campaign $1 that cost a message, by region: `remaining` still to be sent
-- (initial, retry_scheduled, in_progress), `total` those plus the ones sent already (sent,
-- delivered, read, successfully_submitted). Invalid, removed, canceled and failed contacts
-- cost nothing; a suppressed phone (scope 'all', or 'marketing' when $2) is left out.
SELECT c.region,
       count(*) FILTER (WHERE c.state IN ('initial', 'retry_scheduled', 'in_progress'))
           AS remaining,
       count(*) AS total
FROM contacts c
WHERE c.campaign_id = $1
  AND c.state IN ('initial', 'retry_scheduled', 'in_progress', 'sent', 'delivered', 'read',
                  'successfully_submitted')
  AND NOT EXISTS (SELECT 1 FROM suppressions s
                  WHERE s.phone = c.phone AND (s.scope = 'all' OR $2::boolean))
GROUP BY c.region
ORDER BY c.region NULLS LAST;

-- name: cost_rates_clear
DELETE FROM campaign_rates WHERE campaign_id = $1;

-- name: cost_rates_load
-- $1 campaign, then one array per column: the rate card as loaded (core.ratecard).
INSERT INTO campaign_rates (campaign_id, region, category, price, currency, source_line)
SELECT $1, r.region, r.category, r.price, $5, r.line
FROM unnest($2::text[], $3::text[], $4::numeric[], $6::integer[])
     AS r (region, category, price, line);

-- name: cost_rates
SELECT region, category, price, currency, source_line
FROM campaign_rates
WHERE campaign_id = $1
ORDER BY region, category;

-- name: cost_set_budget
-- $2 budget (NULL: none), $3 its currency, $4 the rate card's file name (NULL: kept).
UPDATE campaigns
SET budget = $2, budget_currency = $3, rate_card = coalesce($4, rate_card), updated_at = now()
WHERE id = $1
RETURNING id;

-- name: cost_set_rate_card
UPDATE campaigns SET rate_card = $2, updated_at = now() WHERE id = $1 RETURNING id;

-- name: cost_rate_card_name
SELECT rate_card FROM campaigns WHERE id = $1;
