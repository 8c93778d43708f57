-- `wa-sender demo`: its progress line.

-- name: demo_progress
-- $1 campaign, $2 the contact states not yet final.
SELECT count(*) AS total, count(*) FILTER (WHERE state::text = ANY($2)) AS pending,
       (SELECT state::text FROM campaigns WHERE id = $1) AS campaign_state,
       (SELECT pause_reason FROM campaigns WHERE id = $1) AS pause_reason
FROM contacts WHERE campaign_id = $1;
