-- wa-sender schema, version 11: what WhatsApp tells a sender besides delivery statuses.
-- Inbound messages (replies, opt-outs), marketing preferences, template and number health,
-- the pricing and identity of statuses, failed statuses classified like send answers.
-- Compatible with PostgreSQL 15 and later.

-- Every inbound message (`messages` change with `messages[]`), kept for the replies report;
-- GDPR purge blanks its text and payload, forget deletes the person's rows. campaign_id and
-- contact_id: the campaign message it answers (context.id = our wamid), else the phone's last
-- message sent. opt_out: its text or quick-reply payload matched [optout].
CREATE TABLE inbound_messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    wamid           text NOT NULL,
    phone           text NOT NULL,
    user_id         text,
    phone_number_id text,
    type            text NOT NULL,
    body            text,
    payload         text,
    sent_at         timestamptz,
    context_wamid   text,
    campaign_id     bigint REFERENCES campaigns (id) ON DELETE SET NULL,
    contact_id      bigint REFERENCES contacts (id) ON DELETE SET NULL,
    opt_out         boolean NOT NULL DEFAULT false,
    raw             jsonb NOT NULL
);
-- Meta delivers a webhook again until it is acknowledged: one row per inbound message.
CREATE UNIQUE INDEX inbound_messages_wamid ON inbound_messages (wamid);
CREATE INDEX inbound_messages_phone ON inbound_messages (phone);
CREATE INDEX inbound_messages_campaign ON inbound_messages (campaign_id) WHERE campaign_id IS NOT NULL;

-- The suppression list says why and from where: source 'operator' (suppression add), 'inbound'
-- (a STOP reply or opt-out button), 'user_preferences' (Meta's marketing stop), 'status'
-- (a failed status 131050), 'gdpr'. scope 'all' never sends; 'marketing' only blocks
-- MARKETING templates (user_preferences stop; resume deletes it).
ALTER TABLE suppressions
    ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'operator',
    ADD COLUMN IF NOT EXISTS scope text NOT NULL DEFAULT 'all'
        CHECK (scope IN ('all', 'marketing')),
    ADD COLUMN IF NOT EXISTS user_id text;

-- Who paused a campaign: 'operator' (campaign pause), 'meta' (a template event, or the
-- template gate finding it not APPROVED: resumed by itself when Meta approves it again),
-- 'daemon' (any other campaign-fatal error). NULL: from before this version.
ALTER TABLE campaigns ADD COLUMN paused_by text
    CHECK (paused_by IN ('operator', 'meta', 'daemon'));

-- Template health as Meta reports it (webhooks), next to the synced catalogue row.
ALTER TABLE templates
    ADD COLUMN status_reason text,
    ADD COLUMN status_updated_at timestamptz,
    ADD COLUMN quality_score text,
    ADD COLUMN quality_updated_at timestamptz,
    ADD COLUMN previous_category text,
    ADD COLUMN category_updated_at timestamptz;

-- A template event may name a template never synced: kept by name and language so that
-- `campaign status` can show it, and the sync fills the rest.
ALTER TABLE templates ALTER COLUMN document SET DEFAULT '{}';

-- Business phone numbers as the webhook reports them: display number <-> phone_number_id
-- (learned from every change's metadata), quality events and what they do to the rate.
CREATE TABLE phone_numbers (
    display_phone_number text PRIMARY KEY,
    phone_number_id      text,
    quality_event        text,
    -- multiplies the number's rate for MARKETING campaigns (FLAGGED / DOWNGRADE)
    marketing_rate_factor double precision NOT NULL DEFAULT 1.0,
    -- THROUGHPUT_UPGRADE: the bucket may rise to [sender] max_rate_per_second
    throughput_upgraded  boolean NOT NULL DEFAULT false,
    current_limit        text,
    event_at             timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX phone_numbers_id ON phone_numbers (phone_number_id)
    WHERE phone_number_id IS NOT NULL;

-- Statuses' pricing and identity in columns (the raw JSON is blanked by GDPR purge, these
-- are kept): cost reports read them. failed_action: what the failed status means for its
-- contact, classified by the same table as send answers (core/failed_status.py): 'retry'
-- (a new attempt), 'retry_later' (after retry_after_s), 'template_held' (132015: again once
-- the template is approved), 'fail' (delivery_failed). NULL for other statuses.
ALTER TABLE status_receipts
    ADD COLUMN user_id text,
    ADD COLUMN pricing_billable boolean,
    ADD COLUMN pricing_model text,
    ADD COLUMN pricing_type text,
    ADD COLUMN pricing_category text,
    ADD COLUMN conversation_id text,
    ADD COLUMN conversation_origin text,
    ADD COLUMN error_details text,
    ADD COLUMN failed_action text,
    ADD COLUMN retry_after_s double precision;

-- The contact's business-scoped user id, and a failed status's details (error_data.details).
-- prior_wamid: the wamid of an attempt a failed status sent back to be retried (its wamid is
-- cleared for the new attempt): a duplicate of that status finds it there and changes nothing.
ALTER TABLE contacts
    ADD COLUMN IF NOT EXISTS user_id text,
    ADD COLUMN IF NOT EXISTS error_details text,
    ADD COLUMN IF NOT EXISTS prior_wamid text,
    ADD COLUMN IF NOT EXISTS region text;
CREATE INDEX contacts_prior_wamid ON contacts (prior_wamid) WHERE prior_wamid IS NOT NULL;
