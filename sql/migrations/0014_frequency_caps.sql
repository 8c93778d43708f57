-- wa-sender schema, version 14: frequency caps per phone across campaigns (issue 19,
-- [limits] per_contact). Compatible with PostgreSQL 15 and later.

-- A capped claim reads the earlier messages of the phones it takes (sql/queries/caps.sql,
-- caps_history): by phone, within the longest rule's period, in the states a message went
-- out or is going. Without it that read is a scan of every contact per claim.
CREATE INDEX contacts_phone_claimed
    ON contacts (phone, claimed_at)
    WHERE state IN ('in_progress', 'sent', 'delivered', 'read', 'delivery_failed');
