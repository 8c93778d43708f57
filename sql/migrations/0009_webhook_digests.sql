-- wa-sender schema, version 9: webhook bodies already stored, by digest, so that a replayed
-- body (Meta retries an unacknowledged POST for 7 days; anyone holding one signed body can
-- post it again) is acknowledged without storing its statuses a second time.
-- Compatible with PostgreSQL 15 and later.

-- One row per stored webhook body: its SHA-256, and when it was stored. The webhook's insert
-- (store_receipts) treats a digest older than webhook.replay_window_s as new; the daemon's
-- upkeep deletes those (prune_webhook_digests), so the table holds about one window of POSTs.
CREATE TABLE webhook_digests (
    digest bytea PRIMARY KEY CHECK (octet_length(digest) = 32),
    received_at timestamptz NOT NULL DEFAULT now()
);

-- The pruning scan: rows are appended in received_at order, so a block range index finds the
-- old ones at a fraction of a btree's size and insert cost.
CREATE INDEX webhook_digests_received_at ON webhook_digests USING brin (received_at);
