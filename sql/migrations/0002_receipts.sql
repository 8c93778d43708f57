-- wa-sender schema, version 2: back-off for status receipts that match no contact yet.
-- Compatible with PostgreSQL 15 and later.

-- A pending receipt is tried again at next_try_at: right away when stored, then later and
-- later while it matches no contact (its send result may not be recorded yet), until it is
-- old enough to become an orphan. Recording a send brings its receipts' turn forward.
ALTER TABLE status_receipts ADD COLUMN next_try_at timestamptz NOT NULL DEFAULT now();

-- The reconciler's scan: due pending receipts, oldest turn first. Replaces the (id) index so
-- that receipts waiting on a back-off are not walked over by every batch.
DROP INDEX status_receipts_pending;
CREATE INDEX status_receipts_pending ON status_receipts (next_try_at, id)
    WHERE processing_state = 'pending';
