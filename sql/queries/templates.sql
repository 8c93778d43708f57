-- The template catalogue, campaign header files and their media ids per sending number.

-- name: save_template
INSERT INTO templates (waba_id, name, language, template_id, status, category,
                       parameter_format, document, synced_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
ON CONFLICT (waba_id, name, language) DO UPDATE
SET template_id = EXCLUDED.template_id,
    status = EXCLUDED.status,
    category = EXCLUDED.category,
    parameter_format = EXCLUDED.parameter_format,
    document = EXCLUDED.document,
    synced_at = now();

-- name: mark_unlisted_templates
-- After a complete sync of WABA $1: the templates it did not list ($2 names, $3 languages
-- of those it did) are gone at Meta.
UPDATE templates AS t
SET status = 'DELETED', synced_at = now()
WHERE t.waba_id = $1
  AND t.status <> 'DELETED'
  AND NOT EXISTS (
      SELECT 1 FROM unnest($2::text[], $3::text[]) AS seen(name, language)
      WHERE seen.name = t.name AND seen.language = t.language
  )
RETURNING t.name, t.language;

-- name: list_templates
-- $1 the WABA ('' = any).
SELECT * FROM templates WHERE ($1 = '' OR waba_id = $1) ORDER BY name, language, waba_id;

-- name: templates_named
SELECT * FROM templates
WHERE ($1 = '' OR waba_id = $1) AND name = $2
ORDER BY language, waba_id;

-- name: catalogue_size
SELECT count(*) FROM templates WHERE ($1 = '' OR waba_id = $1);

-- name: template_statuses
-- The daemon's check of a running campaign: its template's status in each of its languages.
SELECT language, status FROM templates
WHERE waba_id = $1 AND name = $2 AND language = ANY($3::text[]);

-- name: save_header_file
INSERT INTO campaign_header_files (campaign_id, filename, mime_type, sha256, data)
VALUES ($1, $2, $3, $4, $5);

-- name: header_file_data
SELECT filename, mime_type, data FROM campaign_header_files WHERE campaign_id = $1;

-- name: campaign_media
SELECT phone_number_id, media_id, uploaded_at, expires_at, uploads
FROM campaign_media WHERE campaign_id = $1 AND phone_number_id = $2;

-- name: media_upload_lock
-- One daemon at a time uploads a campaign's file for a number (held to the transaction's end).
SELECT pg_advisory_xact_lock(
    hashtextextended('wa_sender_media:' || $1::bigint::text || ':' || $2::text, 0)
);

-- name: save_campaign_media
INSERT INTO campaign_media (campaign_id, phone_number_id, media_id, uploaded_at, expires_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (campaign_id, phone_number_id) DO UPDATE
SET media_id = EXCLUDED.media_id,
    uploaded_at = EXCLUDED.uploaded_at,
    expires_at = EXCLUDED.expires_at,
    uploads = campaign_media.uploads + 1;
