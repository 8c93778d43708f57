-- Latency: seconds from send (API acceptance, sent_at) to delivered, and from delivered to
-- read, as the 50th, 90th and 99th percentiles (percentile_cont: linear interpolation) over
-- the contacts that have both timestamps. Receipt timestamps come from Meta with one-second
-- resolution, so a very fast delivery can show a small negative latency; it is not clamped.
--
--   psql -v campaign_id=N -f sql/reports/latency.sql   (no -v: every campaign)
--   wa-sender report latency [--campaign N] [--format table|csv|json]
\if :{?campaign_id}
\else
\set campaign_id NULL
\endif
WITH per_campaign AS (
    SELECT campaign_id,
           count(to_delivered) AS delivered_samples,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY to_delivered) AS delivered_p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY to_delivered) AS delivered_p90,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY to_delivered) AS delivered_p99,
           count(to_read) AS read_samples,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY to_read) AS read_p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY to_read) AS read_p90,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY to_read) AS read_p99
    FROM (
        SELECT c.campaign_id,
               extract(epoch FROM c.delivered_at - c.sent_at)::float8 AS to_delivered,
               extract(epoch FROM c.read_at - c.delivered_at)::float8 AS to_read
        FROM contacts c
        WHERE c.delivered_at IS NOT NULL
          AND (:campaign_id::bigint IS NULL OR c.campaign_id = :campaign_id::bigint)
    ) AS timings
    GROUP BY campaign_id
)
SELECT k.id AS campaign_id,
       coalesce(p.delivered_samples, 0) AS delivered_samples,
       round(p.delivered_p50::numeric, 3) AS delivered_p50_s,
       round(p.delivered_p90::numeric, 3) AS delivered_p90_s,
       round(p.delivered_p99::numeric, 3) AS delivered_p99_s,
       coalesce(p.read_samples, 0) AS read_samples,
       round(p.read_p50::numeric, 3) AS read_p50_s,
       round(p.read_p90::numeric, 3) AS read_p90_s,
       round(p.read_p99::numeric, 3) AS read_p99_s
FROM campaigns k
LEFT JOIN per_campaign p ON p.campaign_id = k.id
WHERE (:campaign_id::bigint IS NULL OR k.id = :campaign_id::bigint)
ORDER BY k.id;
