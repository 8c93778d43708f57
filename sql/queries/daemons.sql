-- The daemons as the CLI sees them: liveness, and confirmations of campaign stops.

-- name: campaign_stops_since
-- Campaigns stopped (paused or canceled) after stop number $1, with their state now, and the
-- highest stop number as of the same snapshot (one row with NULLs when there is none).
SELECT k.id, k.state::text AS state, k.stop_seq, s.stop_seq_now
FROM (SELECT coalesce(max(stop_seq), 0) AS stop_seq_now FROM campaigns) s
LEFT JOIN campaigns k ON k.stop_seq > $1
ORDER BY k.stop_seq;

-- name: ack_stops
-- This daemon ($1) holds nothing of any campaign stopped up to $2; NOTIFY the waiting CLI.
WITH acked AS (
    UPDATE daemons SET acked_stop_seq = greatest(acked_stop_seq, $2)
    WHERE id = $1
    RETURNING id
)
SELECT pg_notify('wa_sender_stop_acks', $2::text) FROM acked;

-- name: daemons_yet_to_ack
-- Daemons that have not confirmed stop number $1; with $2, only those that may still send a
-- campaign stopped then: heard from within their send bound (nothing else can send any more).
SELECT id, hostname, pid, heartbeat_at, send_bound_s,
       extract(epoch FROM now() - heartbeat_at)::float8 AS silent_s
FROM daemons
WHERE acked_stop_seq < $1
  AND (NOT $2 OR heartbeat_at > now() - make_interval(secs => send_bound_s))
ORDER BY id;

-- name: live_daemons
-- Daemons heard from within $1 seconds, oldest first.
SELECT id, hostname, pid, version, started_at, heartbeat_at, numbers, sent, acked_stop_seq,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s
FROM daemons
WHERE heartbeat_at > now() - make_interval(secs => $1)
ORDER BY started_at, id;
