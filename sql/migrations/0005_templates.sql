-- wa-sender schema, version 5: the template catalogue, campaigns bound to a template, and
-- the header files campaigns upload to Meta. Compatible with PostgreSQL 15 and later.

-- The WhatsApp Business Account's message templates, one row per name and language, as the
-- last `wa-sender templates sync` read them (GET /{waba_id}/message_templates). A template
-- the last sync did not list any more is kept with status DELETED.
CREATE TABLE templates (
    waba_id          text NOT NULL,
    name             text NOT NULL CHECK (name <> ''),
    language         text NOT NULL CHECK (language <> ''),
    template_id      text,
    status           text NOT NULL,
    category         text NOT NULL DEFAULT '',
    parameter_format text NOT NULL DEFAULT 'POSITIONAL',
    -- The entry as Meta returned it (name, language, status, category, parameter_format,
    -- components): what campaigns are created and checked from.
    document         jsonb NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (waba_id, name, language)
);

-- Where a campaign's template came from: 'catalogue' (checked against the synced catalogue
-- at create and start, and by the daemon while it sends), 'file' (--template-file), or
-- 'unverified' (a name only: campaigns from before this version, and those created without
-- a catalogue). template_spec holds the binding of its values (core/template_spec.py);
-- NULL for campaigns from before this version, which are read as their template_params.
ALTER TABLE campaigns
    ADD COLUMN template_source text NOT NULL DEFAULT 'unverified'
        CHECK (template_source IN ('catalogue', 'file', 'unverified')),
    ADD COLUMN template_waba_id text,
    ADD COLUMN template_category text,
    ADD COLUMN template_spec jsonb;

-- A campaign's header file (`campaign create --header-file`), kept here so that whichever
-- daemon sends the campaign can upload it, for each sending number.
CREATE TABLE campaign_header_files (
    campaign_id bigint PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    filename    text NOT NULL,
    mime_type   text NOT NULL,
    sha256      text NOT NULL,
    data        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The header file's media id per sending number (POST /{phone_number_id}/media), renewed
-- before Meta forgets it (30 days). uploads counts the uploads made for that number.
CREATE TABLE campaign_media (
    campaign_id     bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    phone_number_id text NOT NULL,
    media_id        text NOT NULL,
    uploaded_at     timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    uploads         integer NOT NULL DEFAULT 1,
    PRIMARY KEY (campaign_id, phone_number_id)
);
