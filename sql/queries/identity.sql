-- The identity of a status, in the reconciler's transaction (daemon/db/identity_store.py):
-- its business number must be its campaign's, its user's business-scoped id is kept.

-- name: orphan_foreign_number_receipts
-- Before reconcile_receipts, on the same batch ($1 receipt ids): a pending receipt whose
-- metadata.phone_number_id is not the number of the campaign its message belongs to (matched
-- as reconcile_receipts matches: wamid, else our callback data, else an attempt sent back for
-- a retry) is kept as an orphan with the reason, never applied. When every campaign that sent
-- anything uses one number and the receipt names it, no contact is probed (the usual case).
WITH numbers AS (
    SELECT array_agg(DISTINCT phone_number_id) AS ids
    FROM campaigns WHERE state <> 'draft'
),
picked AS (
    SELECT r.id, r.wamid, r.status, r.recipient_id, r.callback_data, r.received_at,
           r.phone_number_id,
           CASE WHEN r.callback_data ~ '^ws1:[0-9]{1,18}:[0-9]{1,18}:[0-9]{1,9}$'
                THEN string_to_array(r.callback_data, ':') END AS cb
    FROM status_receipts r, numbers n
    WHERE r.id = ANY($1::bigint[]) AND r.processing_state = 'pending'
      AND r.phone_number_id IS NOT NULL
      AND NOT (cardinality(n.ids) = 1 AND r.phone_number_id = n.ids[1])
),
matched AS (
    SELECT p.*,
           coalesce(
               (SELECT c.campaign_id FROM contacts c WHERE c.wamid = p.wamid LIMIT 1),
               (SELECT c.campaign_id FROM contacts c
                WHERE p.cb IS NOT NULL AND c.id = p.cb[3]::bigint
                  AND c.campaign_id = p.cb[2]::bigint),
               (SELECT c.campaign_id FROM contacts c WHERE c.prior_wamid = p.wamid LIMIT 1)
           ) AS campaign_id
    FROM picked p
),
orphaned AS (
    UPDATE status_receipts r
    SET processing_state = 'orphan', processed_at = now(),
        orphan_reason = format('number_mismatch: phone_number_id %s is not the number of'
                               ' campaign %s (%s)', m.phone_number_id, k.id, k.phone_number_id)
    FROM matched m JOIN campaigns k ON k.id = m.campaign_id
    WHERE r.id = m.id AND k.phone_number_id <> m.phone_number_id
    RETURNING r.id, r.wamid, r.status, r.recipient_id, r.callback_data, r.received_at,
              r.orphan_reason
)
SELECT id, wamid, status, recipient_id, callback_data, received_at::text AS received_at,
       orphan_reason
FROM orphaned ORDER BY id;

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
