-- The identity of a status (daemon/db/identity_store.py): the user id of a status of an earlier
-- attempt kept on its contact (reconcile_receipts and ingest_receipts do the rest themselves).

-- name: fill_contact_user_ids
-- After reconcile_receipts, on the same batch ($1 receipt ids): the business-scoped user id
-- (BSUID) a status carries is kept on the contact it matched (applied or duplicate). Written
-- only when it differs, so a contact's later statuses write nothing more.
UPDATE contacts c
SET user_id = r.user_id
FROM status_receipts r
WHERE r.id = ANY($1::bigint[]) AND r.user_id IS NOT NULL
  AND r.processing_state IN ('applied', 'duplicate')
  AND c.id = r.contact_id AND c.user_id IS DISTINCT FROM r.user_id;
