-- wa-sender schema, version 1: campaigns, contacts, status receipts, suppressions.
-- Compatible with PostgreSQL 15 and later.

CREATE TYPE contact_state AS ENUM (
    'initial',
    'invalid_record',
    'in_progress',
    'retry_scheduled',
    'sent',
    'delivered',
    'read',
    'delivery_failed',
    'sending_failed',
    'error',
    'canceled_by_admin',
    'removed',
    'successfully_submitted'
);

CREATE TYPE campaign_state AS ENUM ('draft', 'running', 'paused', 'finished', 'canceled');

CREATE TABLE campaigns (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text NOT NULL CHECK (name <> ''),
    state             campaign_state NOT NULL DEFAULT 'draft',
    template_name     text NOT NULL CHECK (template_name <> ''),
    template_language text NOT NULL CHECK (template_language <> ''),
    template_params   text[] NOT NULL DEFAULT '{}',
    phone_number_id   text NOT NULL CHECK (phone_number_id <> ''),
    pause_reason      text,
    -- Set by the daemon while it holds a running campaign (messaging limit, API maintenance).
    hold_reason       text,
    hold_until        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    paused_at         timestamptz,
    finished_at       timestamptz,
    canceled_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id     bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    -- Normalised digits with country code; the raw value when the row is an invalid record.
    phone           text NOT NULL,
    wa_id           text,
    params          jsonb NOT NULL DEFAULT '{}',
    state           contact_state NOT NULL DEFAULT 'initial',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    wamid           text,
    message_status  text,
    error_code      integer,
    error_title     text,
    invalid_reason  text,
    claimed_by      text,
    lease_until     timestamptz,
    -- The lease of an attempt expired with its send in flight: a receipt may still prove it left.
    outcome_unknown boolean NOT NULL DEFAULT false,
    source_line     integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz,
    sent_at         timestamptz,
    delivered_at    timestamptz,
    read_at         timestamptz,
    failed_at       timestamptz,
    canceled_at     timestamptz,
    removed_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (state <> 'invalid_record' OR invalid_reason IS NOT NULL)
);

-- One live contact per phone per campaign (duplicates become invalid records at import).
CREATE UNIQUE INDEX contacts_campaign_phone_live
    ON contacts (campaign_id, phone)
    WHERE state NOT IN ('invalid_record', 'removed');
-- The claim query: claimable contacts of a campaign, in import order.
CREATE INDEX contacts_claimable
    ON contacts (campaign_id, id)
    WHERE state IN ('initial', 'retry_scheduled');
-- Lease recovery scans only in-flight contacts.
CREATE INDEX contacts_in_progress_lease
    ON contacts (lease_until)
    WHERE state = 'in_progress';
CREATE UNIQUE INDEX contacts_wamid ON contacts (wamid) WHERE wamid IS NOT NULL;
CREATE INDEX contacts_campaign_state ON contacts (campaign_id, state);

CREATE TABLE status_receipts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at      timestamptz NOT NULL DEFAULT now(),
    wamid            text NOT NULL,
    status           text NOT NULL,
    status_at        timestamptz,
    recipient_id     text,
    phone_number_id  text,
    callback_data    text,
    error_code       integer,
    error_title      text,
    raw              jsonb NOT NULL,
    -- pending: not applied yet; applied: changed a contact; duplicate: matched, changed nothing;
    -- orphan: never matched within the configured age (kept, reported).
    processing_state text NOT NULL DEFAULT 'pending'
        CHECK (processing_state IN ('pending', 'applied', 'duplicate', 'orphan')),
    contact_id       bigint REFERENCES contacts (id) ON DELETE SET NULL,
    processed_at     timestamptz
);
CREATE INDEX status_receipts_pending ON status_receipts (id) WHERE processing_state = 'pending';
CREATE INDEX status_receipts_wamid ON status_receipts (wamid);
CREATE INDEX status_receipts_contact ON status_receipts (contact_id);

CREATE TABLE suppressions (
    phone      text PRIMARY KEY,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Live daemons: heartbeats let daemons share a phone number's rate and find dead peers.
CREATE TABLE daemons (
    id           text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Unique recipients messaged in the rolling 24 h window (the portfolio messaging limit).
CREATE TABLE recipient_window (
    phone        text PRIMARY KEY,
    last_sent_at timestamptz NOT NULL
);
CREATE INDEX recipient_window_last_sent ON recipient_window (last_sent_at);
