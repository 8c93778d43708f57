-- Replies: inbound messages per campaign (matched by the message they answer, else the
-- phone's last message sent), opt-outs among them, and the rates per message sent.
--   replies         inbound messages matched to the campaign
--   repliers        distinct phones among them
--   opt_outs        replies that opted out (STOP keywords, opt-out buttons)
--   reply_rate      repliers / contacts sent, percent
--   opt_out_rate    opt-outs / contacts sent, percent
--
--   psql -v campaign_id=N -f sql/reports/replies.sql   (no -v: every campaign)
--   wa-sender report replies [--campaign N] [--format table|csv|json]
\if :{?campaign_id}
\else
\set campaign_id NULL
\endif
WITH replies AS (
    SELECT i.campaign_id, count(*) AS replies, count(DISTINCT i.phone) AS repliers,
           count(*) FILTER (WHERE i.opt_out) AS opt_outs
    FROM inbound_messages i
    WHERE i.campaign_id IS NOT NULL
      AND (:campaign_id::bigint IS NULL OR i.campaign_id = :campaign_id::bigint)
    GROUP BY i.campaign_id
),
sent AS (
    SELECT c.campaign_id, count(*) AS sent
    FROM contacts c
    WHERE c.campaign_id IN (SELECT campaign_id FROM replies) AND c.sent_at IS NOT NULL
    GROUP BY c.campaign_id
)
SELECT r.campaign_id, k.name, coalesce(s.sent, 0) AS sent, r.replies, r.repliers, r.opt_outs,
       round(100.0 * r.repliers / nullif(s.sent, 0), 2) AS reply_rate,
       round(100.0 * r.opt_outs / nullif(s.sent, 0), 2) AS opt_out_rate
FROM replies r
JOIN campaigns k ON k.id = r.campaign_id
LEFT JOIN sent s ON s.campaign_id = r.campaign_id
ORDER BY r.campaign_id;
