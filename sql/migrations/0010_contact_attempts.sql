-- wa-sender schema, version 10: every send attempt of a contact, for `contacts show` (issue 18).
-- Compatible with PostgreSQL 15 and later.

-- One row per outcome recorded for an attempt, written by the statements that record it
-- (record_results, expire_leases, expire_own_contacts: no extra round trip). An attempt can
-- have two rows: its lease expired (outcome unknown), then its send result landed late.
-- A released claim (never sent) is undone, not logged. Append-only: no primary key, one
-- index for the lookup and for the cascade when a contact is deleted (gdpr forget, campaign
-- delete).
CREATE TABLE contact_attempts (
    contact_id  bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    at          timestamptz NOT NULL,
    -- The contact state the attempt led to (sent, retry_scheduled, error, sending_failed...).
    outcome     text NOT NULL,
    error_code  integer,
    error_title text,
    wamid       text,
    unknown     boolean NOT NULL DEFAULT false
);
CREATE INDEX contact_attempts_contact ON contact_attempts (contact_id, attempt);
