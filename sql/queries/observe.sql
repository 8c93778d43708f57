-- What /metrics reads from the database every few seconds: one round trip, index probes and
-- small partial indexes only (migration 0008).

-- name: metrics_sample
-- receipts_lag_s: how long the most overdue receipt has waited to be applied since it became
-- due (stored, or its back-off over): the reconciler's lag behind its work; 0 when none waits.
-- Receipts waiting on a back-off (no contact yet) are not overdue. $1: a daemon heard from
-- within this many seconds is live.
SELECT
    (SELECT coalesce(extract(epoch FROM now() - min(next_try_at)), 0)::float8
     FROM status_receipts
     WHERE processing_state = 'pending' AND next_try_at <= now()) AS receipts_lag_s,
    (SELECT count(*) FROM status_receipts WHERE processing_state = 'pending')
        AS receipts_pending,
    (SELECT count(*) FROM status_receipts WHERE processing_state = 'orphan')
        AS receipts_orphaned,
    (SELECT count(*) FROM contacts WHERE outcome_unknown AND state = 'retry_scheduled')
        AS unknown_outcomes,
    (SELECT count(*) FROM recipient_window WHERE last_sent_at > now() - interval '24 hours')
        AS limit_used,
    (SELECT count(*) FROM daemons WHERE heartbeat_at > now() - make_interval(secs => $1))
        AS daemons_live;
