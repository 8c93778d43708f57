-- wa-sender schema, version 16: opt-outs re-checked before send (issue 17).
-- Compatible with PostgreSQL 15 and later.

-- Each daemon reads the suppressions added since its last look every half second
-- (engine.optout_watch, the fallback of the wa_sender_opt_outs NOTIFY), to drop the claimed
-- contacts of those phones it still holds: an index keeps that read small on a long list.
CREATE INDEX IF NOT EXISTS suppressions_created_at ON suppressions (created_at);
