-- wa-sender schema, version 10 (issue 18, issue 22): every send attempt of a contact, for
-- `contacts show`; contacts' campaign reference checked per statement instead of per row.
-- Compatible with PostgreSQL 15 and later.

-- One row per outcome recorded for an attempt, written by the statements that record it
-- (record_results, expire_leases, expire_own_contacts: no extra round trip). An attempt can
-- have two rows: its lease expired (outcome unknown), then its send result landed late.
-- A released claim (never sent) is undone, not logged. Append-only and on the hot path: no
-- primary key and no foreign key (a per-row RI check would cost each send ~3 us of server
-- CPU); every row comes from the UPDATE of its contact, and the rows of a deleted contact go
-- with it (contacts_delete_attempts below). One index: the lookup, and that delete.
CREATE TABLE contact_attempts (
    contact_id  bigint NOT NULL,
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

CREATE FUNCTION contacts_delete_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM contact_attempts a USING deleted_contacts d WHERE a.contact_id = d.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER contacts_delete_attempts AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS deleted_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION contacts_delete_attempts();

-- contacts.campaign_id: the foreign key checked every inserted row on its own (an RI trigger
-- call, ~3 us of server CPU a row: a quarter of a 1,000,000-row import's INSERT). The same
-- rules, per statement: an INSERT checks the campaigns its rows name once, holding them
-- (FOR KEY SHARE, as the foreign key did) until the transaction ends; a campaign deleted takes
-- its contacts (ON DELETE CASCADE as before); campaign_id never changes once set.
ALTER TABLE contacts DROP CONSTRAINT contacts_campaign_id_fkey;

CREATE FUNCTION contacts_campaign_exists() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint[];
    found  bigint;
BEGIN
    SELECT array_agg(DISTINCT campaign_id) INTO wanted FROM inserted_contacts;
    SELECT count(*) INTO found
    FROM (SELECT 1 FROM campaigns WHERE id = ANY (wanted) FOR KEY SHARE) AS held;
    IF found < coalesce(cardinality(wanted), 0) THEN
        RAISE foreign_key_violation
            USING MESSAGE = 'contacts.campaign_id names a campaign that does not exist';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER contacts_campaign_exists AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS inserted_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION contacts_campaign_exists();

CREATE FUNCTION contacts_campaign_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE foreign_key_violation USING MESSAGE = 'contacts.campaign_id cannot change';
END
$$;
CREATE TRIGGER contacts_campaign_fixed BEFORE UPDATE OF campaign_id ON contacts
    FOR EACH ROW WHEN (OLD.campaign_id IS DISTINCT FROM NEW.campaign_id)
    EXECUTE FUNCTION contacts_campaign_fixed();

CREATE FUNCTION campaigns_delete_contacts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM contacts c USING deleted_campaigns d WHERE c.campaign_id = d.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER campaigns_delete_contacts AFTER DELETE ON campaigns
    REFERENCING OLD TABLE AS deleted_campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION campaigns_delete_contacts();
