-- Send windows (migration 0013, daemon/db/windows_store.py): each pending contact's current
-- or next open interval (not_before .. open_until), computed per time zone in core.windows.
-- A contact's zone is its number's (contacts.time_zone), else its campaign's window_zone ($2).

-- name: set_campaign_planning
UPDATE campaigns
SET send_window = $2, window_zone = $3, finish_by = $4, updated_at = now()
WHERE id = $1
RETURNING *;

-- name: window_zones_to_refresh
-- $1 campaign, $2 fallback zone, $3 now, $4 every pending contact; else only those whose
-- window closed, or that were never computed ('infinity': imported into a windowed campaign).
SELECT DISTINCT coalesce(time_zone, $2) AS zone
FROM contacts
WHERE campaign_id = $1 AND state IN ('initial', 'retry_scheduled', 'in_progress')
  AND ($4 OR open_until <= $3 OR not_before = 'infinity');

-- name: window_refresh
-- $5 zones, $6 their opening, $7 their closing (the same rows as window_zones_to_refresh).
UPDATE contacts AS c
SET not_before = z.opens, open_until = z.closes
FROM unnest($5::text[], $6::timestamptz[], $7::timestamptz[]) AS z(zone, opens, closes)
WHERE c.campaign_id = $1 AND c.state IN ('initial', 'retry_scheduled', 'in_progress')
  AND coalesce(c.time_zone, $2) = z.zone
  AND ($4 OR c.open_until <= $3 OR c.not_before = 'infinity')
  AND (c.not_before, c.open_until) IS DISTINCT FROM (z.opens, z.closes);

-- name: window_clear
-- The campaign's window was removed: its pending contacts may go at any time.
UPDATE contacts
SET not_before = '-infinity', open_until = 'infinity'
WHERE campaign_id = $1 AND state IN ('initial', 'retry_scheduled', 'in_progress')
  AND (not_before <> '-infinity' OR open_until <> 'infinity');

-- name: window_waiting
-- `campaign status`: pending contacts outside their window at $2, and when the next opens.
SELECT count(*) FILTER (WHERE not_before > $2 OR open_until <= $2) AS waiting,
       min(not_before) FILTER (WHERE not_before > $2 AND not_before < 'infinity') AS next_open
FROM contacts
WHERE campaign_id = $1 AND state IN ('initial', 'retry_scheduled');
