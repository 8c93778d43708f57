-- The claim-time budget check (daemon/engine/budget.py, migration 0015): a campaign with a
-- budget claims under a per-campaign advisory lock, and keeps only the contacts whose price
-- fits in what is left once billed messages and messages in flight are counted.

-- name: budget_lock
-- Serialises the budget check and claim of campaign $1 across daemons (released at commit).
SELECT pg_advisory_xact_lock(hashtext('wa_sender_budget'), $1::integer);

-- name: budget_committed
-- What campaign $1 has committed, priced by its rates ($2: the template's category, for
-- messages not billed yet): every billable message its statuses report (one per wamid,
-- the status's pricing category), plus every message in flight: contacts claimed
-- (in_progress) and those sent whose statuses (applied to them) have not brought a price
-- yet: a status still pending counts on the contact's side, never on neither. A message
-- without a rate (its country not on the card) counts in `unpriced`.
WITH billed AS (
    SELECT DISTINCT ON (r.wamid) c.region, lower(r.pricing_category) AS category
    FROM contacts c
    JOIN status_receipts r ON r.contact_id = c.id
    WHERE c.campaign_id = $1 AND r.pricing_category IS NOT NULL
      AND coalesce(r.pricing_billable, r.pricing_type = 'regular')
    ORDER BY r.wamid, r.id
), flying AS (
    SELECT c.region, $2::text AS category
    FROM contacts c
    WHERE c.campaign_id = $1
      AND (c.state = 'in_progress'
           OR (c.state IN ('sent', 'delivered', 'read', 'successfully_submitted')
               AND NOT EXISTS (SELECT 1 FROM status_receipts r
                               WHERE r.contact_id = c.id AND r.wamid = c.wamid
                                 AND r.pricing_category IS NOT NULL)))
), messages AS (
    SELECT m.region, m.category, count(*) AS n
    FROM (SELECT region, category FROM billed UNION ALL SELECT region, category FROM flying) m
    GROUP BY m.region, m.category
)
SELECT coalesce(sum(m.n * p.price), 0) AS committed,
       coalesce(sum(m.n) FILTER (WHERE p.price IS NULL), 0) AS unpriced,
       coalesce(sum(m.n), 0) AS messages
FROM messages m
LEFT JOIN LATERAL (
    SELECT k.price
    FROM campaign_rates k
    WHERE k.campaign_id = $1 AND k.region IN (coalesce(m.region, '?'), '*')
      AND k.category IN (m.category, $2::text)
    ORDER BY k.region = '*', k.category <> m.category
    LIMIT 1
) p ON true;

-- name: budget_prices
-- The price of one message to each contact of $2 (ids) in campaign $1 ($3 the category);
-- NULL where the card has none. One row per contact: id, region, price.
SELECT c.id, c.region, p.price
FROM contacts c
LEFT JOIN LATERAL (
    SELECT k.price
    FROM campaign_rates k
    WHERE k.campaign_id = $1 AND k.region IN (coalesce(c.region, '?'), '*')
      AND k.category = $3::text
    ORDER BY k.region = '*'
    LIMIT 1
) p ON true
WHERE c.id = ANY ($2::bigint[]);

-- name: budget_others_in_flight
-- Contacts of campaign $1 claimed by any daemon (their sends may yet leave).
SELECT count(*) FROM contacts WHERE campaign_id = $1 AND state = 'in_progress';

-- name: budget_estimate
-- The running estimate of campaign $1: checked + claimed since, and its age in seconds. No
-- row: never counted (or its rates changed).
SELECT s.checked + s.claimed AS estimate,
       extract(epoch FROM now() - s.checked_at)::float8 AS age_s
FROM campaign_budget_spend s
WHERE s.campaign_id = $1;

-- name: budget_checked
-- A full count of campaign $1: committed $2, nothing claimed since.
INSERT INTO campaign_budget_spend (campaign_id, checked, claimed, checked_at)
VALUES ($1, $2, 0, now())
ON CONFLICT (campaign_id) DO UPDATE SET checked = $2, claimed = 0, checked_at = now();

-- name: budget_claimed
-- Contacts kept by a claim of campaign $1 for $2 in all.
UPDATE campaign_budget_spend SET claimed = claimed + $2 WHERE campaign_id = $1;

-- name: budget_forget
-- The budget changed (campaign create|update): count in full at the next claim.
DELETE FROM campaign_budget_spend WHERE campaign_id = $1;

-- name: budget_cheapest
-- The cheapest message of category $2 on campaign $1's card: how many more could fit at most.
SELECT min(price) FROM campaign_rates WHERE campaign_id = $1 AND category = $2::text;
