-- wa-sender schema, version 12: the identity of a status (its business number, its user's
-- business-scoped id) checked and kept.
-- Compatible with PostgreSQL 15 and later.

-- Why a receipt was kept as an orphan without being applied: NULL for one that matched no
-- contact within webhook.orphan_after_s; 'number_mismatch: ...' for a status whose
-- metadata.phone_number_id is not the number its campaign sends from (a status is only
-- applied to a contact of the business number that sent the message).
ALTER TABLE status_receipts ADD COLUMN orphan_reason text;
