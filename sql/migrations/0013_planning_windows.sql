-- wa-sender schema, version 13: campaign planning (issue 19): scheduled start, send windows in
-- the recipient's local time, finish-by pacing.
-- Compatible with PostgreSQL 15 and later.

-- `campaign start ID --at TIME`: a campaign waiting for its start time. (Not used in this
-- transaction: a new enum value may be used only once committed.)
ALTER TYPE campaign_state ADD VALUE IF NOT EXISTS 'scheduled' AFTER 'draft';

ALTER TABLE campaigns
    -- When a scheduled campaign starts (any daemon starts it, on time, see engine.schedule).
    ADD COLUMN start_at timestamptz,
    -- The send window in the recipients' local time, canonical text (core.windows), e.g.
    -- 'Mon-Fri 09:00-20:00, Sat 10:00-14:00'; NULL: any time.
    ADD COLUMN send_window text,
    -- The zone of contacts whose number does not tell one (countries with several zones).
    ADD COLUMN window_zone text,
    -- `--finish-by`: the remaining contacts are spread evenly up to this time.
    ADD COLUMN finish_by timestamptz;

-- Each contact's current or next open window, computed per time zone from its campaign's
-- window (engine.windows recomputes those whose window closed): the claim takes a contact only
-- while not_before <= now < open_until. Without a window: -infinity .. infinity.
ALTER TABLE contacts
    ADD COLUMN not_before timestamptz NOT NULL DEFAULT '-infinity',
    ADD COLUMN open_until timestamptz NOT NULL DEFAULT 'infinity';

-- The claim walks this one: claimable contacts of a campaign whose window opened, in order of
-- opening, then import order (a campaign without a window: import order).
CREATE INDEX contacts_claimable_window
    ON contacts (campaign_id, not_before, id)
    WHERE state IN ('initial', 'retry_scheduled');
