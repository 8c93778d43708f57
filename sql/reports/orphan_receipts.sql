-- Orphan receipts: status webhooks that matched no contact within webhook.orphan_after_s
-- (messages sent by another app on the same WhatsApp Business Account, or sends whose
-- result was lost together with their callback data), and statuses whose business number
-- (metadata.phone_number_id) is not their campaign's: reason 'number_mismatch: ...', never
-- applied (migration 0012). Kept, never deleted; newest first.
--
--   psql -f sql/reports/orphan_receipts.sql
--   wa-sender report orphan_receipts [--format table|csv|json]
SELECT id, received_at, wamid, status, recipient_id, callback_data,
       coalesce(orphan_reason, 'no contact matched') AS reason
FROM status_receipts
WHERE processing_state = 'orphan'
ORDER BY received_at DESC, id DESC;
