-- wa-sender schema, version 16: opt-outs re-checked before send (issue 17).
-- Compatible with PostgreSQL 15 and later.

-- Each daemon reads the suppressions added since its last look every half second
-- (engine.optout_watch, the fallback of the wa_sender_opt_outs NOTIFY), to drop the claimed
-- contacts of those phones it still holds: an index keeps that read small on a long list.
CREATE INDEX IF NOT EXISTS suppressions_created_at ON suppressions (created_at);

-- Inbound messages are stored by the webhook request (one plain INSERT) and applied right
-- after, in batches, by engine.inbound (matching to the campaign message they answer, the
-- opt-out's suppression and stopped contacts, the user id on the phone's contacts): the
-- request no longer waits for contact row locks. applied: done (rows from before this
-- version are); opt_out_reason: why it is an opt-out, until applied (then on the
-- suppression list, and cleared here).
ALTER TABLE inbound_messages
    ADD COLUMN applied boolean NOT NULL DEFAULT true,
    ADD COLUMN opt_out_reason text;
ALTER TABLE inbound_messages ALTER COLUMN applied SET DEFAULT false;
CREATE INDEX inbound_messages_pending ON inbound_messages (id) WHERE NOT applied;

-- The contact a reply answers is kept without a foreign key: checking one takes a KEY SHARE
-- lock on that contact, which waits for (and makes the reconciler skip) the FOR UPDATE the
-- reconciler holds while it applies the statuses of the same message — replies and their
-- message's statuses arrive together. Contacts are deleted only with a draft campaign, which
-- sent nothing to be answered; GDPR forget deletes the person's inbound messages itself.
ALTER TABLE inbound_messages DROP CONSTRAINT IF EXISTS inbound_messages_contact_id_fkey;
