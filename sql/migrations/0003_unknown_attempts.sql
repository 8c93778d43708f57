-- wa-sender schema, version 3: attempts with an unknown outcome, counted apart.
-- Compatible with PostgreSQL 15 and later.

-- Of contacts.attempts, how many ended with an unknown outcome (lease expired, daemon dead,
-- send cut off at shutdown). They do not use up sender.max_attempts, which is meant for what
-- the API answered (attempts - unknown_attempts is the counted budget); their own bound is
-- recovery.max_unknown_outcomes. A constant default: no table rewrite.
ALTER TABLE contacts ADD COLUMN unknown_attempts integer NOT NULL DEFAULT 0;
